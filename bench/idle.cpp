// Idle return: a worker thread allocates and writes a batch of blocks, frees
// them and waits; then it exits, and the main thread only waits, allocating
// nothing. Prints the process's RSS at each step: what an allocator keeps
// for a live idle thread, and what it gives back once the thread is gone
// and nothing asks it for memory again. With --remote, the main thread
// frees the worker's blocks while the worker waits, then allocates 100 kB
// of its own, as a consumer that goes on would, and waits too: what an
// allocator keeps of memory that other threads freed into an idle
// thread's pools.
#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "common.hpp"

namespace {

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("VmRSS:")) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

void pause_ms(long ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const long size = args.num("size", 200'000, 200'000);
  const long blocks = args.num("blocks", 8, 8);
  const long idle_ms = args.num("idle-ms", 2000, 300);
  const bool remote = args.flag("remote");
  args.done();
  if (size < 16 || blocks < 1) bench::fail("--size must be at least 16 and --blocks at least 1");

  const long start = rss_kib();
  long freed = 0, worker_idle = 0;
  std::vector<bench::Block> held(static_cast<std::size_t>(blocks));
  std::atomic<int> step{0};
  std::thread worker([&] {
    bench::Rng rng(5);
    for (auto& b : held) {
      b.make(static_cast<std::size_t>(size), rng.next());
      std::memset(static_cast<char*>(b.p) + 8, 1, b.n - 16);  // every page resident
    }
    if (remote) {
      step.store(1);
      while (step.load() != 2) pause_ms(1);  // idle while the main thread frees and waits
      return;
    }
    for (auto& b : held) b.drop();
    freed = rss_kib();
    pause_ms(idle_ms);
    worker_idle = rss_kib();
  });
  if (remote) {
    while (step.load() != 1) pause_ms(1);
    for (auto& b : held) b.drop();
    std::vector<void*> mine(1000);
    for (void*& p : mine) p = std::malloc(100);
    freed = rss_kib();
    pause_ms(idle_ms);
    worker_idle = rss_kib();
    step.store(2);
    for (void* p : mine) std::free(p);
  }
  worker.join();
  pause_ms(idle_ms);
  const long end = rss_kib();
  std::printf("start: %ld kB\nafter-free: %ld kB\nworker-idle: %ld kB\nafter-exit-idle: %ld kB\n", start, freed,
              worker_idle, end);
  bench::report(static_cast<double>(end - start), "kB kept");
}
