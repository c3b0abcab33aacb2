// Single-thread churn: a ring of live blocks of mixed small sizes; each step
// checks and frees a random block and puts a fresh one in its place, so the
// allocator sees a steady state of interleaved sizes and reuse.
#include "common.hpp"

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long live = args.num("live", 10000, 1000);
  const long steps = args.num("steps", 12'000'000, 400'000);
  args.done();

  bench::Rng rng(1);
  std::vector<bench::Block> ring(static_cast<std::size_t>(live));
  bench::Timer timer;
  for (auto& b : ring) b.make(bench::small_size(rng), rng.next());
  for (long i = 0; i < steps; ++i) {
    bench::Block& b = ring[rng.below(static_cast<std::uint64_t>(live))];
    b.drop();
    b.make(bench::small_size(rng), rng.next());
  }
  for (auto& b : ring) b.drop();
  bench::report(static_cast<double>(steps + live) / timer.seconds(), "ops/s");
}
