// Large blocks and the per-thread cache of freed ones: reuse without the
// shared lock, the budget, the "cached" state that tells a freed block from
// a live one, frees by other threads, and what a thread leaves at exit.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "alloc.h"
#include "large.h"
#include "options.h"
#include "os.h"

namespace pm {
namespace {

// The calling thread's heap exists (the thread cache lives in it), and the
// process has had a second thread (a single-threaded one uses no thread cache).
void ensure_heap() {
  static bool threaded = [] {
    std::thread([] {}).join();
    return true;
  }();
  (void)threaded;
  dealloc(alloc(16));
}

// While the process has a single thread, freed large blocks go straight to
// the shared cache, which merges and splits them. Runs in a fresh process.
void single_threaded_scenario() {
  dealloc(alloc(16));
  void* p = alloc(600000);
  if (p == nullptr) std::_Exit(50);
  LargeStats before = large_stats();
  dealloc(p);
  LargeStats after = large_stats();
  if (after.thread_cached_bytes != 0) std::_Exit(51);
  if (after.cached_bytes < before.cached_bytes + 600000) std::_Exit(52);
  if (alloc(510000) != p) std::_Exit(53);  // reused from the shared cache (split to size)
  std::thread([] {}).join();  // threaded from now on: the thread's cache takes it
  dealloc(p);
  if (large_stats().thread_cached_bytes < 510000) std::_Exit(54);
  std::_Exit(0);
}

TEST(LargeThreadCache, NoneWhileTheProcessHasASingleThread) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(single_threaded_scenario(), testing::ExitedWithCode(0), "");
}

TEST(LargeThreadCache, AFreedBlockIsReusedForARequestOfAboutItsSize) {
  ensure_heap();
  void* p = alloc(600000);
  ASSERT_NE(p, nullptr);
  memset(p, 0x5A, 600000);
  size_t u = usable_size(p);
  LargeStats before = large_stats();
  dealloc(p);
  LargeStats held = large_stats();
  EXPECT_EQ(held.frees, before.frees + 1);
  EXPECT_EQ(held.live_blocks, before.live_blocks - 1);
  EXPECT_EQ(held.live_bytes + u, before.live_bytes);
  EXPECT_GE(held.thread_cached_bytes, before.thread_cached_bytes + 600000);
  // Up to a quarter smaller takes the same block; the stats see it live.
  void* q = alloc(510000);
  EXPECT_EQ(q, p);
  EXPECT_TRUE(owns(q));
  EXPECT_GE(usable_size(q), 600000u);
  LargeStats again = large_stats();
  EXPECT_EQ(again.allocs, held.allocs + 1);
  EXPECT_EQ(again.thread_cached_bytes, before.thread_cached_bytes);
  EXPECT_EQ(again.live_bytes, before.live_bytes);
  dealloc(q);
  // Much smaller does not: it would waste the rest of the block.
  void* r = alloc(300000);
  EXPECT_NE(r, p);
  dealloc(r);
}

TEST(LargeThreadCache, ABlockHeldInTheCacheIsNotLive) {
  ensure_heap();
  void* p = alloc(1000000);
  ASSERT_TRUE(owns(p));
  dealloc(p);
  EXPECT_FALSE(owns(p));
  EXPECT_EQ(usable_size(p), 0u);
  void* q = alloc(1000000);
  EXPECT_EQ(q, p);
  dealloc(q);
}

TEST(LargeThreadCache, StaysWithinItsBudgetAndEntryCount) {
  ensure_heap();
  const size_t budget = options().large_thread_cache;
  std::vector<void*> v;
  for (int i = 0; i < 40; ++i) v.push_back(alloc(300000 + static_cast<size_t>(i) * 8192));
  for (void* p : v) {
    dealloc(p);
    LargeStats s = large_stats();
    ASSERT_LE(s.thread_cached_bytes, budget);
  }
  LargeStats s = large_stats();
  EXPECT_GT(s.thread_cached_bytes, budget / 2);
  // Blocks above the per-block limit go to the shared cache.
  void* big = alloc(kTcacheMaxBlock * 2);
  size_t held = s.thread_cached_bytes;
  dealloc(big);
  EXPECT_EQ(large_stats().thread_cached_bytes, held);
}

// Many small large blocks, with a budget that does not bind: at most
// kTcacheEntries are held. A fresh process, whose options are set before it
// has a second thread (and no purger, which could drain the cache).
void entry_count_scenario() {
  char e1[] = "POOLMALLOC_LARGE_THREAD_CACHE=16M", e2[] = "POOLMALLOC_PURGE_THREAD=0";
  char* env[] = {e1, e2, nullptr};
  process_init();
  options_init(env);
  ensure_heap();
  std::vector<void*> v;
  for (unsigned i = 0; i < kTcacheEntries * 3; ++i) v.push_back(alloc(270000));
  for (void* p : v) dealloc(p);
  // 270016 bytes in 66 pages each.
  if (large_stats().thread_cached_bytes != kTcacheEntries * size_t{66 * 4096}) std::_Exit(60);
  if (large_stats().live_blocks != 0) std::_Exit(61);
  std::_Exit(0);
}

TEST(LargeThreadCache, HoldsAtMostItsEntryCount) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(entry_count_scenario(), testing::ExitedWithCode(0), "");
}

TEST(LargeThreadCache, AnotherThreadsFreeGoesToItsCacheAndItsExitGivesItBack) {
  ensure_heap();
  std::vector<void*> mine;
  for (int i = 0; i < 6; ++i) {
    void* p = alloc(300000);
    memset(p, i, 300000);
    mine.push_back(p);
  }
  size_t held_before = large_stats().thread_cached_bytes;
  size_t shared_before = large_stats().cached_bytes - held_before;
  void* reused = nullptr;
  std::thread([&] {
    ensure_heap();
    for (void* p : mine) dealloc(p);
    // This thread's cache has them now, not the main thread's.
    reused = alloc(300000);
    EXPECT_GE(large_stats().thread_cached_bytes, held_before + 5 * 300000);
    dealloc(reused);
  }).join();
  bool was_mine = false;
  for (void* p : mine) was_mine |= p == reused;
  EXPECT_TRUE(was_mine);
  // At exit its cache went to the shared one; nothing is counted live.
  LargeStats s = large_stats();
  EXPECT_EQ(s.thread_cached_bytes, held_before);
  EXPECT_GE(s.cached_bytes - s.thread_cached_bytes, shared_before + 6 * 300000);
  EXPECT_EQ(s.live_blocks, 0u);
  EXPECT_EQ(s.allocs, s.frees);
}

TEST(LargeThreadCache, ThreadsFreeingEachOthersBlocksKeepTheCountsExact) {
  ensure_heap();
  LargeStats before = large_stats();
  constexpr int kThreads = 4, kRounds = 3000;
  std::vector<void*> slots(64, nullptr);
  std::vector<std::thread> threads;
  std::atomic<long> bad{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      uint64_t x = static_cast<uint64_t>(t) * 0x9E3779B97F4A7C15ull + 1;
      for (int i = 0; i < kRounds; ++i) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = 264000 + (x >> 8) % 800000;
        auto* p = static_cast<unsigned char*>(alloc(n));
        p[0] = static_cast<unsigned char>(n);
        p[n - 1] = static_cast<unsigned char>(n >> 8);
        // Swap into a shared slot: the block found there was made by any thread.
        auto* old = static_cast<unsigned char*>(__atomic_exchange_n(&slots[(x >> 40) % slots.size()], p, __ATOMIC_ACQ_REL));
        if (old != nullptr) {
          size_t u = usable_size(old);
          if (u < 264000) ++bad;
          dealloc(old);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  for (void* p : slots) dealloc(p);
  LargeStats s = large_stats();
  EXPECT_EQ(s.allocs - before.allocs, static_cast<uint64_t>(kThreads) * kRounds);
  EXPECT_EQ(s.frees - before.frees, static_cast<uint64_t>(kThreads) * kRounds);
  EXPECT_EQ(s.live_blocks, 0u);
  EXPECT_EQ(s.live_bytes, 0u);
}

// A thread that exits hands its cache to the shared one; a statistics read
// made meanwhile counts those blocks once (both parts are read in one
// snapshot), so the cached total a reader sees never moves while threads
// that only hold blocks exit.
TEST(LargeThreadCache, AnExitingThreadsBlocksAreCountedOnceByAConcurrentRead) {
  ensure_heap();
  constexpr int kThreads = 8;
  for (int attempt = 0; attempt < 6; ++attempt) {  // the window is narrow: look several times
    trim();
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        dealloc(alloc(16));
        dealloc(alloc(600000));  // held in this thread's cache
        ready.fetch_add(1);
        while (!go.load()) std::this_thread::yield();
      });
    }
    while (ready.load() != kThreads) std::this_thread::yield();
    const LargeStats quiet = large_stats();
    ASSERT_GE(quiet.thread_cached_bytes, size_t{kThreads} * 600000);
    std::atomic<bool> done{false};
    std::thread joiner([&] {
      go.store(true);
      for (auto& th : threads) th.join();
      done.store(true);
    });
    size_t reads = 0, off = 0;
    while (!done.load()) {
      LargeStats s = large_stats();
      ++reads;
      if (s.cached_bytes != quiet.cached_bytes || s.live_blocks != quiet.live_blocks) ++off;
    }
    joiner.join();
    ASSERT_EQ(off, 0u) << "of " << reads << " reads, attempt " << attempt;
    EXPECT_EQ(large_stats().cached_bytes, quiet.cached_bytes);
  }
  trim();
}

TEST(LargeThreadCache, TrimEmptiesEveryCache) {
  ensure_heap();
  dealloc(alloc(1000000));
  EXPECT_GT(large_stats().thread_cached_bytes, 0u);
  trim();
  LargeStats s = large_stats();
  EXPECT_EQ(s.thread_cached_bytes, 0u);
  EXPECT_EQ(s.cached_bytes, 0u);
}

// Aligned large blocks come from the cache of freed mappings too (they
// used to map afresh every time, and their freed mappings filled the cache
// unused): the block just freed comes back for the same request, at every
// alignment up to 2 MiB.
TEST(LargeCache, AlignedRequestsReuseFreedMappings) {
  for (size_t align : {size_t{32}, size_t{64}, size_t{4096}, size_t{65536}, size_t{2} << 20}) {
    (void)trim();
    void* p = alloc_aligned(align, 600000);
    ASSERT_NE(p, nullptr) << align;
    std::memset(p, 1, 600000);
    dealloc(p);
    void* q = alloc_aligned(align, 600000);
    ASSERT_NE(q, nullptr) << align;
    EXPECT_EQ(q, p) << "alignment " << align << ": a fresh mapping, not the freed one";
    EXPECT_EQ(reinterpret_cast<uintptr_t>(q) % align, 0u);
    EXPECT_GE(usable_size(q), 600000u);
    std::memset(q, 2, 600000);
    dealloc(q);
  }
}

// A block aligned beyond a page is cut from the middle of a larger cached
// range: the pieces before and after it stay cached and serve later
// requests, and every byte of each block is its own.
TEST(LargeCache, AlignedBlockCutFromACachedRangeLeavesBothEndsCached) {
  (void)trim();
  constexpr size_t kRange = size_t{12} << 20, kAlign = size_t{2} << 20, kBlock = size_t{1} << 20;
  auto* big = static_cast<char*>(alloc(kRange));
  ASSERT_NE(big, nullptr);
  std::memset(big, 3, kRange);
  dealloc(big);
  const size_t cached = large_stats().cached_bytes;
  ASSERT_GE(cached, kRange);
  auto* a = static_cast<char*>(alloc_aligned(kAlign, kBlock));
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % kAlign, 0u);
  EXPECT_TRUE(a > big && a + kBlock <= big + kRange) << "not cut from the cached range";
  EXPECT_EQ(large_stats().cached_bytes, cached - kBlock - 4096) << "both ends stay cached";
  // The ends serve plain requests: each of at least 1 MiB (the larger is
  // at least 4 MiB) gives a block that lies in it.
  char* const range_start = big - 16;  // the range's first page held the header
  char* const range_end = range_start + kRange + 4096;
  struct Piece {
    char* start;
    char* end;
  };
  Piece pieces[] = {{range_start, a - 4096}, {a + kBlock, range_end}};
  int reused = 0;
  for (const Piece& piece : pieces) {
    size_t bytes = static_cast<size_t>(piece.end - piece.start);
    if (bytes < (size_t{1} << 20)) continue;
    auto* q = static_cast<char*>(alloc(bytes - 8192));
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(q > piece.start && q + (bytes - 8192) <= piece.end) << "a piece around the block was not reused";
    std::memset(q, 5, bytes - 8192);
    ++reused;
    dealloc(q);
  }
  EXPECT_GE(reused, 1);
  std::memset(a, 4, kBlock);
  dealloc(a);
}

// Buffers grown together by realloc cannot all grow into the cached range
// after them: a block that must move goes onto a cached range, whose pages
// it replaces, instead of onto fresh memory beside the cache. Before, four
// buffers grown to 4 MiB ten times over left the cache at its 128 MiB
// budget, all of it resident.
TEST(LargeCache, BuffersGrownTogetherReplaceCachedRangesAsTheyMove) {
  (void)trim();
  size_t most_cached = 0;
  for (int round = 0; round < 10; ++round) {
    char* b[4] = {};
    for (size_t n = 300000; n <= (size_t{4} << 20); n += 65536) {
      for (char*& buf : b) {
        auto* q = static_cast<char*>(resize(buf, n));
        ASSERT_NE(q, nullptr);
        buf = q;
        buf[n - 1] = static_cast<char>(n);
      }
      size_t cached = large_stats().cached_bytes;
      most_cached = cached > most_cached ? cached : most_cached;
    }
    for (char* buf : b) dealloc(buf);
  }
  EXPECT_LT(most_cached, size_t{40} << 20);
}

// A move onto a cached range that the kernel refuses may leave the range
// unmapped (kernels before 6.16 unmapped the target first): the range
// leaves the cache either way, and the block still grows (by mremap
// elsewhere), keeping its contents.
TEST(LargeCache, ARefusedMoveOntoACachedRangeLeavesTheCache) {
  (void)trim();
  constexpr size_t kMiB = size_t{1} << 20;
  auto* p = static_cast<char*>(alloc(2 * kMiB));  // first: the highest of the three
  void* guard = alloc(kMiB);                        // keeps the cached range from bordering p
  void* big = alloc(16 * kMiB);
  ASSERT_TRUE(p != nullptr && guard != nullptr && big != nullptr);
  std::memset(p, 'a', 2 * kMiB);
  dealloc(big);
  const size_t cached = large_stats().cached_bytes;
  ASSERT_GE(cached, 16 * kMiB);
  os::inject_map_failures(2);  // the growth in place and the move onto the cached range
  auto* q = static_cast<char*>(resize(p, 4 * kMiB));
  os::inject_map_failures(0);
  ASSERT_NE(q, nullptr);
  for (size_t i = 0; i < 2 * kMiB; i += 4096) ASSERT_EQ(q[i], 'a') << i;
  std::memset(q, 'b', 4 * kMiB);
  EXPECT_LE(large_stats().cached_bytes, cached - 4 * kMiB) << "the range the move was refused onto is still cached";
  dealloc(q);
  dealloc(guard);
}

}  // namespace
}  // namespace pm
