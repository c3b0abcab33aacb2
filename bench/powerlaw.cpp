// Many threads with heavy-tailed sizes and lifetimes: most blocks are small
// and die young, a few are large or live long. Each thread keeps a table of
// slots; low slots are replaced far more often than high ones, which gives
// the power-law lifetimes without any bookkeeping.
#include <cmath>
#include <thread>

#include "common.hpp"

namespace {

constexpr std::size_t kTable = 1 << 16;  // precomputed draws, so pow() is off the hot path

std::vector<std::uint32_t> pareto_table(bench::Rng& rng, double xmin, double alpha, double cap) {
  std::vector<std::uint32_t> t(kTable);
  for (auto& v : t) v = static_cast<std::uint32_t>(std::min(cap, xmin * std::pow(1.0 - rng.unit(), -1.0 / alpha)));
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long threads = args.num("threads", 4, 4);
  const long slots = args.num("slots", 8192, 2048);
  const long steps = args.num("steps", 4'000'000, 100'000);  // per thread
  args.done();

  auto worker = [&](std::size_t t) {
    bench::Rng rng(20 + t);
    const auto sizes = pareto_table(rng, 16, 1.3, 256 << 10);
    std::vector<std::uint32_t> pick(kTable);
    for (auto& v : pick) v = static_cast<std::uint32_t>(static_cast<double>(slots) * std::pow(rng.unit(), 3.0));
    std::vector<bench::Block> table(static_cast<std::size_t>(slots));
    for (long i = 0; i < steps; ++i) {
      bench::Block& b = table[pick[rng.below(kTable)]];
      b.drop();
      b.make(sizes[rng.below(kTable)], rng.next());
    }
    for (auto& b : table) b.drop();
  };

  bench::Timer timer;
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < static_cast<std::size_t>(threads); ++t) pool.emplace_back(worker, t);
  for (auto& th : pool) th.join();
  bench::report(static_cast<double>(threads * steps) / timer.seconds(), "ops/s");
}
