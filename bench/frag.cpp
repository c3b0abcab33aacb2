// Fragmentation: fill memory with small blocks, free a random 90% of them,
// then allocate blocks of other, larger sizes. An allocator that cannot
// reuse the holes for the new sizes, or return emptied pages, shows a high
// final RSS. Prints peak and final RSS from /proc/self/status.
#include <algorithm>
#include <fstream>
#include <string>

#include "common.hpp"

namespace {

long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(field)) return std::strtol(line.c_str() + std::strlen(field), nullptr, 10);
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long count = args.num("blocks", 400'000, 50'000);
  const long phases = args.num("phases", 4, 2);
  args.done();

  bench::Rng rng(9);
  std::vector<bench::Block> kept, big;
  long ops = 0;
  std::size_t live_bytes = 0;
  bench::Timer timer;
  for (long phase = 0; phase < phases; ++phase) {
    std::vector<bench::Block> small(static_cast<std::size_t>(count));
    for (auto& b : small) b.make(16 + rng.below(112), rng.next());
    std::size_t freed = 0;
    for (auto& b : small) {
      if (rng.below(10) == 0) {
        kept.push_back(b);
        live_bytes += b.n;
      } else {
        freed += b.n;
        b.drop();
      }
    }
    // Refill the freed volume with sizes that do not fit the small holes.
    for (std::size_t used = 0; used < freed; used += big.back().n) {
      big.emplace_back();
      big.back().make(256 + rng.below(1792), rng.next());
    }
    ops += count + static_cast<long>(big.size());
    // Half of the big ones die; the rest stay live with the survivors.
    std::shuffle(big.begin(), big.end(), rng);
    const std::size_t keep = big.size() / 2;
    for (std::size_t i = keep; i < big.size(); ++i) big[i].drop();
    big.resize(keep);
  }
  for (const auto& b : big) live_bytes += b.n;
  const double secs = timer.seconds();
  std::printf("live: %zu kB\npeak-rss: %ld kB\nfinal-rss: %ld kB\n", live_bytes >> 10, status_kib("VmHWM:"),
              status_kib("VmRSS:"));
  for (auto& b : kept) b.drop();
  for (auto& b : big) b.drop();
  bench::report(static_cast<double>(ops) / secs, "ops/s");
}
