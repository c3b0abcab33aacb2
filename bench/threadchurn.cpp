// Short-lived threads: each wave of threads frees what the previous wave
// left behind, allocates a batch, frees half of it itself and leaves the
// other half for the next wave. Exercises thread-cache set-up and tear-down
// and frees of blocks whose owning thread has exited.
#include <thread>

#include "common.hpp"

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long threads = args.num("threads", 4, 4);
  const long waves = args.num("waves", 1500, 100);
  const long blocks = args.num("blocks", 2000, 1000);  // per thread and wave
  args.done();

  const auto nthreads = static_cast<std::size_t>(threads);
  const auto half = static_cast<std::size_t>(blocks / 2);
  // Two generations of leftovers: the wave that writes one frees the other.
  std::vector<bench::Block> left[2];
  for (auto& gen : left) gen.resize(nthreads * half);

  auto worker = [&](std::size_t t, long wave) {
    bench::Rng rng(static_cast<std::uint64_t>(wave) * 64 + t);
    auto& old_gen = left[(wave + 1) % 2];
    auto& new_gen = left[wave % 2];
    const std::size_t other = (t + 1) % nthreads;  // a thread of the last wave
    for (std::size_t i = 0; i < half; ++i) old_gen[other * half + i].drop();
    std::vector<bench::Block> mine(static_cast<std::size_t>(blocks));
    for (auto& b : mine) b.make(bench::small_size(rng), rng.next());
    for (std::size_t i = 0; i < mine.size(); ++i) {
      if (i % 2 == 0)
        mine[i].drop();
      else
        new_gen[t * half + i / 2] = mine[i];
    }
  };

  bench::Timer timer;
  for (long w = 0; w < waves; ++w) {
    std::vector<std::thread> pool;
    for (std::size_t t = 0; t < nthreads; ++t) pool.emplace_back(worker, t, w);
    for (auto& th : pool) th.join();
  }
  const double secs = timer.seconds();
  for (auto& gen : left)
    for (auto& b : gen) b.drop();
  bench::report(static_cast<double>(threads * waves * blocks) / secs, "ops/s");
}
