// False sharing: one thread allocates small objects back to back and hands
// one to each worker, which then writes it over and over. An allocator that
// packs the objects into one cache line makes the workers fight over it.
// Each worker then replaces its object with one it allocates itself, which
// should land in memory private to that thread.
#include <barrier>
#include <thread>

#include "common.hpp"

namespace {

// Volatile so every increment really goes to memory, as shared data would.
void hammer(void* obj, long writes) {
  auto* counter = static_cast<volatile std::uint64_t*>(obj);
  for (long i = 0; i < writes; ++i) *counter = *counter + 1;
  if (*counter != static_cast<std::uint64_t>(writes)) bench::fail("counter lost writes", obj);
}

void* zeroed(std::size_t size) {
  void* p = std::malloc(size);
  if (p == nullptr) bench::fail("malloc returned null");
  std::memset(p, 0, size);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long threads = args.num("threads", 2, 2);
  const long size = args.num("size", 16, 16);
  const long rounds = args.num("rounds", 600, 40);
  const long writes = args.num("writes", 500'000, 100'000);  // per object and round
  args.done();
  if (size < 8) bench::fail("--size must be at least 8");

  const auto nthreads = static_cast<std::size_t>(threads);
  const auto bytes = static_cast<std::size_t>(size);
  std::vector<void*> handed(nthreads);
  std::barrier sync(threads + 1);
  auto worker = [&](std::size_t t) {
    for (long r = 0; r < rounds; ++r) {
      sync.arrive_and_wait();  // main has filled handed[]
      hammer(handed[t], writes);
      std::free(handed[t]);
      void* own = zeroed(bytes);
      hammer(own, writes);
      std::free(own);
      sync.arrive_and_wait();
    }
  };

  bench::Timer timer;
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < nthreads; ++t) pool.emplace_back(worker, t);
  for (long r = 0; r < rounds; ++r) {
    for (auto& p : handed) p = zeroed(bytes);
    sync.arrive_and_wait();
    sync.arrive_and_wait();
  }
  for (auto& th : pool) th.join();
  bench::report(static_cast<double>(2 * threads * rounds * writes) / timer.seconds(), "writes/s");
}
