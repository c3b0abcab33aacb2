// Minimal loops for counting instructions under callgrind: N malloc(32)/free
// pairs, or with --mixed a ring of live blocks of mixed sizes where each
// step frees one and allocates another. Nothing else runs per step, so the
// difference between runs with N and 2N steps, divided by N, is the cost of
// one pair without start-up.
#include "common.hpp"

namespace {

// Keeps the compiler from pairing malloc with free and deleting both.
inline void escape(void* p) { asm volatile("" : : "r"(p) : "memory"); }

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const bool mixed = args.flag("mixed");
  const long steps = args.num("steps", 10'000'000, 100'000);
  args.done();

  bench::Timer timer;
  if (!mixed) {
    for (long i = 0; i < steps; ++i) {
      void* p = std::malloc(32);
      escape(p);
      std::free(p);
    }
  } else {
    constexpr std::size_t kRing = 256, kSizes = 1024;
    bench::Rng rng(5);
    std::vector<std::size_t> sizes(kSizes);
    for (auto& s : sizes) s = bench::small_size(rng);
    std::vector<void*> ring(kRing, nullptr);
    for (long i = 0; i < steps; ++i) {
      const auto k = static_cast<std::size_t>(i);
      std::free(ring[k % kRing]);
      ring[k % kRing] = std::malloc(sizes[k % kSizes]);
      escape(ring[k % kRing]);
    }
    for (void* p : ring) std::free(p);
  }
  bench::report(static_cast<double>(steps) / timer.seconds(), "ops/s");
}
