// Server simulation after Larson & Krishnan: each worker replaces random
// blocks in a region of slots. After every epoch the regions rotate one
// worker along, so the blocks a worker leaves in a region are freed by the
// next one, as when requests move between server threads (with the default
// sizes about 1 % of the frees; most blocks are replaced within an epoch).
#include <barrier>
#include <thread>

#include "common.hpp"

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long threads = args.num("threads", 2, 2);
  const long slots = args.num("slots", 4000, 1000);
  const long steps = args.num("steps", 400'000, 20'000);  // per thread and epoch
  const long epochs = args.num("epochs", 20, 4);
  args.done();

  const auto nthreads = static_cast<std::size_t>(threads);
  std::vector<std::vector<bench::Block>> regions(nthreads);
  bench::Rng seed_rng(3);
  for (auto& region : regions) {
    region.resize(static_cast<std::size_t>(slots));
    for (auto& b : region) b.make(bench::small_size(seed_rng), seed_rng.next());
  }

  std::barrier sync(threads);
  auto worker = [&](std::size_t t) {
    bench::Rng rng(100 + t);
    for (long e = 0; e < epochs; ++e) {
      auto& region = regions[(t + static_cast<std::size_t>(e)) % nthreads];
      for (long i = 0; i < steps; ++i) {
        bench::Block& b = region[rng.below(static_cast<std::uint64_t>(slots))];
        b.drop();
        b.make(bench::small_size(rng), rng.next());
      }
      sync.arrive_and_wait();  // nobody may enter a region still in use
    }
  };

  bench::Timer timer;
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < nthreads; ++t) pool.emplace_back(worker, t);
  for (auto& th : pool) th.join();
  const double secs = timer.seconds();
  for (auto& region : regions)
    for (auto& b : region) b.drop();
  bench::report(static_cast<double>(threads * epochs * steps) / secs, "ops/s");
}
