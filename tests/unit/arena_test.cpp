// Segments, the segment map, pools and purging, against the arena directly.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "alloc.h"
#include "large.h"
#include "os.h"
#include "pool.h"
#include "segment.h"

namespace pm {
namespace {

// The run search against the plain scan it replaces, on random and
// structured slot sets, for every pool size.
TEST(Arena, FindRunMatchesAPlainScan) {
  auto plain = [](uint64_t set, unsigned n) {
    uint64_t mask = (n == 64) ? ~uint64_t{0} : (uint64_t{1} << n) - 1;
    for (unsigned i = 0; i + n <= kSlotsPerSegment; i += pool_align_slots(n))
      if (((set >> i) & mask) == mask) return static_cast<int>(i);
    return -1;
  };
  uint64_t x = 0x9E3779B97F4A7C15ull;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  std::vector<uint64_t> sets = {0, ~uint64_t{0}, ~uint64_t{1}, uint64_t{1} << 63, 0xFFFF0000FFFF0000ull};
  for (int i = 0; i < 20000; ++i) {
    uint64_t r = next();
    sets.push_back(r);
    sets.push_back(r | next() | next());  // denser, so that long runs occur
    sets.push_back(~(uint64_t{1} << (r % 64)) & ~uint64_t{1});
  }
  for (uint64_t set : sets)
    for (unsigned n : {1u, 2u, 3u, 4u, 5u, 8u, 16u, 32u, 63u, 64u}) ASSERT_EQ(arena_find_run(set, n), plain(set, n)) << std::hex << set << " n " << std::dec << n;
}

TEST(Arena, PoolsLieInMappedSegmentsAndAreFoundFromAnyAddress) {
  process_init();
  Pool* p = arena_acquire_pool(2);
  ASSERT_NE(p, nullptr);
  pool_init(p, class_of(10000));
  EXPECT_TRUE(in_segment(p->start));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p->start) % kSlotSize, 0u);
  for (size_t off = 0; off < 2 * kSlotSize; off += 4096) EXPECT_EQ(pool_of(p->start + off), p);
  int marker = 0;
  EXPECT_FALSE(in_segment(&marker));
  p->state.store(PoolState::kActive);
  arena_release_pool(p);
  EXPECT_EQ(p->state.load(), PoolState::kFree);
}

// Every pool block of this process lies in a segment of the region, which
// free finds through the region's table: the same pool as the segment's own
// map gives, for the block and for any address inside it.
TEST(Arena, PoolBlocksAreFoundThroughTheRegion) {
  process_init();
  if constexpr (kThreadSanitizer) GTEST_SKIP() << "no region under ThreadSanitizer (see arena_init)";
  EXPECT_GE(g_region.base, uintptr_t{16} << 40);
  EXPECT_LE(g_region.base + kRegionMaxSize, uintptr_t{80} << 40);
  EXPECT_EQ(g_region.base % kSegmentSize, 0u);
  std::vector<void*> live;
  for (size_t n : {size_t{1}, size_t{48}, size_t{1000}, size_t{70000}, kSmallMax}) {
    void* p = alloc(n);
    ASSERT_NE(p, nullptr);
    uintptr_t off = region_offset(p);
    ASSERT_LT(off, region_used()) << n;
    EXPECT_EQ(region_pool(off), pool_of(p)) << n;
    EXPECT_EQ(region_pool(off + n - 1), pool_of(p)) << n;
    live.push_back(p);
  }
  for (void* p : live) dealloc(p);
}

// The next `places` segment-sized places of the region above its segments,
// mapped by the test itself, so that the arena finds them taken. Their start.
char* take_region_places(unsigned places) {
  auto* at = reinterpret_cast<char*>(g_region.base + region_used());
  for (unsigned k = 0; k < places; ++k) {
    void* want = at + size_t{k} * kSegmentSize;
    if (mmap(want, kSegmentSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) !=
        want)
      std::_Exit(60);
  }
  return at;
}

// Allocates blocks of 200000 bytes (a pool of 32 slots each ten, so a new
// segment every other pool) until one lies in a segment made after this
// call; returns it, or exits.
void* block_of_a_new_segment(std::vector<void*>* keep) {
  const size_t segments = arena_stats().segments;
  for (int i = 0; i < 100; ++i) {
    void* p = alloc(200000);
    if (p == nullptr) std::_Exit(61);
    keep->push_back(p);
    if (arena_stats().segments > segments) return p;
  }
  std::_Exit(62);
}

// Places of the region that another mapping holds are skipped; once they lie
// below the region's bound, free still tells a block there from a pool
// block: a large block in such a place (placed there as the full check mode
// places its guarded blocks) is freed as a large block.
void region_skips_taken_places_scenario() {
  void* first = alloc(64);
  if (first == nullptr || region_offset(first) >= region_used()) std::_Exit(70);
  char* taken = take_region_places(3);
  std::vector<void*> keep;
  void* b = block_of_a_new_segment(&keep);
  if (reinterpret_cast<char*>(segment_of(b)) != taken + 3 * kSegmentSize) std::_Exit(71);
  if (region_used() != reinterpret_cast<uintptr_t>(taken) + 4 * kSegmentSize - g_region.base) std::_Exit(72);
  char* user = taken + 4096;
  if (large_place(taken, kSegmentSize, user, 64) != user || !owns(user)) std::_Exit(73);
  dealloc(user);
  if (owns(user)) std::_Exit(74);
  for (void* p : keep) dealloc(p);
  dealloc(first);
  std::_Exit(0);
}

TEST(Arena, RegionSkipsPlacesTakenByOtherMappings) {
  if constexpr (kThreadSanitizer) GTEST_SKIP() << "no region under ThreadSanitizer (see arena_init)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(region_skips_taken_places_scenario(), testing::ExitedWithCode(0), "");
}

// When the places after the region's segments keep being taken, a segment
// is mapped outside the region; its blocks are found through the segment
// map, freed into their pool (the next allocation takes the block back) and
// checked like any other.
void* block_outside_the_region(std::vector<void*>* keep) {
  void* first = alloc(64);
  if (first == nullptr) std::_Exit(80);
  keep->push_back(first);
  take_region_places(8);
  void* b = block_of_a_new_segment(keep);
  if (region_offset(b) < region_used() || !in_segment(b) || usable_size(b) < 200000) std::_Exit(81);
  return b;
}

void segment_outside_the_region_scenario() {
  std::vector<void*> keep;
  void* b = block_outside_the_region(&keep);
  keep.pop_back();
  std::memset(b, 0x5a, 200000);
  dealloc(b);
  if (alloc(200000) != b) std::_Exit(82);
  dealloc(b);
  for (void* p : keep) dealloc(p);
  std::_Exit(0);
}

TEST(Arena, SegmentsOutsideTheRegionWork) {
  if constexpr (kThreadSanitizer) GTEST_SKIP() << "no region under ThreadSanitizer (see arena_init)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(segment_outside_the_region_scenario(), testing::ExitedWithCode(0), "");
}

// POOLMALLOC_REGION=0: no region is placed, every segment is mapped where
// the kernel puts it, and frees find their pools through the segment map.
void no_region_scenario() {
  if (setenv("POOLMALLOC_REGION", "0", 1) != 0) std::_Exit(90);
  void* p = alloc(100);
  if (p == nullptr || g_region.base != 0 || region_used() != 0 || !in_segment(p)) std::_Exit(91);
  dealloc(p);
  if (alloc(100) != p) std::_Exit(92);  // the free went back to its pool
  dealloc(p);
  std::_Exit(0);
}

TEST(Arena, RegionCanBeTurnedOff) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(no_region_scenario(), testing::ExitedWithCode(0), "");
}

TEST(Arena, DoubleFreeOutsideTheRegionIsCaught) {
  if constexpr (!kHardened) GTEST_SKIP() << "the double-free check is built out (-Dhardening=false)";
  if constexpr (kThreadSanitizer) GTEST_SKIP() << "no region under ThreadSanitizer (see arena_init)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        std::vector<void*> keep;
        void* b = block_outside_the_region(&keep);
        dealloc(b);
        dealloc(b);
      },
      "double free");
}

// A pool of one slot, set up for requests of `size` bytes and active, as a
// heap would have it (nullptr when out of memory).
Pool* active_pool(size_t size) {
  process_init();
  Pool* p = arena_acquire_pool(1);
  if (p == nullptr) return nullptr;
  pool_init(p, class_of(size));
  p->state.store(PoolState::kActive);
  return p;
}

// Every block p has left to hand out, popped as malloc pops them; the
// pool's invariants are checked after each pop.
std::vector<Block*> take_all(Pool* p) {
  std::vector<Block*> got;
  while (has_free_block(p) || pool_refill(p)) {
    Block* b = p->free;
    Block* next = decode_link(p, b);
    p->free = next == nullptr ? end_marker(p) : next;
    b->tag = 0;
    p->used = p->used + 1;
    got.push_back(b);
    EXPECT_TRUE(pool_check_invariants(p)) << "after pop " << got.size();
  }
  return got;
}

TEST(Arena, RefillCarvesDisjointBlocksAndCollectsRemoteFrees) {
  Pool* p = active_pool(100);
  ASSERT_NE(p, nullptr);
  std::vector<Block*> got = take_all(p);
  EXPECT_EQ(got.size(), p->capacity);
  for (size_t i = 1; i < got.size(); ++i) EXPECT_EQ(reinterpret_cast<char*>(got[i]) - reinterpret_cast<char*>(got[i - 1]), static_cast<long>(p->block_size));
  for (Block* b : got) pool_free_remote(p, b);
  EXPECT_EQ(pool_collect_remote(p), p->capacity);
  EXPECT_EQ(p->used, 0);
  EXPECT_TRUE(pool_check_invariants(p));
  p->free = p->local_free = nullptr;
  arena_release_pool(p);
}

// A remote stack is taken over by the count in its head: as it is while
// no blocks wait in local_free, joined to them otherwise.
TEST(Arena, RemoteStacksAreTakenOverByTheirCount) {
  Pool* p = active_pool(48);
  ASSERT_NE(p, nullptr);
  std::vector<Block*> got = take_all(p);
  ASSERT_EQ(got.size(), p->capacity);
  const size_t half = got.size() / 2;
  for (size_t i = 0; i < half; ++i) pool_free_remote(p, got[i]);
  EXPECT_EQ(remote_count(p->remote.load()), half);
  EXPECT_EQ(remote_first(p->remote.load()), got[half - 1]);  // the last pushed is on top
  EXPECT_EQ(pool_collect_remote(p), half);
  EXPECT_EQ(p->local_free, got[half - 1]);
  for (size_t i = half; i < got.size(); ++i) pool_free_remote(p, got[i]);
  EXPECT_EQ(pool_collect_remote(p), got.size() - half);  // joined to the first half
  EXPECT_EQ(pool_collect_remote(p), 0u);
  EXPECT_EQ(p->used, 0);
  EXPECT_TRUE(pool_check_invariants(p));
  std::vector<Block*> again = take_all(p);  // every block exactly once
  std::sort(got.begin(), got.end());
  std::sort(again.begin(), again.end());
  EXPECT_EQ(again, got);
  for (Block* b : again) pool_free_remote(p, b);
  EXPECT_EQ(pool_collect_remote(p), p->capacity);
  p->free = end_marker(p);
  p->local_free = nullptr;
  arena_release_pool(p);
}

// A count that disagrees with the stack it heads is corruption: one block
// waits in local_free, two are on the stack, and the head says 2 + error.
void collect_miscounted_stack(int error) {
  Pool* p = active_pool(48);
  std::vector<Block*> got = take_all(p);
  pool_free_remote(p, got[0]);
  (void)pool_collect_remote(p);
  pool_free_remote(p, got[1]);
  pool_free_remote(p, got[2]);
  p->remote.store(p->remote.load() + static_cast<uintptr_t>(error) * remote_head(nullptr, 1));
  (void)pool_collect_remote(p);
}

TEST(ArenaDeathTest, RemoteStackLongerThanItsCountAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(collect_miscounted_stack(-1), "corrupted remote free list");
}

TEST(ArenaDeathTest, RemoteStackShorterThanItsCountAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(collect_miscounted_stack(1), "corrupted remote free list");
}

// Hands every block of p back through the remote path, as a pool whose
// blocks are all free is before a heap releases it.
void give_all_back(Pool* p, const std::vector<Block*>& blocks) {
  for (Block* b : blocks) pool_free_remote(p, b);
  EXPECT_EQ(pool_collect_remote(p), blocks.size());
  EXPECT_EQ(p->used, 0);
}

// A pool of the class, freshly set up and active, with every block carved
// and handed out (in *blocks).
Pool* full_pool(unsigned cls, std::vector<Block*>* blocks) {
  process_init();
  bool intact = false;
  Pool* p = arena_acquire_pool(kClasses.slots[cls], nullptr, cls, &intact);
  if (p == nullptr) return nullptr;
  pool_init(p, cls);  // even if an earlier test left one intact
  p->state.store(PoolState::kActive);
  *blocks = take_all(p);
  return p;
}

// A pool released with every block free goes back to the next acquisition
// for its class: the same slots and keys, its blocks carved again, each
// handed out once.
TEST(Arena, PoolReleasedWholeIsTakenBackByItsClass) {
  const unsigned cls = class_of(3000);
  std::vector<Block*> got;
  Pool* p = full_pool(cls, &got);
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(got.size(), p->capacity);
  const uintptr_t key = p->key, tag_key = p->tag_key;
  give_all_back(p, got);
  arena_release_pool(p, true);
  EXPECT_TRUE(p->intact);
  EXPECT_EQ(p->state.load(), PoolState::kFree);  // a stale free into it still aborts
  bool intact = false;
  Pool* q = arena_acquire_pool(kClasses.slots[cls], nullptr, cls, &intact);
  ASSERT_EQ(q, p);
  EXPECT_TRUE(intact);
  EXPECT_FALSE(q->intact);
  pool_recycle(q);
  EXPECT_EQ(q->key, key);
  EXPECT_EQ(q->tag_key, tag_key);
  EXPECT_EQ(q->shared.key, key);
  EXPECT_EQ(q->carved, 0u);
  q->state.store(PoolState::kActive);
  std::vector<Block*> again = take_all(q);  // every block exactly once
  EXPECT_EQ(again, got);                    // carved in the same order
  give_all_back(q, again);
  q->free = end_marker(q);
  q->local_free = nullptr;
  arena_release_pool(q);
  EXPECT_FALSE(q->intact);
}

// An intact pool whose memory is purged, or whose slots another pool
// takes, is intact no more: the next pool of its class is set up afresh.
TEST(Arena, IntactPoolIsDroppedWhenItsSlotsArePurgedOrTaken) {
  const unsigned cls = class_of(3000);
  std::vector<Block*> got;
  Pool* p = full_pool(cls, &got);
  ASSERT_NE(p, nullptr);
  give_all_back(p, got);
  arena_release_pool(p, true);
  ASSERT_TRUE(p->intact);
  arena_purge(true);  // may unmap p's segment: p is not read again
  bool intact = true;
  Pool* q = arena_acquire_pool(kClasses.slots[cls], nullptr, cls, &intact);
  ASSERT_NE(q, nullptr);
  EXPECT_FALSE(intact);  // the purge dropped every intact pool
  arena_release_pool(q);

  p = full_pool(cls, &got);
  ASSERT_NE(p, nullptr);
  give_all_back(p, got);
  arena_release_pool(p, true);
  ASSERT_TRUE(p->intact);
  // One-slot pools, dirty runs first, until one lands on p's slots.
  char* const lo = p->start;
  char* const hi = p->start + size_t{p->slots} * kSlotSize;
  std::vector<Pool*> taken;
  bool overlapped = false;
  while (!overlapped && taken.size() < 100000) {
    Pool* r = arena_acquire_pool(1);
    ASSERT_NE(r, nullptr);
    taken.push_back(r);
    overlapped = r->start >= lo && r->start < hi;
  }
  EXPECT_TRUE(overlapped);
  EXPECT_FALSE(p->intact);
  for (Pool* r : taken) arena_release_pool(r);
}

TEST(Arena, FreedPoolsArePurgedAndEmptySegmentsUnmapped) {
  std::vector<void*> v;
  for (int i = 0; i < 200000; ++i) v.push_back(alloc(200));
  size_t mapped = os::mapped_bytes();
  for (void* p : v) dealloc(p);
  trim();
  EXPECT_LT(os::mapped_bytes(), mapped);
  ArenaStats st = arena_stats();
  EXPECT_EQ(st.dirty_bytes, 0u);
}

TEST(Arena, MapFailuresGiveEnomemAndRecover) {
  trim();
  std::vector<void*> v;
  os::inject_map_failures(1000000);
  errno = 0;
  void* big = alloc(10 << 20);
  EXPECT_EQ(big, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  // Small requests fail once the current pools are exhausted.
  void* p = nullptr;
  for (int i = 0; i < 10000000 && (p = alloc(4000)) != nullptr; ++i) v.push_back(p);
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  os::inject_map_failures(0);
  for (void* q : v) dealloc(q);
  big = alloc(10 << 20);
  ASSERT_NE(big, nullptr);
  dealloc(big);
}

}  // namespace
}  // namespace pm
