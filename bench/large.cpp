// Large blocks, 64 KiB to 32 MiB: allocated, every page written, checked and
// freed, with a few kept live. Measures the mmap/trim policy and how often
// the allocator hands back fresh (page-faulting) memory instead of reusing.
#include "common.hpp"

namespace {

constexpr std::size_t kPage = 4096;

// One word per page, placed clear of the stamp words at both ends.
bool in_body(const bench::Block& b, std::size_t off) { return off + 24 <= b.n; }

void touch(bench::Block& b) {
  auto* bytes = static_cast<unsigned char*>(b.p);
  for (std::size_t off = 0; off < b.n; off += kPage) {
    const std::uint64_t v = b.key ^ off;
    if (in_body(b, off)) std::memcpy(bytes + off + 8, &v, 8);
  }
}

void verify(const bench::Block& b) {
  const auto* bytes = static_cast<const unsigned char*>(b.p);
  for (std::size_t off = 0; off < b.n; off += kPage) {
    std::uint64_t v = b.key ^ off;
    if (in_body(b, off)) std::memcpy(&v, bytes + off + 8, 8);
    if (v != (b.key ^ off)) bench::fail("large block page changed", b.p);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long count = args.num("blocks", 800, 100);
  const long live = args.num("live", 4, 4);
  args.done();

  bench::Rng rng(7);
  std::vector<bench::Block> ring(static_cast<std::size_t>(live));
  bench::Timer timer;
  for (long i = 0; i < count; ++i) {
    bench::Block& b = ring[static_cast<std::size_t>(i % live)];
    if (b.p != nullptr) verify(b);
    b.drop();
    const std::size_t base = std::size_t{64} << 10 << rng.below(9);  // 64 KiB .. 16 MiB
    b.make(base + rng.below(base), rng.next());
    touch(b);
  }
  for (auto& b : ring) {
    if (b.p != nullptr) verify(b);
    b.drop();
  }
  bench::report(static_cast<double>(count) / timer.seconds(), "ops/s");
}
