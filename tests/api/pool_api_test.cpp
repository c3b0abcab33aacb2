// The pool API of poolmalloc.h / poolmalloc.hpp: fixed pools (cap,
// exhaustion, growth, recycling, release, threads), range allocation and the
// std::pmr resources.
#include <gtest/gtest.h>

#include <errno.h>
#include <unistd.h>
#include <sys/wait.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <list>
#include <map>
#include <memory_resource>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "config.h"
#include "os.h"
#include "poolmalloc.hpp"

namespace {

using poolmalloc::fixed_pool;
using poolmalloc::single_thread;
using poolmalloc::thread_safe;

TEST(FixedPool, CapAndExhaustion) {
  fixed_pool<single_thread> pool(24, {.initial_blocks = 10, .max_blocks = 10});
  auto s = pool.stats();
  EXPECT_EQ(s.block_size, 32u);  // rounded to the 16-byte alignment
  EXPECT_EQ(s.capacity, 10u);
  std::vector<void*> got;
  for (int i = 0; i < 10; ++i) got.push_back(pool.allocate());
  EXPECT_EQ(pool.try_allocate(), nullptr);
  EXPECT_THROW(pool.allocate(), std::bad_alloc);
  s = pool.stats();
  EXPECT_EQ(s.in_use, 10u);
  EXPECT_EQ(s.failures, 2u);
  EXPECT_EQ(s.grows, 0u);
  pool.deallocate(got.back());
  void* again = pool.allocate();
  EXPECT_EQ(again, got.back());  // freed blocks are recycled
  for (void* p : got) pool.deallocate(p);
  s = pool.stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.peak_in_use, 10u);
}

TEST(FixedPool, GrowsOnDemandAndReleasesOnDestruction) {
  // The pool's descriptor comes from the size-class pools: what their first
  // use maps (a segment, the thread's heap) stays, also when this test runs alone.
  poolmalloc_free(poolmalloc_malloc(64));
  size_t mapped_before = pm::os::mapped_bytes();
  {
    fixed_pool<single_thread> pool(100);
    EXPECT_EQ(pool.stats().capacity, 0u);
    std::set<void*> seen;
    for (int i = 0; i < 5000; ++i) {
      void* p = pool.allocate();
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
      EXPECT_TRUE(seen.insert(p).second);
      EXPECT_TRUE(pool.owns(p));
      memset(p, 0x5A, 100);
    }
    auto s = pool.stats();
    EXPECT_EQ(s.in_use, 5000u);
    EXPECT_GE(s.capacity, 5000u);
    EXPECT_GE(s.grows, 3u);  // chunks double: a few grows, not one per page
    EXPECT_LE(s.grows, 12u);
    EXPECT_GE(s.reserved_bytes, s.capacity * s.block_size);
    EXPECT_GT(pm::os::mapped_bytes(), mapped_before);
    int x = 0;
    EXPECT_FALSE(pool.owns(&x));
  }
  EXPECT_EQ(pm::os::mapped_bytes(), mapped_before);
}

// A fork while another thread holds a thread-safe pool's lock: the child
// finds the lock free (the fork handlers hold every such lock across the
// fork) and uses the pool. Each child must be done within 5 s; before, a
// child that forked while the worker was inside the pool spun for good.
TEST(FixedPool, ThreadSafePoolWorksInAForkedChild) {
  poolmalloc_fixed_options o{};
  o.block_size = 48;
  o.thread_safe = 1;
  poolmalloc_fixed_pool* fp = poolmalloc_fixed_create(&o);
  ASSERT_NE(fp, nullptr);
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    void* held[64];
    while (!stop.load(std::memory_order_relaxed)) {
      for (void*& b : held) b = poolmalloc_fixed_alloc(fp);
      for (void* b : held) poolmalloc_fixed_free(fp, b);
    }
  });
  int hung = 0, failed = 0;
  for (int i = 0; i < 100 && hung == 0; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      void* b = poolmalloc_fixed_alloc(fp);
      if (b == nullptr) _exit(1);
      poolmalloc_fixed_free(fp, b);
      _exit(0);
    }
    int status = 0;
    int waited = 0;
    while (waitpid(pid, &status, WNOHANG) == 0 && waited < 5000) {
      usleep(1000);
      ++waited;
    }
    if (waited >= 5000) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      ++hung;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failed;
    }
  }
  stop = true;
  worker.join();
  poolmalloc_fixed_destroy(fp);
  EXPECT_EQ(hung, 0);
  EXPECT_EQ(failed, 0);
}

TEST(FixedPool, AlignmentAndObjects) {
  struct alignas(64) Line {
    int v[16];
  };
  fixed_pool<single_thread> pool(sizeof(Line), {.align = 64});
  std::vector<Line*> lines;
  for (int i = 0; i < 100; ++i) {
    Line* l = pool.create<Line>();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(l) % 64, 0u);
    l->v[0] = i;
    lines.push_back(l);
  }
  for (int i = 0; i < 100; ++i) EXPECT_EQ(lines[i]->v[0], i);
  for (Line* l : lines) pool.destroy(l);
  EXPECT_EQ(pool.stats().in_use, 0u);
}

TEST(FixedPool, ObjectsThatDoNotFitAreRefused) {
  struct alignas(64) Line {
    int v[16];
  };
  struct Big {
    char c[256];
  };
  fixed_pool<single_thread> small(16);
  EXPECT_THROW(small.create<Big>(), std::bad_alloc);  // 256 bytes in 16-byte blocks
  fixed_pool<single_thread> loose(96);                  // 16-byte alignment, 96-byte blocks
  EXPECT_THROW(loose.create<Line>(), std::bad_alloc);
  EXPECT_EQ(small.stats().in_use, 0u);
  EXPECT_EQ(loose.stats().in_use, 0u);
}

TEST(FixedPool, DestroyThroughABaseFreesTheBlock) {
  struct A {
    virtual ~A() = default;
    long a = 1;
  };
  struct B {
    virtual ~B() = default;
    long b = 2;
  };
  struct C : A, B {
    long c = 3;
  };
  fixed_pool<single_thread> pool(sizeof(C));
  std::set<void*> blocks;
  for (int i = 0; i < 50; ++i) {
    C* c = pool.create<C>();
    B* b = c;
    ASSERT_NE(static_cast<void*>(b), static_cast<void*>(c));
    blocks.insert(c);
    pool.destroy(b);  // the block is c's address, not b's
  }
  EXPECT_EQ(blocks.size(), 1u);  // the one block, reused each time
  EXPECT_EQ(pool.stats().in_use, 0u);
}

TEST(FixedPool, OwnsOnlyItsBlocks) {
  poolmalloc_fixed_options o{};
  o.block_size = 100;  // stride 112
  o.max_blocks = 3;
  poolmalloc_fixed_pool* pool = poolmalloc_fixed_create(&o);
  ASSERT_NE(pool, nullptr);
  auto* b = static_cast<char*>(poolmalloc_fixed_alloc(pool));
  ASSERT_NE(b, nullptr);
  EXPECT_TRUE(poolmalloc_fixed_owns(pool, b));
  EXPECT_TRUE(poolmalloc_fixed_owns(pool, b + 2 * 112));
  EXPECT_FALSE(poolmalloc_fixed_owns(pool, b + 1));
  EXPECT_FALSE(poolmalloc_fixed_owns(pool, b + 3 * 112));  // past the cap's 3 blocks
  EXPECT_FALSE(poolmalloc_fixed_owns(pool, b + 10 * 112));
  poolmalloc_fixed_free(pool, b);
  poolmalloc_fixed_destroy(pool);
}

// A write after free over the tag hides the second free from
// deallocate's test; the block is then listed twice. It goes out once, and
// the allocation that meets it again aborts instead of handing it out twice.
TEST(FixedPoolDeath, WriteOverTheTagThenDoubleFreeNeverHandsABlockOutTwice) {
  EXPECT_DEATH(
      {
        fixed_pool<single_thread> pool(48);
        void* keep = pool.allocate();
        auto* p = static_cast<volatile uint64_t*>(pool.allocate());
        pool.deallocate(const_cast<uint64_t*>(p));
        p[1] = 0;
        pool.deallocate(const_cast<uint64_t*>(p));
        void* a = pool.allocate();
        void* b = pool.allocate();
        std::fprintf(stderr, "handed out %p and %p\n", a, b);
        pool.deallocate(keep);
      },
      "poolmalloc_fixed_alloc: free list corrupted \\(a block written after it was freed, or freed twice\\?\\): 0x");
}

TEST(FixedPoolDeath, DoubleFreeAndFreeIntoTheWrongPoolAbort) {
  EXPECT_DEATH(
      {
        fixed_pool<single_thread> pool(48);
        void* keep = pool.allocate();
        void* p = pool.allocate();
        pool.deallocate(p);
        pool.deallocate(p);
        pool.deallocate(keep);
      },
      "poolmalloc_fixed_free: double free of 0x");
  EXPECT_DEATH(
      {
        fixed_pool<single_thread> a(32);
        fixed_pool<single_thread> b(256);
        void* p = a.allocate();
        b.deallocate(p);
      },
      "poolmalloc_fixed_free: not a block of this pool");
}

// A pointer that is not a block this pool handed out would go onto its free
// list and be handed out again while something else uses it. These are
// caught also while the pool has blocks in use.
TEST(FixedPoolDeath, ForeignInteriorAndUnusedBlocksAbort) {
  EXPECT_DEATH(
      {
        fixed_pool<single_thread> a(48);
        fixed_pool<single_thread> b(48);
        void* keep = b.allocate();
        void* p = a.allocate();
        b.deallocate(p);  // a's block into b, which has one in use
        b.deallocate(keep);
      },
      "poolmalloc_fixed_free: not a block of this pool");
  EXPECT_DEATH(
      {
        fixed_pool<single_thread> a(48);
        void* keep = a.allocate();
        void* m = poolmalloc_malloc(48);
        a.deallocate(m);
        a.deallocate(keep);
      },
      "poolmalloc_fixed_free: not a block of this pool");
  EXPECT_DEATH(
      {
        fixed_pool<single_thread> a(48);
        auto* p = static_cast<char*>(a.allocate());
        a.deallocate(p + 16);
      },
      "poolmalloc_fixed_free: not the start of a block of this pool");
  EXPECT_DEATH(
      {
        fixed_pool<single_thread> a(48, {.initial_blocks = 10});
        auto* p = static_cast<char*>(a.allocate());
        a.deallocate(p + 3 * a.block_size());  // in the pool, never handed out
      },
      "poolmalloc_fixed_free: a block this pool never handed out");
  // A block of an older chunk, after the pool grew.
  EXPECT_DEATH(
      {
        fixed_pool<single_thread> a(48);
        auto* first = static_cast<char*>(a.allocate());
        for (int i = 0; i < 1000; ++i) (void)a.allocate();
        ASSERT_GE(a.stats().grows, 2u);
        a.deallocate(first + 8);
      },
      "poolmalloc_fixed_free: not the start of a block of this pool");
}

// Block starts are told from other addresses by a multiplication: check
// it against the division for strides with odd factors of all sizes.
TEST(FixedPool, OwnsTellsBlockStartsForEveryStride) {
  for (size_t size : {8, 24, 40, 48, 56, 72, 100, 112, 120, 200, 1000, 1016, 3000, 4096, 5000, 12296}) {
    for (size_t align : {8, 16, 64, 4096}) {
      poolmalloc_fixed_options o{};
      o.block_size = size;
      o.align = align;
      o.initial_blocks = 4;
      poolmalloc_fixed_pool* pool = poolmalloc_fixed_create(&o);
      ASSERT_NE(pool, nullptr);
      poolmalloc_fixed_stats st;
      poolmalloc_fixed_get_stats(pool, &st);
      auto* b = static_cast<char*>(poolmalloc_fixed_alloc(pool));
      ASSERT_NE(b, nullptr);
      for (size_t k = 0; k < 4 * st.block_size; ++k)
        ASSERT_EQ(poolmalloc_fixed_owns(pool, b + k) != 0, k % st.block_size == 0) << size << "/" << align << " +" << k;
      poolmalloc_fixed_free(pool, b);
      poolmalloc_fixed_destroy(pool);
    }
  }
}

TEST(FixedPool, BlocksOfOlderChunksAreFreedAndOwned) {
  fixed_pool<single_thread> pool(40);
  std::vector<void*> got;
  for (int i = 0; i < 3000; ++i) got.push_back(pool.allocate());
  size_t grows = pool.stats().grows;
  ASSERT_GE(grows, 3u);
  for (void* p : got) EXPECT_TRUE(pool.owns(p));
  // Free in an order that visits every chunk, oldest first.
  for (void* p : got) pool.deallocate(p);
  EXPECT_EQ(pool.stats().in_use, 0u);
  std::set<void*> again;
  for (int i = 0; i < 3000; ++i) EXPECT_TRUE(again.insert(pool.allocate()).second);
  EXPECT_EQ(again, std::set<void*>(got.begin(), got.end()));  // the same blocks, each once
  EXPECT_EQ(pool.stats().grows, grows);  // no chunk mapped for blocks freed
}

TEST(FixedPoolDeath, FreeIntoANullPoolAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  poolmalloc::fixed_pool<poolmalloc::single_thread> a(32);
  void* b = a.allocate();
  ASSERT_NE(b, nullptr);
  poolmalloc::fixed_pool<poolmalloc::single_thread> moved(std::move(a));
  EXPECT_DEATH(poolmalloc_fixed_free(nullptr, b), "poolmalloc_fixed_free: a block given to a null pool");
  poolmalloc_fixed_free(nullptr, nullptr);  // nothing to free: nothing happens
  moved.deallocate(b);
}

TEST(FixedPoolDeath, UseAfterDestroyAborts) {
  EXPECT_DEATH(
      {
        poolmalloc_fixed_options o{};
        o.block_size = 64;
        poolmalloc_fixed_pool* p = poolmalloc_fixed_create(&o);
        (void)poolmalloc_fixed_alloc(p);
        poolmalloc_fixed_destroy(p);
        poolmalloc_fixed_destroy(p);
      },
      "poolmalloc_fixed_destroy: not a live fixed pool");
  EXPECT_DEATH(
      {
        poolmalloc_fixed_options o{};
        o.block_size = 64;
        o.thread_safe = 1;
        poolmalloc_fixed_pool* p = poolmalloc_fixed_create(&o);
        poolmalloc_fixed_destroy(p);
        (void)poolmalloc_fixed_alloc(p);
      },
      "poolmalloc_fixed_alloc: not a live fixed pool");
}

TEST(FixedPool, FailuresSetErrno) {
  poolmalloc_fixed_options o{};
  errno = 0;
  EXPECT_EQ(poolmalloc_fixed_create(&o), nullptr);
  EXPECT_EQ(errno, EINVAL);
  o.block_size = 8;
  o.align = 48;
  errno = 0;
  EXPECT_EQ(poolmalloc_fixed_create(&o), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(poolmalloc_fixed_create(nullptr), nullptr);
  EXPECT_EQ(errno, EINVAL);
  o.align = 0;
  o.initial_blocks = size_t{1} << 60;  // more than any address space
  errno = 0;
  EXPECT_EQ(poolmalloc_fixed_create(&o), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  o.initial_blocks = 0;
  o.max_blocks = 1;
  poolmalloc_fixed_pool* pool = poolmalloc_fixed_create(&o);
  ASSERT_NE(pool, nullptr);
  void* p = poolmalloc_fixed_alloc(pool);
  ASSERT_NE(p, nullptr);
  errno = 0;
  EXPECT_EQ(poolmalloc_fixed_alloc(pool), nullptr);  // at the cap
  EXPECT_EQ(errno, ENOMEM);
  poolmalloc_fixed_free(pool, p);
  poolmalloc_fixed_destroy(pool);
  errno = 0;
  EXPECT_EQ(poolmalloc_fixed_alloc(nullptr), nullptr);
  EXPECT_EQ(errno, EINVAL);
}

// The OS refusing memory leaves the pool as it was: the allocation fails
// (counted, ENOMEM), the next one may succeed. A refused chunk of the
// planned size is followed by a try of a page's worth.
TEST(FixedPool, RefusedMemoryLeavesThePoolUsable) {
  fixed_pool<single_thread> pool(64);
  std::vector<void*> got;
  for (int i = 0; i < 200; ++i) got.push_back(pool.allocate());  // next chunk planned larger than a page
  auto s = pool.stats();
  size_t fresh = s.capacity - s.in_use;
  for (size_t i = 0; i < fresh; ++i) got.push_back(pool.allocate());
  s = pool.stats();
  ASSERT_EQ(s.in_use, s.capacity);
  pm::os::inject_map_failures(1);
  void* p = pool.try_allocate();  // the planned chunk is refused, a page's worth is not
  pm::os::inject_map_failures(0);
  ASSERT_NE(p, nullptr);
  got.push_back(p);
  auto t = pool.stats();
  EXPECT_EQ(t.grows, s.grows + 1);
  EXPECT_EQ(t.capacity, s.capacity + pm::kPageSize / 64);
  EXPECT_EQ(t.failures, 0u);
  while (pool.stats().in_use < pool.stats().capacity) got.push_back(pool.allocate());
  pm::os::inject_map_failures(2);
  errno = 0;
  EXPECT_EQ(pool.try_allocate(), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  pm::os::inject_map_failures(0);
  EXPECT_EQ(pool.stats().failures, 1u);
  EXPECT_EQ(pool.stats().in_use, got.size());
  got.push_back(pool.allocate());  // memory is back
  for (void* q : got) pool.deallocate(q);
  EXPECT_EQ(pool.stats().in_use, 0u);
}

// Blocks allocated by some threads and freed by others, while another
// thread reads the metrics: nothing is lost, and every figure read is
// consistent.
TEST(FixedPool, CrossThreadFreesAndConcurrentMetrics) {
  constexpr int kPairs = 3, kItems = 20000, kCap = 512;
  fixed_pool<thread_safe> pool(24, {.max_blocks = kCap});
  std::atomic<bool> bad{false}, done{false};
  std::atomic<long> refused{0};
  std::thread reader([&] {
    while (!done.load()) {
      auto s = pool.stats();
      if (s.in_use > s.capacity || s.in_use > s.peak_in_use || s.peak_in_use > kCap || s.capacity > kCap) bad = true;
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kPairs; ++t) {
    auto* ring = new std::atomic<void*>[64]();
    threads.emplace_back([&, ring] {  // producer
      for (int i = 0; i < kItems; ++i) {
        void* p;
        while ((p = pool.try_allocate()) == nullptr) {
          ++refused;
          std::this_thread::yield();
        }
        *static_cast<int*>(p) = i;
        std::atomic<void*>& slot = ring[i % 64];
        while (slot.load(std::memory_order_acquire) != nullptr) std::this_thread::yield();
        slot.store(p, std::memory_order_release);
      }
    });
    threads.emplace_back([&, ring] {  // consumer
      for (int i = 0; i < kItems; ++i) {
        std::atomic<void*>& slot = ring[i % 64];
        void* p;
        while ((p = slot.load(std::memory_order_acquire)) == nullptr) std::this_thread::yield();
        slot.store(nullptr, std::memory_order_relaxed);
        if (*static_cast<int*>(p) != i || !pool.owns(p)) bad = true;
        pool.deallocate(p);
      }
      delete[] ring;
    });
  }
  for (auto& th : threads) th.join();
  done = true;
  reader.join();
  EXPECT_FALSE(bad);
  auto s = pool.stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_LE(s.peak_in_use, size_t{kCap});
  EXPECT_EQ(s.failures, static_cast<size_t>(refused.load()));
}

TEST(Pmr, PoolResourceIsNeitherCopiedNorMoved) {
  using R = poolmalloc::pool_resource<single_thread>;
  EXPECT_FALSE(std::is_copy_constructible_v<R>);
  EXPECT_FALSE(std::is_move_constructible_v<R>);
  EXPECT_FALSE(std::is_copy_assignable_v<R>);
  EXPECT_FALSE(std::is_move_assignable_v<R>);
}

TEST(FixedPool, BadOptionsAreRefused) {
  poolmalloc_fixed_options o{};
  EXPECT_EQ(poolmalloc_fixed_create(&o), nullptr);  // block_size 0
  o.block_size = 8;
  o.align = 3;
  EXPECT_EQ(poolmalloc_fixed_create(&o), nullptr);
  o.align = 8192;
  EXPECT_EQ(poolmalloc_fixed_create(&o), nullptr);
  o.align = 0;
  o.initial_blocks = 5;
  o.max_blocks = 4;
  EXPECT_EQ(poolmalloc_fixed_create(&o), nullptr);
  EXPECT_EQ(poolmalloc_fixed_create(nullptr), nullptr);
  EXPECT_THROW(fixed_pool<thread_safe>(0), std::bad_alloc);
  EXPECT_EQ(poolmalloc_fixed_alloc(nullptr), nullptr);
  poolmalloc_fixed_free(nullptr, nullptr);
  poolmalloc_fixed_destroy(nullptr);
}

TEST(FixedPool, ThreadSafeUnderContention) {
  constexpr int kThreads = 8, kRounds = 2000, kHeld = 16;
  fixed_pool<thread_safe> pool(48, {.max_blocks = kThreads * kHeld});
  std::atomic<bool> bad{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      void* held[kHeld];
      for (int r = 0; r < kRounds; ++r) {
        for (auto& h : held) {
          h = pool.try_allocate();
          if (h == nullptr) {
            bad = true;  // the cap fits every thread's share
            return;
          }
          memset(h, t, 48);
        }
        for (auto* h : held)
          if (static_cast<unsigned char*>(h)[47] != t) bad = true;
        for (auto* h : held) pool.deallocate(h);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_FALSE(bad);
  auto s = pool.stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_LE(s.peak_in_use, size_t{kThreads * kHeld});
  EXPECT_GE(s.peak_in_use, size_t{kHeld});
}

TEST(Range, AtLeastGivesTheUsableSize) {
  auto a = poolmalloc::allocate_at_least(100);
  EXPECT_EQ(a.size, 112u);
  EXPECT_EQ(poolmalloc_usable_size(a.ptr), a.size);
  poolmalloc::deallocate(a.ptr);
  auto z = poolmalloc::allocate_at_least(0);
  EXPECT_GE(z.size, 1u);
  poolmalloc::deallocate(z.ptr);
  auto big = poolmalloc::allocate_at_least(300000);
  EXPECT_GE(big.size, 300000u);
  memset(big.ptr, 1, big.size);
  poolmalloc::deallocate(big.ptr);
}

TEST(Range, SatisfiableRanges) {
  auto a = poolmalloc::allocate_range(1000, 1100);
  ASSERT_NE(a.ptr, nullptr);
  EXPECT_EQ(a.size, 1024u);
  poolmalloc::deallocate(a.ptr);
  auto exact = poolmalloc::allocate_range(64, 64);
  EXPECT_EQ(exact.size, 64u);
  poolmalloc::deallocate(exact.ptr);
  // Large: the smallest block for 300000 bytes is 303104, 74 pages (page-aligned, no header room lost).
  auto l = poolmalloc::allocate_range(300000, 303104);
  ASSERT_NE(l.ptr, nullptr);
  EXPECT_GE(l.size, 300000u);
  EXPECT_LE(l.size, 303104u);
  memset(l.ptr, 7, l.size);
  poolmalloc::deallocate(l.ptr);
  // min in the last 16 bytes of a page: a plain block would take one page
  // more for its header; the page-aligned one is the smallest, 74 pages.
  auto top = poolmalloc::allocate_range(303100, 400000);
  ASSERT_NE(top.ptr, nullptr);
  EXPECT_EQ(top.size, 303104u);
  poolmalloc::deallocate(top.ptr);
}

// In a threaded process a thread keeps freed large blocks for itself and
// serves a request with one up to a quarter larger: a range that such a
// block overshoots still gets a block of the plain size.
TEST(Range, LargeRangeIsNotSpoiledByTheThreadCache) {
  std::thread([] { poolmalloc_free(poolmalloc_malloc(16)); }).join();  // the process is threaded from here on
  poolmalloc_free(poolmalloc_malloc(16));  // and this thread has a heap, which holds the cache
  for (int i = 0; i < 4; ++i) {
    (void)poolmalloc::purge();  // empties this thread's cache of what earlier tests freed
    void* big = poolmalloc_malloc(360000);  // a mapping of 88 pages
    ASSERT_NE(big, nullptr);
    poolmalloc_free(big);  // into this thread's cache
    void* again = poolmalloc_malloc(300000);
    ASSERT_GT(poolmalloc_usable_size(again), 303090u);  // the cached block: what the range must not take
    poolmalloc_free(again);
    // 300000 bytes: 74 pages less the header, 303088; the page-aligned
    // form (303104) is above max.
    auto a = poolmalloc::allocate_range(300000, 303090);
    ASSERT_NE(a.ptr, nullptr) << "round " << i;
    EXPECT_EQ(a.size, 303088u);
    memset(a.ptr, 3, a.size);
    poolmalloc::deallocate(a.ptr);
  }
}

TEST(Range, ImpossibleRangesSetErrno) {
  errno = 0;
  EXPECT_EQ(poolmalloc::allocate_range(200, 100).ptr, nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(poolmalloc::allocate_range(17, 20).ptr, nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(poolmalloc::allocate_range(0, 0).ptr, nullptr);  // no block has 0 usable bytes
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(poolmalloc::allocate_range(303105, 303106).ptr, nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(poolmalloc::allocate_range(SIZE_MAX / 2, SIZE_MAX).ptr, nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Range, ImpossibleRangesGiveNull) {
  for (auto [lo, hi] : {std::pair<size_t, size_t>{17, 20}, {200, 100}, {40961, 40962}, {33000, 33001}, {73729, 73730}, {303105, 303106},
                        {SIZE_MAX / 2, SIZE_MAX}}) {
    auto a = poolmalloc::allocate_range(lo, hi);
    EXPECT_EQ(a.ptr, nullptr) << lo << ".." << hi;
    EXPECT_EQ(a.size, 0u);
  }
}

TEST(Pmr, ContainersOnTheDefaultResource) {
  auto before = poolmalloc::stats();
  {
    std::pmr::vector<int> v(poolmalloc::resource());
    for (int i = 0; i < 1000; ++i) v.push_back(i);
    std::pmr::map<int, std::pmr::string> m(poolmalloc::resource());
    for (int i = 0; i < 100; ++i) m.emplace(i, std::pmr::string(50, 'x'));
    EXPECT_EQ(v[999], 999);
    EXPECT_EQ(m.at(42).size(), 50u);
    auto during = poolmalloc::stats();
    EXPECT_GE(during.small_requests - before.small_requests, 200u);  // the map's nodes and strings
  }
  EXPECT_EQ(poolmalloc::stats().small_live_blocks, before.small_live_blocks);
  EXPECT_TRUE(poolmalloc::resource()->is_equal(poolmalloc::memory_resource()));
  void* p = poolmalloc::resource()->allocate(100, 256);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
  poolmalloc::resource()->deallocate(p, 100, 256);
}

TEST(Pmr, PoolResourceServesAndReleases) {
  // Cached large mappings are given back on both sides: the large block
  // below comes from resource() and goes back to the cache. A small and a
  // large block first: what the first of each maps (the thread's heap, the
  // registry of large blocks) stays, also when this test runs alone.
  poolmalloc::resource()->deallocate(poolmalloc::resource()->allocate(64), 64);
  poolmalloc::resource()->deallocate(poolmalloc::resource()->allocate(300000), 300000);
  (void)poolmalloc::purge();
  size_t mapped_before = pm::os::mapped_bytes();
  {
    poolmalloc::pool_resource<single_thread> pools;
    std::pmr::list<std::pmr::string> l(&pools);
    for (int i = 0; i < 2000; ++i) l.emplace_back(40, static_cast<char>('a' + i % 26));
    std::pmr::vector<char> big(&pools);
    big.resize(300000);  // above the pooled sizes: from resource()
    EXPECT_EQ(l.back().size(), 40u);
    const auto* node_pool = pools.pool_for(sizeof(std::pmr::string) + 2 * sizeof(void*));
    ASSERT_NE(node_pool, nullptr);
    EXPECT_GE(node_pool->stats().in_use, 2000u);
    void* aligned = pools.allocate(64, 1024);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned) % 1024, 0u);
    pools.deallocate(aligned, 64, 1024);
    EXPECT_FALSE(pools.is_equal(poolmalloc::pool_resource<single_thread>()));
  }
  (void)poolmalloc::purge();
  EXPECT_EQ(pm::os::mapped_bytes(), mapped_before);
}

TEST(Pmr, ThreadSafePoolResourceSharedByThreads) {
  poolmalloc::pool_resource<thread_safe> pools;
  std::vector<std::thread> threads;
  std::atomic<long> total{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      std::pmr::map<int, std::pmr::string> m(&pools);
      for (int i = 0; i < 3000; ++i) m.emplace(i, std::pmr::string(30, 'q'));
      long n = 0;
      for (auto& [k, v] : m) n += static_cast<long>(v.size());
      total += n;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(total, 6L * 3000 * 30);
  EXPECT_EQ(pools.pool_for(16)->stats().in_use, 0u);
}

TEST(Api, VersionAndPurge) {
  EXPECT_EQ(poolmalloc::version(), POOLMALLOC_VERSION_STRING);
  EXPECT_EQ(poolmalloc_version_number(), POOLMALLOC_VERSION_NUMBER);
  void* p = poolmalloc_malloc(30000);
  poolmalloc_free(p);
  (void)poolmalloc::purge();
  auto s = poolmalloc::stats();
  EXPECT_EQ(s.num_classes, 96u);
  EXPECT_EQ(s.small_max, 262144u);
  EXPECT_EQ(poolmalloc_stats_get(nullptr), -1);
}

}  // namespace
