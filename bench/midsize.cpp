// Buffers of 16-256 KiB (I/O and decompression buffers, per-request
// scratch space): a ring of a few live blocks, each replaced by one of a new
// random size, stamped at both ends and checked before it is freed. With
// --threads N, N threads each run their own ring (steps are per thread), as
// the workers of a server do. Not part of the default suite; compare
// allocators on it with scripts/abtest or `scripts/compare --workloads midsize`.
#include <thread>

#include "common.hpp"

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long steps = args.num("steps", 2'000'000, 20'000);
  const long live = args.num("live", 8, 8);
  const long min_kib = args.num("min-kib", 16, 16);
  const long max_kib = args.num("max-kib", 256, 256);
  const long threads = args.num("threads", 1, 1);
  args.done();
  if (live < 1 || min_kib < 1 || max_kib < min_kib || threads < 1)
    bench::fail("bad --live, --min-kib, --max-kib or --threads");

  const auto lo = static_cast<std::uint64_t>(min_kib) << 10;
  const auto span = (static_cast<std::uint64_t>(max_kib) << 10) - lo + 1;
  auto run = [&](std::uint64_t seed) {
    bench::Rng rng(seed);
    std::vector<bench::Block> ring(static_cast<std::size_t>(live));
    for (long i = 0; i < steps; ++i) {
      bench::Block& b = ring[static_cast<std::size_t>(i % live)];
      b.drop();
      b.make(lo + rng.below(span), rng.next());
    }
    for (auto& b : ring) b.drop();
  };
  bench::Timer timer;
  if (threads == 1) {
    run(11);  // on the main thread, as before --threads existed
  } else {
    std::vector<std::thread> pool;
    for (long t = 0; t < threads; ++t) pool.emplace_back(run, 11 + static_cast<std::uint64_t>(t));
    for (auto& th : pool) th.join();
  }
  bench::report(static_cast<double>(steps * threads) / timer.seconds(), "ops/s");
}
