// Bad input to the core API: each misuse must stop the process with the
// allocator's own message, not corrupt memory and carry on.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "alloc.h"

namespace {

// Matches the prefix every fatal report starts with.
constexpr const char* kDoubleFree = "poolmalloc: double free of 0x[0-9a-f]+ \\(size class 64 bytes\\)";
constexpr const char* kInvalid = "poolmalloc: free of a pointer that was not allocated";


class Death : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(Death, DoubleFreeLocal) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no double-free tag";
  EXPECT_DEATH(
      {
        void* p = pm::alloc(64);
        void* keep = pm::alloc(64);  // the pool must not empty out between the two frees
        pm::dealloc(p);
        pm::dealloc(p);
        pm::dealloc(keep);
      },
      kDoubleFree);
}

TEST_F(Death, DoubleFreeCrossThread) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no double-free tag";
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);
        void* p = pm::alloc(64);
        std::thread([p] { pm::dealloc(p); }).join();
        std::thread([p] { pm::dealloc(p); }).join();
        pm::dealloc(keep);
      },
      kDoubleFree);
}

TEST_F(Death, DoubleFreeRemoteThenOwner) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no double-free tag";
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);
        void* p = pm::alloc(64);
        std::thread([p] { pm::dealloc(p); }).join();
        pm::dealloc(p);
        pm::dealloc(keep);
      },
      kDoubleFree);
}

// Two threads other than the owner free the same block at the same moment,
// with no other free into the pool between them: either the second sees
// the first one's tag, or both pass the tag test and the second finds the
// block on top of the pool's remote stack. Either way the block is never
// pushed twice (the owner takes the stack over by its count, without
// walking it, and would hand the block out twice).
TEST_F(Death, DoubleFreeRacingFromTwoThreads) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no double-free tag";
  // The two frees race on the block by design; ThreadSanitizer stops the
  // process at that race before the allocator can report it.
  if constexpr (pm::kThreadSanitizer) GTEST_SKIP() << "a deliberate data race, reported as one by ThreadSanitizer";
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);
        void* p = pm::alloc(64);
        std::atomic<int> ready{0};
        auto race = [&] {
          ready.fetch_add(1);
          while (ready.load() < 2) {
          }
          pm::dealloc(p);
        };
        std::thread a(race);
        std::thread b(race);
        a.join();
        b.join();
        pm::dealloc(keep);
      },
      kDoubleFree);
}

// The second of two racing frees may read the tag before the first one
// writes it; the block on top of the remote stack still stops it.
TEST_F(Death, RacingRemoteFreeThatMissedTheTag) {
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);
        auto* b = static_cast<pm::Block*>(pm::alloc(64));
        pm::Pool* pool = pm::pool_of(b);
        pm::pool_free_remote(pool, b);
        b->tag = 0;  // as the second thread saw it
        pm::pool_free_remote(pool, b);
        pm::dealloc(keep);
      },
      kDoubleFree);
}

TEST_F(Death, DoubleFreeLarge) {
  EXPECT_DEATH(
      {
        void* p = pm::alloc(1 << 20);
        pm::dealloc(p);
        pm::dealloc(p);
      },
      "poolmalloc: free of a pointer that was not allocated \\(invalid or double free\\): 0x");
}

// A thread with a heap, in a process that has had a second thread, keeps a
// freed block of up to 1 MiB in its own cache, still registered: the
// "cached" check word in its header tells the second free from a first one.
TEST_F(Death, DoubleFreeOfLargeBlockHeldInTheThreadCache) {
  EXPECT_DEATH(
      {
        std::thread([] {}).join();   // threaded: thread caches are in use
        pm::dealloc(pm::alloc(16));  // the thread's heap, where its cache lives
        void* p = pm::alloc(600000);
        pm::dealloc(p);
        pm::dealloc(p);
      },
      "poolmalloc: double free of large block: 0x");
}

// A write below a block held in a thread cache is caught when the block,
// handed out again, is freed.
TEST_F(Death, LargeHeaderOverwrittenWhileCached) {
  EXPECT_DEATH(
      {
        std::thread([] {}).join();
        pm::dealloc(pm::alloc(16));
        auto* p = static_cast<unsigned char*>(pm::alloc(600000));
        pm::dealloc(p);
        p[-3] ^= 0x10;  // use after free, below the block
        void* q = pm::alloc(600000);
        pm::dealloc(q);
      },
      "poolmalloc: heap corruption: the header below large block was overwritten: 0x");
}

// Larger than the large-block cache may hold: its free unmaps it at once.
constexpr size_t kUncached = size_t{200} << 20;

TEST_F(Death, DoubleFreeOfUnmappedLargeBlock) {
  EXPECT_DEATH(
      {
        void* p = pm::alloc(kUncached);
        pm::dealloc(p);
        pm::dealloc(p);  // nothing is mapped below p any more
      },
      "poolmalloc: free of a pointer that was not allocated \\(invalid or double free\\): 0x");
}

TEST_F(Death, FreeOfPointerIntoUnmappedMemory) {
  EXPECT_DEATH(
      {
        // Not page-aligned, in a hole the allocator itself left: the check
        // must not read the header where it would be.
        auto* p = static_cast<char*>(pm::alloc(kUncached));
        pm::dealloc(p);
        pm::dealloc(p + 5 * pm::kPageSize + 64);
      },
      kInvalid);
}

TEST_F(Death, LargeHeaderOverwritten) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<unsigned char*>(pm::alloc(300000));
        p[-4] ^= 0x40;  // an underflow hits the word that checks the header
        pm::dealloc(p);
      },
      "poolmalloc: heap corruption: the header below large block was overwritten: 0x");
}

TEST_F(Death, InteriorFree) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no interior-pointer check";
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(64));
        pm::dealloc(p + 16);
      },
      std::string(kInvalid) + " \\(interior or foreign\\): 0x[0-9a-f]+ \\(size class 64 bytes\\)");
}

TEST_F(Death, InteriorFreeFromOtherThread) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(96));
        std::thread([p] { pm::dealloc(p + 8); }).join();
      },
      std::string(kInvalid) + " \\(interior or foreign\\): 0x[0-9a-f]+ \\(size class 96 bytes\\)");
}

TEST_F(Death, InteriorFreeLarge) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(300000));
        pm::dealloc(p + 4096);
      },
      kInvalid);
}

TEST_F(Death, FreeOfStackPointer) {
  EXPECT_DEATH(
      {
        alignas(64) char buf[256];
        memset(buf, 0, sizeof buf);
        pm::dealloc(buf + 64);
      },
      kInvalid);
}

TEST_F(Death, FreeOfWildPointer) {
  // No mapping at all around it: the check must not read below it.
  EXPECT_DEATH(pm::dealloc(reinterpret_cast<void*>(uintptr_t{0x10000})), kInvalid);
}

// A live block's address with a bit above the 47 set (a wild pointer, or a
// pointer with a tag in its top bits): no segment of ours, and an abort
// with the message, not a read through the segment map's wrapped index.
TEST_F(Death, FreeOfLiveBlockAddressAboveTheUserRange) {
  for (uintptr_t high : {uintptr_t{1} << 47, uintptr_t{0xffff800000000000}}) {
    EXPECT_DEATH(
        {
          auto* p = static_cast<char*>(pm::alloc(64));
          pm::dealloc(reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) | high));
        },
        kInvalid);
    void* p = pm::alloc(64);
    EXPECT_EQ(pm::usable_size(reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) | high)), 0u);
    EXPECT_FALSE(pm::owns(reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) | high)));
    pm::dealloc(p);
  }
}

TEST_F(Death, FreeOfPageAlignedPointerAfterAnUnmappedPage) {
  EXPECT_DEATH(
      {
        // Inside the allocator's own address range, the page before p is a
        // hole: where a large block's header would be there is nothing.
        auto* big = static_cast<char*>(pm::alloc(size_t{1} << 20));
        char* base = big - 16;  // a plain large block starts 16 bytes into its mapping
        if ((reinterpret_cast<uintptr_t>(base) & (pm::kPageSize - 1)) != 0) std::abort();
        munmap(base, pm::kPageSize);
        pm::dealloc(base + pm::kPageSize);
      },
      kInvalid);
}

TEST_F(Death, FreeOfGlibcPointer) {
  EXPECT_DEATH(
      {
        // In this binary malloc is glibc's: a pointer the core never handed out.
        void* (*volatile libc_malloc)(size_t) = &malloc;
        auto* q = static_cast<char*>(libc_malloc(200));
        memset(q, 0x5a, 200);
        pm::dealloc(q);
      },
      kInvalid);
}

TEST_F(Death, FreeOfUnusedSlot) {
  EXPECT_DEATH(
      {
        // A pointer into a segment slot that no pool covers.
        auto* p = static_cast<char*>(pm::alloc(64));
        char* seg = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) & ~(pm::kSegmentSize - 1));
        pm::dealloc(seg + pm::kSegmentSize - pm::kSlotSize);
      },
      kInvalid);
  auto* p = static_cast<char*>(pm::alloc(64));
  char* seg = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) & ~(pm::kSegmentSize - 1));
  EXPECT_EQ(pm::usable_size(seg + pm::kSegmentSize - pm::kSlotSize), 0u);  // no block there
  EXPECT_EQ(pm::usable_size(seg + 64), 0u);                                 // the segment's header
  pm::dealloc(p);
}

TEST_F(Death, ReallocOfForeignPointer) {
  EXPECT_DEATH(
      {
        alignas(16) static char buf[128];
        (void)pm::resize(buf + 32, 500);
      },
      "poolmalloc: realloc of a pointer that was not allocated \\(invalid or freed\\): 0x");
}

// realloc can return the block unmoved (here: same size), so it must check
// the pointer itself rather than leave it to a free that never comes.
TEST_F(Death, ReallocOfFreedBlock) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no double-free tag";
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);  // the pool stays in use after the free
        void* p = pm::alloc(64);
        pm::dealloc(p);
        (void)pm::resize(p, 64);
        pm::dealloc(keep);
      },
      "poolmalloc: realloc of a freed block: 0x[0-9a-f]+ \\(size class 64 bytes\\)");
}

TEST_F(Death, ReallocOfFreedBlockOfAnotherThread) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no double-free tag";
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);
        void* p = pm::alloc(64);
        pm::dealloc(p);
        std::thread([p] { (void)pm::resize(p, 40); }).join();
        pm::dealloc(keep);
      },
      "poolmalloc: realloc of a freed block: 0x[0-9a-f]+ \\(size class 64 bytes\\)");
}

TEST_F(Death, ReallocOfInteriorPointer) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(64));
        (void)pm::resize(p + 16, 32);
      },
      "poolmalloc: realloc of a pointer that was not allocated \\(interior or foreign\\): 0x");
}

// A block start of the pool past the blocks carved so far: never handed
// out. Accepted, it would go onto the free list while the carve to come
// hands the same block out too.
char* block_never_handed_out(size_t n) {
  auto* p = static_cast<char*>(pm::alloc(n));
  const pm::Pool* pool = pm::pool_of(p);
  if (pool->carved + 2 > pool->capacity) std::abort();
  return pool->start + size_t{pool->carved + 1} * pool->block_size;
}

TEST_F(Death, FreeOfABlockNeverHandedOut) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no block-start check on a local free";
  for (size_t n : {16, 64, 1000, 4096})
    EXPECT_DEATH(pm::dealloc(block_never_handed_out(n)),
                 std::string(kInvalid) + " \\(interior or foreign\\): 0x[0-9a-f]+ \\(size class");
}

TEST_F(Death, FreeOfABlockNeverHandedOutFromOtherThread) {
  EXPECT_DEATH(
      {
        char* b = block_never_handed_out(64);
        std::thread([b] { pm::dealloc(b); }).join();
      },
      std::string(kInvalid) + " \\(interior or foreign\\): 0x[0-9a-f]+ \\(size class 64 bytes\\)");
}

TEST_F(Death, ReallocOfABlockNeverHandedOut) {
  EXPECT_DEATH((void)pm::resize(block_never_handed_out(64), 60),
               "poolmalloc: realloc of a pointer that was not allocated \\(interior or foreign\\): 0x");
}

TEST_F(Death, ReallocIntoUnusedSlot) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(64));
        char* seg = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) & ~(pm::kSegmentSize - 1));
        (void)pm::resize(seg + pm::kSegmentSize - pm::kSlotSize, 16);
      },
      "poolmalloc: realloc of a pointer that was not allocated \\(interior or foreign\\): 0x");
}

TEST_F(Death, CorruptedFreeList) {
  EXPECT_DEATH(
      {
        auto* keep = static_cast<char*>(pm::alloc(48));
        auto* p = static_cast<uint64_t*>(pm::alloc(48));
        pm::dealloc(p);
        p[0] = 0x4141414141414141ull;  // write after free, over the free-list link
        // The freed block goes to the pool's local list and comes back once
        // the current run is used up; popping it decodes the bad link.
        for (int i = 0; i < 5000; ++i) (void)pm::alloc(48);
        pm::dealloc(keep);
      },
      "poolmalloc: corrupted free list \\(use after free\\?\\) in pool of 0x[0-9a-f]+ \\(size class 48 bytes\\)");
}

constexpr const char* kUntagged =
    "poolmalloc: corrupted free list: a listed block lost its free tag \\(written after free, or freed twice\\?\\): "
    "0x[0-9a-f]+ \\(size class 64 bytes\\)";

// A write after free over the free tag hides a second free from free's
// test; the list then holds the block twice (a cycle through it). A pop
// hands out only tagged blocks and clears the tag, so the block goes out
// once and the pop that meets it again aborts instead of handing it out
// once more (and again forever, as it did).
TEST_F(Death, WriteOverTheTagThenDoubleFreeNeverHandsABlockOutTwice) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no free tag";
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);
        auto* p = static_cast<volatile uint64_t*>(pm::alloc(64));
        pm::dealloc(const_cast<uint64_t*>(p));
        p[1] = 0;  // a reference count in the freed object, say
        pm::dealloc(const_cast<uint64_t*>(p));
        void* a = pm::alloc(64);
        void* b = pm::alloc(64);
        void* c = pm::alloc(64);
        std::fprintf(stderr, "handed out %p %p %p\n", a, b, c);
        pm::dealloc(keep);
      },
      kUntagged);
}

// The same with the frees in another thread: the cycle goes through the
// remote stack, which the owner takes over without walking it.
TEST_F(Death, WriteOverTheTagThenRemoteDoubleFreeNeverHandsABlockOutTwice) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no free tag";
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);
        void* p = pm::alloc(64);
        void* q = pm::alloc(64);
        std::thread([p, q] {
          pm::dealloc(p);
          pm::dealloc(q);
          static_cast<volatile uint64_t*>(p)[1] = 0;
          pm::dealloc(p);
        }).join();
        for (int i = 0; i < 20000; ++i) (void)pm::alloc(64);
        pm::dealloc(keep);
      },
      kUntagged);
}

// A link bent (by a write after free, knowing the pool's key) so that it
// still points into the segment: to a block in use, or to the pool's own
// descriptor, whose {key, tag key} pair reads as a free block at the end
// of a list. Neither is handed out.
TEST_F(Death, LinkBentToALiveBlockIsNotFollowed) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no free tag";
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);
        void* live = pm::alloc(64);
        auto* b = static_cast<pm::Block*>(pm::alloc(64));
        pm::dealloc(b);
        pm::Pool* pool = pm::pool_of(b);
        b->link = pm::encode_link(pool->key, live);
        void* first = pm::alloc(64);
        void* second = pm::alloc(64);
        std::fprintf(stderr, "handed out %p, then the live block %p again: %p\n", first, live, second);
        pm::dealloc(keep);
      },
      kUntagged);
}

TEST_F(Death, LinkBentToThePoolDescriptorIsNotFollowed) {
  if constexpr (!pm::kHardened) GTEST_SKIP() << "built with -Dhardening=false: no free tag";
  EXPECT_DEATH(
      {
        void* keep = pm::alloc(64);
        auto* b = static_cast<pm::Block*>(pm::alloc(64));
        pm::dealloc(b);
        pm::Pool* pool = pm::pool_of(b);
        b->link = pm::encode_link(pool->key, &pool->key);
        void* first = pm::alloc(64);
        void* second = pm::alloc(64);
        std::fprintf(stderr, "handed out %p, then the descriptor's keys %p: %p\n", first,
                     static_cast<void*>(&pool->key), second);
        pm::dealloc(keep);
      },
      kUntagged);
}

TEST_F(Death, CorruptedRemoteList) {
  // A block freed by another thread, then written by the old owner: the link
  // in the remote stack is checked when the owner collects it.
  EXPECT_DEATH(
      {
        constexpr int kN = 4096;
        static void* blocks[kN];
        for (auto& b : blocks) b = pm::alloc(32);
        std::thread([] {
          for (int i = 1; i < kN; ++i) pm::dealloc(blocks[i]);
        }).join();
        static_cast<uint64_t*>(blocks[kN - 1])[0] = 0x4242424242424242ull;
        for (int i = 0; i < 2 * kN; ++i) (void)pm::alloc(32);
      },
      "poolmalloc: corrupted (remote )?free list");
}

}  // namespace
