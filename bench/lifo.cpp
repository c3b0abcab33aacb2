// Many blocks allocated in a burst, then freed newest-first (LIFO, as a
// stack of temporaries unwinds) or oldest-first (FIFO, as a queue drains).
// FIFO order defeats allocators that only reuse the most recently freed block.
#include "common.hpp"

namespace {

void fill(std::vector<bench::Block>& blocks, bench::Rng& rng) {
  for (auto& b : blocks) b.make(bench::small_size(rng, 6), rng.next());
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long count = args.num("blocks", 100'000, 20'000);
  const long rounds = args.num("rounds", 30, 3);
  args.done();

  bench::Rng rng(2);
  std::vector<bench::Block> blocks(static_cast<std::size_t>(count));
  bench::Timer timer;
  for (long r = 0; r < rounds; ++r) {
    fill(blocks, rng);
    for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) it->drop();
    fill(blocks, rng);
    for (auto& b : blocks) b.drop();
  }
  bench::report(static_cast<double>(2 * rounds * count) / timer.seconds(), "ops/s");
}
