// Producer/consumer pipeline: producers allocate batches of blocks, consumers
// check and free them, so every free is remote. A bounded queue keeps the
// live set small and the two sides in step.
#include <condition_variable>
#include <mutex>
#include <new>
#include <thread>

#include "common.hpp"

namespace {

class Queue {
 public:
  void push(bench::Block* batch) {
    std::unique_lock lock(m_);
    not_full_.wait(lock, [&] { return size_ < kCap; });
    ring_[(head_ + size_++) % kCap] = batch;
    not_empty_.notify_one();
  }
  bench::Block* pop() {
    std::unique_lock lock(m_);
    not_empty_.wait(lock, [&] { return size_ > 0; });
    bench::Block* batch = ring_[head_];
    head_ = (head_ + 1) % kCap;
    --size_;
    not_full_.notify_one();
    return batch;
  }

 private:
  static constexpr std::size_t kCap = 32;
  std::mutex m_;
  std::condition_variable not_full_, not_empty_;
  bench::Block* ring_[kCap] = {};
  std::size_t head_ = 0, size_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long pairs = args.num("pairs", 1, 1);
  const long batch = args.num("batch", 256, 256);
  const long batches = args.num("batches", 40'000, 2'000);  // per producer
  args.done();

  const auto n = static_cast<std::size_t>(batch);
  std::vector<Queue> queues(static_cast<std::size_t>(pairs));
  auto producer = [&](std::size_t q) {
    bench::Rng rng(10 + q);
    for (long i = 0; i < batches; ++i) {
      // The batch array itself comes from malloc too: more cross-thread frees.
      auto* blocks = static_cast<bench::Block*>(std::malloc(n * sizeof(bench::Block)));
      if (blocks == nullptr) bench::fail("malloc returned null");
      for (std::size_t j = 0; j < n; ++j) {
        new (&blocks[j]) bench::Block{};
        blocks[j].make(bench::small_size(rng, 6), rng.next());
      }
      queues[q].push(blocks);
    }
    queues[q].push(nullptr);
  };
  auto consumer = [&](std::size_t q) {
    while (bench::Block* blocks = queues[q].pop()) {
      for (std::size_t j = 0; j < n; ++j) blocks[j].drop();
      std::free(blocks);
    }
  };

  bench::Timer timer;
  std::vector<std::thread> pool;
  for (std::size_t q = 0; q < queues.size(); ++q) {
    pool.emplace_back(producer, q);
    pool.emplace_back(consumer, q);
  }
  for (auto& th : pool) th.join();
  bench::report(static_cast<double>(pairs * batches * (batch + 1)) / timer.seconds(), "ops/s");
}
