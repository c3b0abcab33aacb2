// The C semantics that programs rely on, through the core's own API.
#include <errno.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "alloc.h"

namespace pm {
namespace {

void fill(void* p, size_t n, unsigned seed) {
  auto* c = static_cast<unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) c[i] = static_cast<unsigned char>(seed + i * 7);
}
bool check(const void* p, size_t n, unsigned seed) {
  const auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (c[i] != static_cast<unsigned char>(seed + i * 7)) return false;
  return true;
}

TEST(Alloc, EverySizeIsAlignedUsableAndWritable) {
  std::vector<void*> live;
  for (size_t n = 0; n <= 70000; n += (n < 2048 ? 1 : 97)) {
    void* p = alloc(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u) << n;
    size_t u = usable_size(p);
    ASSERT_GE(u, n) << n;
    memset(p, 0xAB, u);  // the whole usable size is writable
    EXPECT_TRUE(owns(p));
    live.push_back(p);
  }
  for (void* p : live) dealloc(p);
}

// Only a live block has usable bytes: an interior pointer or (hardened) a
// freed block reports 0, not its class's size, which would invite a write
// past the block.
TEST(Alloc, UsableSizeIsZeroForInteriorAndFreedBlocks) {
  auto* keep = static_cast<char*>(alloc(64));
  auto* p = static_cast<char*>(alloc(64));
  EXPECT_EQ(usable_size(p), 64u);
  EXPECT_EQ(usable_size(p + 16), 0u);
  EXPECT_EQ(usable_size(p + 1), 0u);
  dealloc(p);
  if constexpr (kHardened) {
    EXPECT_EQ(usable_size(p), 0u);
  }
  dealloc(keep);
}

// Requests up to kDirectMax find their pool through the heap's table by
// granule: it must name the pool of the granule's class at every moment,
// and every request must get a block of its own class.
TEST(Alloc, DirectTableFollowsTheBins) {
  auto mirrored = [] {
    const Heap* h = tl_heap;
    for (unsigned g = 0; g < kDirectGranules; ++g)
      if (h->direct[g] != h->bins[kClasses.by_granule[g]]) return false;
    return true;
  };
  std::thread([&] {  // a heap of its own, which nothing else holds blocks of
    std::vector<void*> blocks;
    for (size_t n = 0; n <= 2 * kDirectMax; ++n) {
      void* p = alloc(n);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(usable_size(p), class_size(class_of(n))) << n << " bytes";
      blocks.push_back(p);
    }
    EXPECT_TRUE(mirrored());
    for (void* p : blocks) dealloc(p);
    (void)trim();  // gives back the current pools, all empty now: the bins change
    EXPECT_TRUE(mirrored());
    EXPECT_EQ(tl_heap->direct[3], &g_empty_pool);  // 33-48 bytes
    void* again = alloc(40);
    EXPECT_NE(tl_heap->direct[3], &g_empty_pool);
    EXPECT_TRUE(mirrored());
    dealloc(again);
  }).join();
}

// malloc does not count a block in the current pool it pops (kCurrentBias):
// the pool's blocks out must still be known exactly whenever it stops being
// current, or a pool would go back to the arena with blocks out, or never.
TEST(Alloc, CurrentPoolIsGivenBackExactlyWhenItsLastBlockIsFreed) {
  std::thread([] {
    const unsigned cls = class_of(64);
    std::vector<void*> v;
    for (int i = 0; i < 100; ++i) v.push_back(alloc(64));
    Pool* p = pool_of(v[0]);
    ASSERT_EQ(tl_heap->bins[cls], p);
    void* last = v.back();
    v.pop_back();
    for (void* b : v) dealloc(b);
    heap_collect(true);  // what malloc_trim does: gives back empty current pools
    EXPECT_EQ(p->state.load(), PoolState::kActive) << "one block is still out";
    EXPECT_EQ(tl_heap->bins[cls], p);
    dealloc(last);
    heap_collect(true);
    EXPECT_EQ(p->state.load(), PoolState::kFree);
    EXPECT_EQ(tl_heap->bins[cls], &g_empty_pool);
  }).join();
}

TEST(Alloc, CurrentPoolKeepsItsCountPastItsBias) {
  std::thread([] {
    void* kept = alloc(64);
    Pool* p = pool_of(kept);
    const int32_t pairs = 3 * kCurrentBias + 7;
    for (int32_t i = 0; i < pairs; ++i) dealloc(alloc(64));
    EXPECT_EQ(tl_heap->bins[class_of(64)], p);
    // Each pair lowered `used` by one: it was set up again on the way.
    EXPECT_GT(p->used, 0);
    EXPECT_LE(p->used, kCurrentBias + static_cast<int32_t>(p->capacity));
    heap_collect(true);
    EXPECT_EQ(p->state.load(), PoolState::kActive) << "one block is still out";
    dealloc(kept);
    heap_collect(true);
    EXPECT_EQ(p->state.load(), PoolState::kFree);
  }).join();
}

// A full current pool is parked and another one takes its place; the
// parked pool counts its blocks out from then on, and goes back to the
// arena at the free of its last one, not before.
TEST(Alloc, ParkedPoolIsGivenBackAtTheFreeOfItsLastBlock) {
  std::thread([] {
    const unsigned cls = class_of(1000);
    std::vector<void*> first;
    first.push_back(alloc(1000));
    Pool* p = pool_of(first[0]);
    while (tl_heap->bins[cls] == p) first.push_back(alloc(1000));
    void* other = first.back();  // from the next pool
    first.pop_back();
    ASSERT_NE(pool_of(other), p);
    EXPECT_EQ(first.size(), p->capacity);
    EXPECT_EQ(p->state.load(), PoolState::kParked);
    for (size_t i = 0; i + 1 < first.size(); ++i) dealloc(first[i]);
    EXPECT_NE(p->state.load(), PoolState::kFree) << "one block is still out";
    EXPECT_EQ(p->used, 1);
    dealloc(first.back());
    EXPECT_EQ(p->state.load(), PoolState::kFree);
    dealloc(other);
  }).join();
}

TEST(Alloc, ZeroSizeGivesUniquePointers) {
  void* a = alloc(0);
  void* b = alloc(0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  dealloc(a);
  dealloc(b);
}

TEST(Alloc, FreeOfNullDoesNothingAndFreePreservesErrno) {
  errno = 1234;
  dealloc(nullptr);
  EXPECT_EQ(errno, 1234);
  void* small = alloc(100);
  void* large = alloc(1 << 20);
  errno = 4321;
  dealloc(small);
  dealloc(large);
  EXPECT_EQ(errno, 4321);
}

TEST(Alloc, HugeRequestsFailWithEnomem) {
  for (size_t n : {size_t{PTRDIFF_MAX} + 1, SIZE_MAX, SIZE_MAX - 4096, size_t{1} << 62}) {
    errno = 0;
    EXPECT_EQ(alloc(n), nullptr) << n;
    EXPECT_EQ(errno, ENOMEM) << n;
  }
  errno = 0;
  EXPECT_EQ(alloc_zeroed(SIZE_MAX / 2, 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(alloc_aligned(4096, SIZE_MAX - 100), nullptr);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(Alloc, CallocIsZeroEvenWhenBlocksAreReused) {
  for (size_t n : {8, 24, 100, 1000, 5000, 30000, 40000, 300000}) {
    void* p = alloc(n);
    memset(p, 0xFF, usable_size(p));
    dealloc(p);
    auto* z = static_cast<unsigned char*>(alloc_zeroed(1, n));
    ASSERT_NE(z, nullptr);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(z[i], 0) << n << " at " << i;
    dealloc(z);
  }
}

// Resident bytes of the process, from /proc/self/statm (read without the
// standard library's allocating streams).
size_t resident_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f == nullptr || fscanf(f, "%lu %lu", &size, &resident) != 2) ADD_FAILURE() << "cannot read statm";
  if (f != nullptr) fclose(f);
  return resident * 4096;
}

TEST(Alloc, CallocOfFreshLargeMemoryLeavesItsPagesUntouched) {
  trim();  // no cached mapping may serve the request
  constexpr size_t kBig = size_t{256} << 20;
  size_t before = resident_bytes();
  auto* z = static_cast<unsigned char*>(alloc_zeroed(kBig / 16, 16));
  ASSERT_NE(z, nullptr);
  size_t after = resident_bytes();
  EXPECT_LT(after, before + (size_t{32} << 20)) << "calloc faulted in the pages it had from the kernel";
  for (size_t i = 0; i < kBig; i += size_t{1} << 20) ASSERT_EQ(z[i], 0) << i;
  EXPECT_EQ(z[kBig - 1], 0);
  dealloc(z);
}

TEST(Alloc, CallocOfCachedOrGrownLargeMappingIsZero) {
  // A freed mapping is reused whole (split) or grown with mremap: the old
  // part holds the earlier block's bytes and must be cleared.
  for (size_t first : {size_t{6} << 20, size_t{2} << 20}) {
    trim();
    void* p = alloc(first);
    ASSERT_NE(p, nullptr);
    memset(p, 0xEE, first);
    dealloc(p);
    size_t n = size_t{5} << 20;  // fits in the first, or grows the second
    auto* z = static_cast<unsigned char*>(alloc_zeroed(1, n));
    ASSERT_NE(z, nullptr);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(z[i], 0) << first << " at " << i;
    dealloc(z);
  }
}

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

TEST(Alloc, CachedNeighboursFromSeparateMappingsAreNotGrownAsOne) {
  // A block that realloc moved is a mapping of its own to the kernel, which
  // never joins it with a neighbour; one mapped next to it afterwards
  // usually lies right below it. Freed, the two must not become one cached
  // range: growing such a range with mremap fails, and the request would
  // then fault in a fresh mapping whole.
  if constexpr (kThreadSanitizer) GTEST_SKIP() << "no mremap under ThreadSanitizer (see os::remap)";
  constexpr size_t kSmall = size_t{8} << 20, kMoved = size_t{20} << 20, kAsk = size_t{36} << 20;
  trim();
  void* a = alloc(kSmall - 64);
  ASSERT_NE(a, nullptr);
  memset(a, 1, kSmall - 64);
  a = resize(a, kMoved - 64);
  ASSERT_NE(a, nullptr);
  void* b = alloc(kSmall - 64);
  ASSERT_NE(b, nullptr);
  memset(a, 1, kMoved - 64);
  memset(b, 2, kSmall - 64);
  dealloc(a);
  dealloc(b);
  long before = minor_faults();
  auto* c = static_cast<unsigned char*>(alloc(kAsk));
  ASSERT_NE(c, nullptr);
  for (size_t i = 0; i < kAsk; i += 4096) c[i] = 3;
  long faults = minor_faults() - before;
  // The moved block grown to the request: only the pages added are new
  // (plus, under AddressSanitizer, the shadow of the whole block: an eighth
  // of it). A fresh mapping would fault in all 9216 pages.
  EXPECT_LE(faults, static_cast<long>((kAsk - kMoved) / 4096 + kAsk / 8 / 4096) + 64) << "no cached block was reused";
  dealloc(c);
  trim();
}

TEST(Alloc, ReallocKeepsContentsAcrossEveryClassAndIntoLarge) {
  size_t n = 1;
  void* p = alloc(n);
  fill(p, n, 3);
  while (n < (size_t{4} << 20)) {
    size_t m = n + n / 3 + 1;
    void* q = resize(p, m);
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(check(q, n, 3)) << n << " -> " << m;
    fill(q, m, 3);
    p = q;
    n = m;
  }
  while (n > 1) {  // and back down
    size_t m = n / 2;
    void* q = resize(p, m);
    ASSERT_NE(q, nullptr);
    ASSERT_TRUE(check(q, m, 3)) << n << " -> " << m;
    p = q;
    n = m;
  }
  dealloc(p);
}

// Requests up to kSmallMax come from pools, including those above one slot.
TEST(Alloc, BlocksUpTo256KiBComeFromPoolsOfAtLeastEightBlocks) {
  for (size_t n : {size_t{65537}, size_t{100000}, size_t{200000}, kSmallMax}) {
    void* p = alloc(n);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(in_segment(p)) << n;
    EXPECT_GE(usable_size(p), n);
    EXPECT_LE(usable_size(p) - n, n / 8) << n;
    EXPECT_GE(pool_of(p)->capacity, 8u) << n;
    fill(p, n, 3);
    EXPECT_TRUE(check(p, n, 3));
    dealloc(p);
  }
  void* large = alloc(kSmallMax + 1);
  EXPECT_FALSE(in_segment(large));
  dealloc(large);
}

// Carving a fresh pool writes a link into each block it carves: for a big
// class it carves one block at a time, so the pages of blocks nobody asked
// for stay untouched. Runs in a fresh process, on pools no test used.
void big_class_carving_scenario() {
  auto resident = [](const void* p) {
    unsigned char v = 0;
    void* page = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~(kPageSize - 1));
    if (mincore(page, kPageSize, &v) != 0) std::_Exit(70);
    return (v & 1) != 0;
  };
  void* p = alloc(200000);
  if (p == nullptr || !in_segment(p)) std::_Exit(71);
  const Pool* pool = pool_of(p);
  if (!resident(p)) std::_Exit(72);
  for (uint32_t k = 1; k < pool->capacity; ++k)
    if (resident(pool->start + size_t{k} * pool->block_size)) std::_Exit(73);
  void* q = alloc(200000);
  if (q != pool->start + pool->block_size || !resident(q)) std::_Exit(74);
  if (resident(pool->start + 2 * size_t{pool->block_size})) std::_Exit(75);
  std::_Exit(0);
}

TEST(Alloc, CarvingABigClassTouchesOnlyTheBlocksHandedOut) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(big_class_carving_scenario(), testing::ExitedWithCode(0), "");
}

// Blocks smaller than a cache line, allocated one after the other from a
// fresh pool, never share a line with the block allocated just before them
// (so that blocks handed to different threads are not written on one
// line), down to the pool's last block, and each run of 8 of them still
// lies within 8 blocks' span, as it would in address order. Runs in a fresh process, where these pools
// have handed out nothing yet.
void small_blocks_spread_scenario() {
  for (size_t size : {size_t{16}, size_t{32}, size_t{48}}) {
    void* first_block = alloc(size);
    if (first_block == nullptr || usable_size(first_block) != size) std::_Exit(70);
    const uint32_t capacity = pool_of(first_block)->capacity;
    auto prev = reinterpret_cast<uintptr_t>(first_block);
    uintptr_t lo = prev, hi = prev;
    for (uint32_t i = 1; i < capacity; ++i) {
      auto a = reinterpret_cast<uintptr_t>(alloc(size));
      if (a == 0 || pool_of(reinterpret_cast<void*>(a)) != pool_of(first_block)) std::_Exit(71);
      if (a / kCacheLine <= (prev + size - 1) / kCacheLine && prev / kCacheLine <= (a + size - 1) / kCacheLine)
        std::_Exit(72);
      prev = a;
      if (i % 8 == 0) lo = hi = a;
      lo = a < lo ? a : lo;
      hi = a > hi ? a : hi;
      if (hi - lo >= 8 * size) std::_Exit(73);
    }
  }
  std::_Exit(0);
}

TEST(Alloc, SmallBlocksAllocatedInARowDoNotShareACacheLine) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(small_blocks_spread_scenario(), testing::ExitedWithCode(0), "");
}

TEST(Alloc, ReallocGrowingByAppendsMovesOnlyWhenFullAndByHalf) {
  // A block grown one byte at a time moves only when it is full, and then
  // into a block at least half as large again (or to the end of its tier:
  // one slot, then the largest class), never to the next class alone.
  size_t n = 200;
  auto* p = static_cast<unsigned char*>(alloc(n));
  fill(p, n, 1);
  unsigned moves = 0;
  while (n < kSmallMax) {
    size_t before = usable_size(p);
    auto* q = static_cast<unsigned char*>(resize(p, n + 1));
    ASSERT_NE(q, nullptr);
    if (q != p) {
      ++moves;
      EXPECT_EQ(n, before) << "moved before the block was full";
      size_t tier = before < kSlotSize ? kSlotSize : kSmallMax;  // growth stops at a tier's end
      size_t want = before + before / 2 < tier ? before + before / 2 : tier;
      EXPECT_GE(usable_size(q), want) << "grew from " << before;
      EXPECT_LE(usable_size(q), tier) << "grew from " << before;
      ASSERT_TRUE(check(q, n, 1)) << n;
    }
    q[n] = static_cast<unsigned char>(1 + n * 7);
    p = q;
    ++n;
  }
  // From 208 bytes to 256 KiB that is 16 moves; growing to the next class
  // alone, eight per doubling, would make 83.
  EXPECT_LE(moves, 17u);
  dealloc(p);
}

TEST(Alloc, ReallocToZeroFreesAndNullReallocAllocates) {
  void* p = resize(nullptr, 50);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(resize(p, 0), nullptr);
}

TEST(Alloc, FailedReallocKeepsTheOldBlock) {
  void* p = alloc(100);
  fill(p, 100, 9);
  errno = 0;
  EXPECT_EQ(resize(p, SIZE_MAX - 10), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_TRUE(check(p, 100, 9));
  void* big = alloc(300000);
  fill(big, 300000, 5);
  EXPECT_EQ(resize(big, size_t{1} << 62), nullptr);
  EXPECT_TRUE(check(big, 300000, 5));
  dealloc(p);
  dealloc(big);
}

TEST(Alloc, LargeReallocGrowsInPlaceOrByRemapping) {
  void* p = alloc(300000);
  fill(p, 300000, 1);
  void* q = resize(p, 50u << 20);
  ASSERT_NE(q, nullptr);
  EXPECT_TRUE(check(q, 300000, 1));
  EXPECT_GE(usable_size(q), 50u << 20);
  dealloc(q);
}

TEST(Alloc, EveryAlignmentUpTo16MiBWorksAndCanBeReallocatedAndFreed) {
  for (size_t a = 16; a <= (size_t{16} << 20); a *= 2) {
    for (size_t n : {size_t{1}, size_t{24}, a / 2 + 1, a, size_t{100000}}) {
      void* p = alloc_aligned(a, n);
      ASSERT_NE(p, nullptr) << a << " " << n;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % a, 0u) << a << " " << n;
      ASSERT_GE(usable_size(p), n);
      fill(p, n, 7);
      void* q = resize(p, n * 2 + 10);
      ASSERT_NE(q, nullptr);
      EXPECT_TRUE(check(q, n, 7)) << a << " " << n;
      dealloc(q);
    }
  }
}

TEST(Alloc, ForeignPointersAreNotOwned) {
  int on_stack = 0;
  static int in_data = 0;
  EXPECT_FALSE(owns(nullptr));
  EXPECT_EQ(usable_size(nullptr), 0u);
  std::vector<char> v(4096);  // glibc's heap in this test process
  EXPECT_FALSE(owns(v.data() + 64));
  (void)on_stack;
  (void)in_data;
}

TEST(Alloc, BlocksDoNotOverlap) {
  constexpr int kN = 20000;
  std::vector<std::pair<unsigned char*, size_t>> blocks;
  for (int i = 0; i < kN; ++i) {
    size_t n = 1 + static_cast<size_t>((i * 2654435761u) % 3000);
    auto* p = static_cast<unsigned char*>(alloc(n));
    memset(p, i & 0xFF, n);
    blocks.emplace_back(p, n);
  }
  for (int i = 0; i < kN; ++i) {
    auto [p, n] = blocks[i];
    for (size_t j = 0; j < n; ++j) ASSERT_EQ(p[j], i & 0xFF);
    dealloc(p);
  }
}

}  // namespace
}  // namespace pm
