// Buffers built up piece by piece, as strings and vectors are: half grow to
// the exact new length on every append (a realloc each time), half grow
// their capacity by 1.5x. All buffers of a round grow interleaved, so a
// buffer's neighbour is usually live and in-place growth is not free.
#include "common.hpp"

namespace {

unsigned char content(std::size_t id, std::size_t i) { return static_cast<unsigned char>(i * 31 + id); }

struct Buffer {
  unsigned char* data = nullptr;
  std::size_t len = 0, cap = 0, target = 0;
  bool exact = false;
};

// Appends up to 64 bytes; returns the number of realloc calls made.
long append(Buffer& b, std::size_t id, bench::Rng& rng) {
  const std::size_t add = std::min<std::size_t>(1 + rng.below(64), b.target - b.len);
  long calls = 0;
  if (b.len + add > b.cap) {
    b.cap = b.exact ? b.len + add : std::max(b.len + add, b.cap + b.cap / 2);
    auto* grown = static_cast<unsigned char*>(std::realloc(b.data, b.cap));
    if (grown == nullptr) bench::fail("realloc returned null");
    if (b.len > 0 && grown[b.len - 1] != content(id, b.len - 1)) bench::fail("realloc lost data", grown);
    b.data = grown;
    calls = 1;
  }
  for (std::size_t i = 0; i < add; ++i) b.data[b.len + i] = content(id, b.len + i);
  b.len += add;
  return calls;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long count = args.num("buffers", 64, 32);
  const long rounds = args.num("rounds", 100, 3);
  const long max_kib = args.num("max-kib", 64, 64);
  args.done();

  bench::Rng rng(8);
  std::vector<Buffer> bufs(static_cast<std::size_t>(count));
  long calls = 0;
  bench::Timer timer;
  for (long r = 0; r < rounds; ++r) {
    for (std::size_t id = 0; id < bufs.size(); ++id) {
      const auto kib = static_cast<std::uint64_t>(max_kib);
      bufs[id] = Buffer{nullptr, 0, 0, 64 + rng.below(kib << 10), id % 2 == 0};
    }
    for (bool growing = true; growing;) {
      growing = false;
      for (std::size_t id = 0; id < bufs.size(); ++id)
        if (bufs[id].len < bufs[id].target) {
          calls += append(bufs[id], id, rng);
          growing = true;
        }
    }
    for (std::size_t id = 0; id < bufs.size(); ++id) {
      for (std::size_t i = 0; i < bufs[id].len; ++i)
        if (bufs[id].data[i] != content(id, i)) bench::fail("buffer contents changed", bufs[id].data);
      std::free(bufs[id].data);
    }
  }
  bench::report(static_cast<double>(calls) / timer.seconds(), "reallocs/s");
}
