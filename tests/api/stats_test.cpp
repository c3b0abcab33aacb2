// Every counter of the statistics, as exact deltas after known sequences on
// the core's own API (glibc stays this process's malloc).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "alloc.h"
#include "os.h"
#include "segment.h"
#include "stats.h"

namespace pm {
namespace {

Stats read() {
  Stats s;
  stats_collect(&s);
  return s;
}

// Runs fn on a new thread, which starts without a heap.
template <class F>
void on_thread(F fn) {
  std::thread t(fn);
  t.join();
}

TEST(Stats, ClassCountersAreExact) {
  const unsigned cls = class_of(40);  // the 48-byte class
  std::vector<void*> blocks;
  Stats before{}, after{};
  on_thread([&] {
    before = read();
    for (int i = 0; i < 100; ++i) blocks.push_back(alloc(40));
    for (int i = 0; i < 30; ++i) dealloc(blocks[i]);
    after = read();
  });
  const ClassStats& b = before.cls[cls];
  const ClassStats& a = after.cls[cls];
  EXPECT_EQ(a.allocs - b.allocs, 100u);
  EXPECT_EQ(a.frees - b.frees, 30u);
  EXPECT_EQ(a.live_blocks - b.live_blocks, 70u);
  EXPECT_EQ(a.remote_frees, b.remote_frees);
  EXPECT_EQ(after.small_live_bytes - before.small_live_bytes, 70u * 48);
  EXPECT_GE(a.peak_blocks, a.live_blocks);  // every read is a sampling point
  EXPECT_GE(a.pools, 1u);
  EXPECT_EQ(a.pool_bytes, a.pools * kClasses.slots[cls] * kSlotSize);

  // The thread has exited: its counters are retired, not lost. Another
  // thread frees 20 of the blocks: it takes the exited thread's pool over at
  // the first of them, so all 20 are its own frees, not remote ones.
  Stats mid = read();
  EXPECT_EQ(mid.cls[cls].allocs, a.allocs);
  on_thread([&] {
    for (int i = 30; i < 50; ++i) dealloc(blocks[i]);
  });
  // A thread that never allocated frees 10: the same (it gets a heap).
  on_thread([&] {
    for (int i = 50; i < 60; ++i) dealloc(blocks[i]);
  });
  Stats end = read();
  EXPECT_EQ(end.cls[cls].remote_frees, a.remote_frees);
  EXPECT_EQ(end.cls[cls].frees - a.frees, 30u);
  EXPECT_EQ(end.remote_frees, after.remote_frees);
  EXPECT_EQ(end.cls[cls].live_blocks - b.live_blocks, 40u);

  // Frees into the pool of a thread that is still running are remote.
  std::atomic<int> stage{0};
  std::vector<void*> held;
  std::thread owner([&] {
    for (int i = 0; i < 25; ++i) held.push_back(alloc(40));
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
  });
  while (stage.load() != 1) std::this_thread::yield();
  on_thread([&] {
    for (void* p : held) dealloc(p);
  });
  Stats fin = read();
  stage.store(2);
  owner.join();
  EXPECT_EQ(fin.cls[cls].remote_frees - end.cls[cls].remote_frees, 25u);
  EXPECT_EQ(fin.cls[cls].frees - end.cls[cls].frees, 25u);
  EXPECT_EQ(fin.remote_frees - end.remote_frees, 25u);
  for (int i = 60; i < 100; ++i) dealloc(blocks[i]);
  EXPECT_EQ(read().cls[cls].live_blocks, b.live_blocks);
}

// Requests up to kDirectMax are counted by granule, larger ones by class:
// each lands in its class's figure either way, also once the thread exits.
TEST(Stats, RequestsCountInTheirClassThroughEitherTable) {
  const size_t sizes[] = {0, 1, 16, 17, 300, 600, 1000, kDirectMax, kDirectMax + 1, 5000};
  for (size_t n : sizes) {
    const unsigned cls = class_of(n);
    Stats before = read();
    Stats during{};
    on_thread([&] {
      std::vector<void*> blocks;
      for (int i = 0; i < 7; ++i) blocks.push_back(alloc(n));
      during = read();
      for (void* p : blocks) dealloc(p);
    });
    Stats after = read();
    EXPECT_EQ(during.cls[cls].allocs - before.cls[cls].allocs, 7u) << n << " bytes, live thread";
    EXPECT_EQ(during.cls[cls].live_blocks - before.cls[cls].live_blocks, 7u) << n << " bytes";
    EXPECT_EQ(after.cls[cls].allocs - before.cls[cls].allocs, 7u) << n << " bytes, exited thread";
    EXPECT_EQ(after.cls[cls].frees - before.cls[cls].frees, 7u) << n << " bytes";
  }
}

// Threads free blocks of the main thread and exit while it allocates them
// again and another thread reads the statistics: live blocks never pass
// what the program holds. (A thread exiting between the read of the
// retired counters and the walk of the live heaps was missed whole, its
// frees with it, and the live count and the peak went up by its blocks.)
TEST(Stats, ReadsDuringThreadExitsNeverCountTooManyLive) {
  const unsigned cls = class_of(1500);
  constexpr int kHeld = 4000, kSlice = 2000, kRounds = 2000;
  std::vector<void*> blocks(kHeld);
  const uint64_t base = read().cls[cls].live_blocks;
  for (void*& p : blocks) p = alloc(1500);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> seen{0};
  std::thread reader([&] {
    while (!stop.load()) {
      uint64_t live = read().cls[cls].live_blocks;
      if (live > seen.load()) seen.store(live);
    }
  });
  for (int r = 0; r < kRounds; ++r) {
    void** slice = blocks.data() + (r % (kHeld / kSlice)) * kSlice;
    std::atomic<bool> freed{false};
    std::thread worker([&] {
      dealloc(alloc(8));  // a heap of its own
      for (int i = 0; i < kSlice; ++i) dealloc(slice[i]);
      freed.store(true);
    });
    while (!freed.load()) std::this_thread::yield();
    for (int i = 0; i < kSlice; ++i) slice[i] = alloc(1500);  // while the worker exits
    worker.join();
  }
  stop.store(true);
  reader.join();
  EXPECT_LE(seen.load(), base + kHeld);
  EXPECT_EQ(read().cls[cls].live_blocks, base + kHeld);
  for (void* p : blocks) dealloc(p);
}

TEST(Stats, PeakIsSampledWhenPoolsCarve) {
  const unsigned cls = class_of(3000);  // 3072 bytes: carves 16 blocks at a time
  on_thread([&] {
    uint64_t before = read().cls[cls].live_blocks;
    std::vector<void*> v;
    for (int i = 0; i < 500; ++i) v.push_back(alloc(3000));
    for (void* p : v) dealloc(p);
    Stats s = read();
    EXPECT_EQ(s.cls[cls].live_blocks, before);
    // The last carve happened with at least 500 - 16 blocks live.
    EXPECT_GE(s.cls[cls].peak_blocks, before + 500 - 16);
    EXPECT_LE(s.cls[cls].peak_blocks, before + 500);
    // Totals are sampled when pools are taken: within one pool's blocks.
    EXPECT_GE(s.small_peak_bytes, (before + 500 - kClasses.capacity[cls]) * 3072);
    EXPECT_GE(s.peak_live_bytes, s.small_peak_bytes);
  });
}

TEST(Stats, LargeBlocksAndHistogram) {
  Stats b = read();
  void* p1 = alloc(300000);
  void* p2 = alloc(300000);
  void* p3 = alloc(1 << 20);
  dealloc(p1);
  Stats a = read();
  EXPECT_EQ(a.large.allocs - b.large.allocs, 3u);
  EXPECT_EQ(a.large.frees - b.large.frees, 1u);
  EXPECT_EQ(a.large.live_blocks - b.large.live_blocks, 2u);
  EXPECT_EQ(a.large.live_bytes - b.large.live_bytes, usable_size(p2) + usable_size(p3));
  EXPECT_EQ(a.large.hist[19] - b.large.hist[19], 2u);  // (256 KiB, 512 KiB]
  EXPECT_EQ(a.large.hist[20] - b.large.hist[20], 1u);  // (512 KiB, 1 MiB]
  EXPECT_GE(a.large.peak_live_bytes, a.large.live_bytes + usable_size(p2));  // p1 was live too
  EXPECT_EQ(a.live_bytes, a.small_live_bytes + a.large.live_bytes);
  dealloc(p2);
  dealloc(p3);
}

TEST(Stats, LargePeakFollowsReallocGrowth) {
  // realloc grows a large block in place or by moving its mapping, with no
  // new allocation: the peak of live large bytes must see the growth, even
  // when the block is gone before anyone reads the statistics.
  Stats b = read();
  size_t big = b.large.peak_live_bytes + (size_t{48} << 20);  // beyond any earlier peak
  void* p = alloc(300000);
  ASSERT_NE(p, nullptr);
  p = resize(p, big);
  ASSERT_NE(p, nullptr);
  dealloc(p);
  Stats s = read();
  EXPECT_GE(s.large.peak_live_bytes, big);
  EXPECT_EQ(s.large.live_bytes, b.large.live_bytes);
}

TEST(Stats, ReallocsAreCounted) {
  uint64_t before = read().reallocs;
  void* p = resize(nullptr, 10);
  p = resize(p, 100);
  p = resize(p, 100000);
  EXPECT_EQ(resize(p, 0), nullptr);
  EXPECT_EQ(read().reallocs - before, 4u);
}

TEST(Stats, FragmentationAndMemoryFigures) {
  void* p = alloc(20000);
  Stats s = read();
  const ClassStats& c = s.cls[class_of(20000)];
  EXPECT_GE(c.live_blocks, 1u);
  uint64_t frag = 0;
  for (unsigned k = 0; k < kNumClasses; ++k) frag += s.cls[k].pool_bytes - s.cls[k].live_blocks * kClasses.size[k];
  EXPECT_EQ(s.fragmentation, frag);
  EXPECT_EQ(s.pool_bytes, s.arena.pool_bytes_in_use);
  EXPECT_GE(s.os_reserved, s.os_committed);
  EXPECT_GE(s.os_reserved, s.arena.reserved + s.large.mapped_bytes);
  EXPECT_GE(s.os_committed, s.pool_bytes);
  EXPECT_GT(s.os_resident, 0u);
  EXPECT_GE(s.threads, 1u);
  dealloc(p);
}

TEST(Stats, ReservedSegmentsStayMapped) {
  size_t before = arena_stats().segments;
  EXPECT_EQ(arena_reserve(2 * kSegmentSize, true), 2u);
  EXPECT_EQ(arena_stats().segments, before + 2);
  trim();  // unmaps every empty segment but the reserved ones
  EXPECT_GE(arena_stats().segments, 2u);
}

}  // namespace
}  // namespace pm
