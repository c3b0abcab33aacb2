// Cross-thread frees, thread exit and reuse of abandoned pools, fork.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "alloc.h"
#include "heap.h"
#include "lock.h"
#include "segment.h"

namespace pm {
namespace {

TEST(Threads, SpinLockExcludesOnceTheProcessHasThreads) {
  // While the process has one thread the lock is not taken; from the first
  // pthread_create on it must exclude for real.
  std::thread([] {}).join();
  ASSERT_FALSE(__libc_single_threaded);
  SpinLock lock;
  std::atomic<bool> entered{false};
  lock.lock();
  std::thread other([&] {
    LockGuard g(lock);
    entered.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(entered.load()) << "a second thread entered a held lock";
  lock.unlock();
  other.join();
  EXPECT_TRUE(entered.load());
}

TEST(Threads, BlocksFreedByAnotherThreadAreReused) {
  // The producer allocates; the consumer frees everything. Pools must be
  // recycled through the remote lists instead of growing without bound.
  constexpr int kRounds = 200, kBatch = 5000;
  std::vector<void*> batch(kBatch);
  size_t pools_after_first = 0;
  for (int r = 0; r < kRounds; ++r) {
    for (auto& p : batch) {
      p = alloc(48);
      memset(p, r, 48);
    }
    std::thread([&] {
      for (void* p : batch) dealloc(p);
    }).join();
    if (r == 1) pools_after_first = arena_stats().pools_in_use;
  }
  EXPECT_LE(arena_stats().pools_in_use, pools_after_first + 4);
}

TEST(Threads, ParkedFullPoolsComeBackAfterRemoteFrees) {
  // Fill many pools completely (so they are parked), free all from another
  // thread, then allocate the same amount again: no new pools needed.
  constexpr int kN = 100000;
  std::vector<void*> v(kN);
  for (auto& p : v) p = alloc(64);
  size_t pools = arena_stats().pools_in_use;
  std::thread([&] {
    for (void* p : v) dealloc(p);
  }).join();
  for (auto& p : v) p = alloc(64);
  EXPECT_LE(arena_stats().pools_in_use, pools + 1);
  for (void* p : v) dealloc(p);
}

TEST(Threads, BlocksOutlivingTheirThreadAreFreedAndPoolsAdopted) {
  std::vector<void*> left;
  std::thread([&] {
    for (int i = 0; i < 10000; ++i) {
      void* p = alloc(32 + (i % 5) * 16);
      memset(p, 0x5A, 32);
      left.push_back(p);
    }
  }).join();
  for (void* p : left) {
    EXPECT_EQ(static_cast<unsigned char*>(p)[31], 0x5A);
    dealloc(p);  // the owner is gone: this thread takes its pools over
  }
  trim();
  size_t before = arena_stats().pools_in_use;
  for (int t = 0; t < 50; ++t) {
    std::thread([] {
      std::vector<void*> mine;
      for (int i = 0; i < 1000; ++i) mine.push_back(alloc(48));
      for (void* p : mine) dealloc(p);
    }).join();
  }
  EXPECT_LE(arena_stats().pools_in_use, before + 8);
}

TEST(Threads, FreesIntoAnExitedThreadsPoolsTakeThemOver) {
  // The freeing thread takes each pool of the exited thread over at its
  // first free into it; the rest of its frees are local, and the pool goes
  // back to the arena with its last block, without waiting for an adoption.
  // (Only a thread with a heap takes pools over: this one gets its heap here.)
  dealloc(alloc(16));
  size_t before = arena_stats().pools_in_use;
  std::vector<void*> left(20000);
  std::thread([&] {
    for (auto& p : left) p = alloc(80);
  }).join();
  ASSERT_GE(arena_stats().pools_in_use, before + 20);
  for (void* p : left) dealloc(p);
  EXPECT_LE(arena_stats().pools_in_use, before + 1);
}

TEST(Threads, ConcurrentFreesIntoExitedThreadsPoolsKeepThemConsistent) {
  // Four threads free disjoint quarters of an exited thread's blocks at
  // once: one of them takes each pool over, the others free into it as
  // remote threads. Every block comes back exactly once: after all of them
  // are freed and the pools collected, the pool count is back where it was.
  size_t before = arena_stats().pools_in_use;
  constexpr int kThreads = 4, kN = 40000;
  std::vector<unsigned char*> left(kN);
  std::thread([&] {
    for (int i = 0; i < kN; ++i) {
      left[i] = static_cast<unsigned char*>(alloc(16 + (i % 7) * 24));
      memset(left[i], i & 0xff, 16);
    }
  }).join();
  std::atomic<long> bad{0};
  std::vector<std::thread> freers;
  for (int t = 0; t < kThreads; ++t)
    freers.emplace_back([&, t] {
      for (int i = t; i < kN; i += kThreads) {
        if (left[i][15] != static_cast<unsigned char>(i & 0xff)) bad.fetch_add(1);
        dealloc(left[i]);
      }
      // Allocate from whatever was taken over, then give it back.
      std::vector<void*> mine;
      for (int i = 0; i < 2000; ++i) mine.push_back(alloc(16 + (i % 7) * 24));
      for (void* p : mine) dealloc(p);
    });
  for (auto& th : freers) th.join();
  EXPECT_EQ(bad.load(), 0);
  trim();
  EXPECT_LE(arena_stats().pools_in_use, before + 1);
}

TEST(Threads, ManyShortLivedThreadsKeepMemoryFlat) {
  std::vector<void*> handoff;
  size_t peak_pools = 0;
  for (int t = 0; t < 3000; ++t) {
    std::thread([&] {
      for (int i = 0; i < 20; ++i) handoff.push_back(alloc(16 + (i % 8) * 48));
    }).join();
    for (void* p : handoff) dealloc(p);
    handoff.clear();
    if (t == 100) peak_pools = arena_stats().pools_in_use;
    if (t > 100) {
      ASSERT_LE(arena_stats().pools_in_use, peak_pools + 16) << t;
    }
  }
}

TEST(Threads, ConcurrentCrossFreesKeepContents) {
  // Threads swap blocks through shared slots, so most frees are remote. Each
  // block records its size in its first bytes and is filled with a pattern
  // derived from it; whoever frees a block verifies it first.
  constexpr int kThreads = 4, kOps = 150000;
  std::vector<std::atomic<unsigned char*>> slots(4096);
  std::atomic<long> errors{0};
  auto verify_and_free = [&](unsigned char* q) {
    size_t n;
    memcpy(&n, q, sizeof n);
    for (size_t i = sizeof n; i < n; ++i)
      if (q[i] != static_cast<unsigned char>(n + i)) {
        errors.fetch_add(1);
        break;
      }
    dealloc(q);
  };
  auto worker = [&](int id) {
    uint64_t x = 88172645463325252ull * static_cast<uint64_t>(id + 1);
    for (int i = 0; i < kOps; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      size_t n = 8 + (x >> 20) % 700;
      if ((x >> 40) % 97 == 0) n = 40000 + (x >> 45) % 100000;
      auto* p = static_cast<unsigned char*>(alloc(n));
      memcpy(p, &n, sizeof n);
      for (size_t j = sizeof n; j < n; ++j) p[j] = static_cast<unsigned char>(n + j);
      if (unsigned char* prev = slots[x % slots.size()].exchange(p)) verify_and_free(prev);
    }
  };
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t) ts.emplace_back(worker, t);
  for (auto& t : ts) t.join();
  for (auto& s : slots)
    if (unsigned char* p = s.load()) verify_and_free(p);
  EXPECT_EQ(errors.load(), 0);
}

TEST(Threads, ForkWhileOtherThreadsAllocate) {
  // The threads also trade blocks through shared slots (frees into each
  // other's pools), and the child frees what the slots hold: blocks of
  // heaps whose threads it does not have, some of them caught in the
  // middle of a malloc, a free or a slow path by the fork.
  constexpr size_t kSlots = 512;
  std::atomic<unsigned char*> slots[kSlots] = {};
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  dealloc(alloc(16));  // the process is set up before any thread can fork in the middle of it
  for (int t = 0; t < 2; ++t)
    ts.emplace_back([&, t] {
      unsigned r = 7u + static_cast<unsigned>(t);
      while (!stop.load()) {
        void* p[64];
        for (auto& q : p) q = alloc(24 + 100 * (reinterpret_cast<uintptr_t>(&q) % 7));
        for (auto& q : p) dealloc(q);
        for (int k = 0; k < 64; ++k) {
          r = r * 1103515245u + 12345u;
          size_t n = 24 + (r >> 8) % 3000;
          auto* b = static_cast<unsigned char*>(alloc(n));
          b[0] = static_cast<unsigned char>(n);
          b[n - 1] = static_cast<unsigned char>(n >> 3);
          *reinterpret_cast<size_t*>(b + 8) = n;
          if (unsigned char* old = slots[(r >> 4) % kSlots].exchange(b)) dealloc(old);
        }
      }
    });
  for (int i = 0; i < 50; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      alarm(20);
      int code = 0;
      for (auto& s : slots) {
        unsigned char* b = s.load();
        if (b == nullptr) continue;
        size_t n = *reinterpret_cast<size_t*>(b + 8);
        // A slot written just before its block's contents: the fork may show either.
        if (n >= 24 && n < 3024 && (b[0] != static_cast<unsigned char>(n) || b[n - 1] != static_cast<unsigned char>(n >> 3)))
          code = 4;
        if (n >= 24 && n < 3024) dealloc(b);
      }
      std::vector<void*> mine;
      for (int j = 0; j < 10000; ++j) {
        mine.push_back(alloc(static_cast<size_t>(j % 5000) + 1));
        memset(mine.back(), 0x33, static_cast<size_t>(j % 5000) + 1);
      }
      for (void* q : mine) dealloc(q);
      void* big = alloc(1 << 20);
      dealloc(big);
      _exit(code);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  stop = true;
  for (auto& t : ts) t.join();
  for (auto& s : slots)
    if (unsigned char* b = s.load()) dealloc(b);
}

// A remote free into a parked pool takes the pool's notification, then puts
// the pool on its owner's pending list. A fork between the two leaves a
// child in which no thread will: the child must relist the pool itself, or
// it stays parked for good and the owner's exit waits for it forever.
TEST(Threads, ForkBetweenARemoteFreesTwoStepsLosesNoPool) {
  std::vector<void*> mine;
  Pool* parked = nullptr;
  void* first = alloc(64);
  mine.push_back(first);
  for (int i = 0; i < 100000 && parked == nullptr; ++i) {
    mine.push_back(alloc(64));
    if (pool_of(first)->state.load() == PoolState::kParked) parked = pool_of(first);
  }
  ASSERT_NE(parked, nullptr) << "no pool was parked";
  // The first step of another thread's free of `first`, up to the notification.
  bool took = false;
  std::thread([&] { took = pool_push_remote(parked, static_cast<Block*>(first)); }).join();
  ASSERT_TRUE(took);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(10);  // a hang ends the child by SIGALRM
    for (size_t i = 1; i < mine.size(); ++i) dealloc(mine[i]);
    heap_collect(false);  // takes in the pools on the pending list, as a slow path does
    bool unparked = parked->state.load() != PoolState::kParked;
    heap_abandon(tl_heap);  // what the thread's exit does
    tl_heap = &g_empty_heap;
    _exit(unparked ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << "child ended by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0) << "the pool stayed parked in the child";
  // Here the report was only delayed: finish it.
  pool_report_parked(parked);
  for (size_t i = 1; i < mine.size(); ++i) dealloc(mine[i]);
}

// In a fork child only the forking thread exists: the pools of the others
// go to the abandoned lists, so that the child reuses their memory once it
// frees their blocks, and trim returns it.
TEST(Threads, AForkChildReusesThePoolsOfThreadsLeftBehind) {
  constexpr int kN = 60000;
  std::vector<void*> theirs(kN);
  std::atomic<int> stage{0};
  std::thread worker([&] {
    for (int i = 0; i < kN; ++i) {
      theirs[i] = alloc(256);
      memset(theirs[i], i & 0xff, 256);
    }
    stage = 1;
    while (stage.load() != 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (stage.load() != 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    alarm(20);
    int code = 0;
    size_t at_fork = arena_stats().pools_in_use;
    for (int i = 0; i < kN; ++i) {
      auto* b = static_cast<unsigned char*>(theirs[i]);
      if (b[0] != (i & 0xff) || b[255] != (i & 0xff)) code = 4;
      dealloc(b);
    }
    trim();
    size_t freed = arena_stats().pools_in_use;
    if (freed + kN * 256 / (64 << 10) > at_fork) code = code ? code : 5;  // their pools went back
    for (int i = 0; i < kN; ++i) theirs[i] = alloc(256);
    if (arena_stats().pools_in_use > at_fork + 8) code = code ? code : 6;  // and were used again
    for (void* p : theirs) dealloc(p);
    _exit(code);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  stage = 2;
  worker.join();
  EXPECT_TRUE(WIFEXITED(status)) << "child ended by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  EXPECT_NE(code, 4) << "a block changed in the child";
  EXPECT_NE(code, 5) << "the other thread's pools stayed in use after its blocks were freed";
  EXPECT_NE(code, 6) << "the child mapped new pools instead of reusing the other thread's";
  EXPECT_EQ(code, 0);
  for (void* p : theirs) dealloc(p);
}

TEST(Threads, FirstCallOfAThreadIsFree) {
  void* p = alloc(40);
  std::thread([p] { dealloc(p); }).join();
  void* q = alloc(40);
  EXPECT_NE(q, nullptr);
  dealloc(q);
}

// A thread that only frees what another allocated gets a heap of its own at
// its first such free, so that its frees are counted in its own counters
// (a counter shared by every such thread made their frees contend on one
// cache line).
TEST(Threads, AThreadThatOnlyFreesGetsItsOwnCounters) {
  std::vector<void*> v;
  for (int i = 0; i < 1000; ++i) v.push_back(alloc(48));
  size_t before = heaps_live();
  size_t during = 0;
  std::thread([&] {
    for (void* p : v) dealloc(p);
    during = heaps_live();
  }).join();
  EXPECT_EQ(during, before + 1);
  EXPECT_EQ(heaps_live(), before);  // torn down at its exit
}

}  // namespace
}  // namespace pm
