// Segments, the segment map, pools and purging, against the arena directly.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "alloc.h"
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

TEST(Arena, RefillCarvesDisjointBlocksAndCollectsRemoteFrees) {
  process_init();
  Pool* p = arena_acquire_pool(1);
  ASSERT_NE(p, nullptr);
  pool_init(p, class_of(100));
  p->state.store(PoolState::kActive);
  std::vector<Block*> got;
  while (has_free_block(p) || pool_refill(p)) {
    Block* b = p->free;
    Block* next = decode_link(p, b);
    p->free = next == nullptr ? end_marker(p) : next;
    b->tag = 0;
    p->used = p->used + 1;
    got.push_back(b);
    ASSERT_TRUE(pool_check_invariants(p));
  }
  EXPECT_EQ(got.size(), p->capacity);
  for (size_t i = 1; i < got.size(); ++i) EXPECT_EQ(reinterpret_cast<char*>(got[i]) - reinterpret_cast<char*>(got[i - 1]), static_cast<long>(p->block_size));
  for (Block* b : got) pool_free_remote(p, b);
  EXPECT_EQ(pool_collect_remote(p), p->capacity);
  EXPECT_EQ(p->used, 0);
  EXPECT_TRUE(pool_check_invariants(p));
  p->free = p->local_free = nullptr;
  arena_release_pool(p);
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
