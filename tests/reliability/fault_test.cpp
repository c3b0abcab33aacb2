// Out of memory, made two ways: mmap failures injected at chosen points of
// initialisation and growth (pm::os::inject_map_failures), and a real
// address-space limit (RLIMIT_AS). Every scenario runs in a fresh child
// process (threadsafe death-test style re-executes the binary), because the
// first one needs an allocator that was never initialised.
#include <errno.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "alloc.h"
#include "heap.h"
#include "large.h"
#include "os.h"
#include "segment.h"

namespace {

// Inside a child: report the first broken expectation and exit non-zero.
#define REQUIRE(cond)                                                      \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "requirement failed: %s (line %d, errno %d)\n", #cond, \
              __LINE__, errno);                                            \
      _exit(1);                                                            \
    }                                                                      \
  } while (0)

class Fault : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

bool is_enomem_null(void* p) { return p == nullptr && errno == ENOMEM; }

void fill(void* p, size_t n, unsigned char v) { memset(p, v, n); }
bool holds(const void* p, size_t n, unsigned char v) {
  const auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i)
    if (c[i] != v) return false;
  return true;
}

// The first allocation of the process maps the heap area, then a segment:
// with k failures injected, exactly k calls fail with ENOMEM, then it works.
TEST_F(Fault, MapFailuresDuringInitialisation) {
  for (long k : {1L, 2L, 3L}) {
    EXPECT_EXIT(
        {
          pm::os::inject_map_failures(k);
          long failed = 0;
          void* p = nullptr;
          for (int i = 0; i < 10 && p == nullptr; ++i) {
            errno = 0;
            p = pm::alloc(64);
            if (p == nullptr) {
              REQUIRE(errno == ENOMEM);
              ++failed;
            }
          }
          REQUIRE(p != nullptr);
          REQUIRE(failed == k);
          fill(p, 64, 0x11);
          REQUIRE(holds(p, 64, 0x11));
          pm::dealloc(p);
          _exit(0);
        },
        ::testing::ExitedWithCode(0), "");
  }
}

// A new segment is needed when the first one is full of 32 KiB pools.
TEST_F(Fault, MapFailureWhenArenaGrows) {
  EXPECT_EXIT(
      {
        static void* blocks[400];
        pm::dealloc(pm::alloc(64));  // initialise
        pm::os::inject_map_failures(1);
        int failed = 0;
        for (auto& b : blocks) {
          errno = 0;
          b = pm::alloc(32768);
          if (b == nullptr) {
            REQUIRE(errno == ENOMEM);
            ++failed;
          } else {
            fill(b, 32768, 0x22);
          }
        }
        REQUIRE(failed == 1);
        for (auto* b : blocks) {
          if (b == nullptr) continue;
          REQUIRE(holds(b, 32768, 0x22));
          pm::dealloc(b);
        }
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// A refused mapping is tried once more after what the caches hold mapped is
// given back, when that is enough to make room: an aligned large block (never
// served from the cache), and the heap of a new thread whose first chunk of
// heaps is full. The 8 MiB block freed before each stays mapped in the
// cache until then.
// munmap refused (ENOMEM, when the split of a mapping would pass
// vm.max_map_count): the empty segments stay listed, mapped and counted,
// and a later trim gives them back. (They were forgotten while still
// mapped: lost for good.)
TEST_F(Fault, RefusedUnmapKeepsTheSegment) {
  EXPECT_EXIT(
      {
        static void* blocks[1200];
        pm::dealloc(pm::alloc(64));  // initialise
        pm::trim();
        const size_t segments = pm::arena_stats().segments;
        for (auto& b : blocks) REQUIRE((b = pm::alloc(32768)) != nullptr);
        for (auto* b : blocks) pm::dealloc(b);
        const size_t grown = pm::arena_stats().segments;
        const size_t mapped = pm::os::mapped_bytes();
        REQUIRE(grown >= segments + 8);
        pm::os::inject_unmap_failures(1000);
        pm::trim();
        pm::os::inject_unmap_failures(0);
        REQUIRE(pm::arena_stats().segments == grown);
        REQUIRE(pm::arena_stats().reserved == grown * pm::kSegmentSize);
        REQUIRE(pm::os::mapped_bytes() == mapped);
        pm::trim();
        REQUIRE(pm::arena_stats().segments <= segments + 1);
        REQUIRE(pm::os::mapped_bytes() <= mapped - (grown - segments - 1) * pm::kSegmentSize);
        for (auto& b : blocks) REQUIRE((b = pm::alloc(32768)) != nullptr);  // the arena works on
        for (auto* b : blocks) pm::dealloc(b);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// munmap refused for a range the large cache lets go of: the range stays
// mapped, since only the kernel could take its address space back, but its
// pages go back to the OS (they stayed resident, lost to the program).
TEST_F(Fault, RefusedUnmapOfACachedRangeReturnsItsPages) {
  EXPECT_EXIT(
      {
        constexpr size_t kBytes = size_t{8} << 20;
        pm::dealloc(pm::alloc(64));  // initialise
        auto* p = static_cast<char*>(pm::alloc(kBytes));
        REQUIRE(p != nullptr);
        fill(p, kBytes, 0x5a);
        pm::dealloc(p);
        REQUIRE(pm::large_stats().cached_bytes >= kBytes);
        const size_t mapped = pm::os::mapped_bytes();
        pm::os::inject_unmap_failures(1000);
        pm::trim();
        pm::os::inject_unmap_failures(0);
        REQUIRE(pm::large_stats().cached_bytes == 0);
        REQUIRE(pm::os::mapped_bytes() == mapped);  // still mapped, and counted so
        char* page = reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(p) & ~uintptr_t{4095});
        static unsigned char vec[kBytes / 4096];
        REQUIRE(mincore(page, kBytes, vec) == 0);
        size_t resident = 0;
        for (unsigned char v : vec) resident += v & 1;
        REQUIRE(resident == 0);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// realloc to a smaller size when nothing can be mapped: the block holds the
// new size already, and stays where it is, as under glibc, instead of the
// call failing. Growing still fails, with the block untouched.
TEST_F(Fault, ShrinkingReallocKeepsTheBlockWhenNothingCanBeMapped) {
  EXPECT_EXIT(
      {
        constexpr size_t kBig = size_t{64} << 20;
        constexpr size_t kMark = size_t{1} << 20;
        pm::dealloc(pm::alloc(64));  // initialise
        auto* plain = static_cast<char*>(pm::alloc(kBig));
        auto* aligned = static_cast<char*>(pm::alloc_aligned(4096, kBig));  // mremap cannot move it
        REQUIRE(plain != nullptr && aligned != nullptr);
        fill(plain, kMark, 0x61);
        fill(aligned, kMark, 0x62);
        pm::os::inject_map_failures(1000000);
        errno = 0;
        REQUIRE(pm::resize(aligned, kBig / 3) == aligned);
        REQUIRE(pm::resize(plain, kBig / 3) == plain);  // the mremap that shrinks it refused too
        void* small = pm::resize(plain, 100 * 1024);    // into a pool class, or kept
        REQUIRE(small != nullptr);
        REQUIRE(errno == 0);
        REQUIRE(holds(aligned, kMark, 0x62) && holds(small, 100 * 1024, 0x61));
        REQUIRE(pm::resize(small, kBig * 2) == nullptr && errno == ENOMEM);
        REQUIRE(holds(small, 100 * 1024, 0x61));
        pm::os::inject_map_failures(0);
        pm::dealloc(small);
        pm::dealloc(aligned);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(Fault, RefusedMappingIsRetriedAfterTheCachesAreGivenBack) {
  EXPECT_EXIT(
      {
        pm::dealloc(pm::alloc(64));  // the main thread's heap: the first of its chunk
        pm::dealloc(pm::alloc(8 << 20));
        REQUIRE(pm::large_stats().cached_bytes >= (8u << 20));
        pm::os::inject_map_failures(1);
        // Larger than the cached block, which cannot serve it: a mapping.
        void* a = pm::alloc_aligned(1 << 16, 16 << 20);
        REQUIRE(a != nullptr && reinterpret_cast<uintptr_t>(a) % (1 << 16) == 0);
        REQUIRE(pm::large_stats().cached_bytes == 0);  // given back before the retry
        pm::dealloc(a);

        // Threads that stay alive until the chunk of heaps is full.
        constexpr size_t kPerChunk = pm::kHeapChunk / pm::kHeapBytes;
        std::atomic<bool> go{false};
        std::atomic<size_t> ready{0};
        std::vector<std::thread> threads;
        auto live = [&] {
          void* p = pm::alloc(64);
          if (p == nullptr) _exit(2);
          ready.fetch_add(1);
          while (!go.load()) usleep(1000);
          pm::dealloc(p);
        };
        for (size_t i = 1; i < kPerChunk; ++i) threads.emplace_back(live);
        while (ready.load() != kPerChunk - 1) usleep(1000);
        pm::dealloc(pm::alloc(8 << 20));
        REQUIRE(pm::large_stats().cached_bytes >= (8u << 20));
        pm::os::inject_map_failures(1);  // the next heap needs a new chunk
        threads.emplace_back(live);
        while (ready.load() != kPerChunk) usleep(1000);
        REQUIRE(pm::large_stats().cached_bytes == 0);
        go.store(true);
        for (auto& t : threads) t.join();
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(Fault, MapFailureInLargeAlignedZeroedAndRealloc) {
  EXPECT_EXIT(
      {
        pm::dealloc(pm::alloc(64));
        pm::os::inject_map_failures(1);
        REQUIRE(is_enomem_null(pm::alloc(3 << 20)));
        pm::os::inject_map_failures(1);
        REQUIRE(is_enomem_null(pm::alloc_aligned(1 << 16, 300000)));
        pm::os::inject_map_failures(1);
        REQUIRE(is_enomem_null(pm::alloc_zeroed(5, 1 << 20)));
        // Realloc of a large block: mremap fails, then every fresh mapping
        // too (cached mappings emptied first); the old block must be left intact.
        void* p = pm::alloc(1 << 20);
        REQUIRE(p != nullptr);
        fill(p, 1 << 20, 0x33);
        pm::trim();
        pm::os::inject_map_failures(100);
        errno = 0;
        REQUIRE(is_enomem_null(pm::resize(p, 9 << 20)));
        pm::os::inject_map_failures(0);
        REQUIRE(holds(p, 1 << 20, 0x33));
        // Small to large: the copy target cannot be mapped.
        void* s = pm::alloc(500);
        fill(s, 500, 0x44);
        pm::os::inject_map_failures(1);
        REQUIRE(is_enomem_null(pm::resize(s, 7 << 20)));
        REQUIRE(holds(s, 500, 0x44));
        // Everything works again afterwards.
        void* q = pm::resize(p, 9 << 20);
        REQUIRE(q != nullptr && holds(q, 1 << 20, 0x33));
        void* t = pm::resize(s, 7 << 20);
        REQUIRE(t != nullptr && holds(t, 500, 0x44));
        void* a = pm::alloc_aligned(1 << 16, 300000);
        REQUIRE(a != nullptr && reinterpret_cast<uintptr_t>(a) % (1 << 16) == 0);
        pm::dealloc(q);
        pm::dealloc(t);
        pm::dealloc(a);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// Regression: a process whose first request was large keyed that block's
// header before the secret was set, and aborted when it freed it.
TEST_F(Fault, FirstAllocationOfTheProcessIsLarge) {
  EXPECT_EXIT(
      {
        void* big = pm::alloc(300000);
        void* aligned = pm::alloc_aligned(1 << 16, 600000);
        REQUIRE(big != nullptr && aligned != nullptr);
        void* small = pm::alloc(10);
        REQUIRE(pm::usable_size(big) >= 300000);
        pm::dealloc(big);
        pm::dealloc(aligned);
        pm::dealloc(small);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(Fault, ImpossibleRequests) {
  errno = 0;
  EXPECT_TRUE(is_enomem_null(pm::alloc(SIZE_MAX)));
  errno = 0;
  EXPECT_TRUE(is_enomem_null(pm::alloc(SIZE_MAX / 2 + 1)));
  errno = 0;
  EXPECT_TRUE(is_enomem_null(pm::alloc_zeroed(SIZE_MAX / 2, 3)));
  errno = 0;
  EXPECT_TRUE(is_enomem_null(pm::alloc_aligned(4096, SIZE_MAX - 100)));
  errno = 0;
  EXPECT_TRUE(is_enomem_null(pm::alloc_aligned(size_t{1} << 62, 16)));
  void* p = pm::alloc(100);
  ASSERT_NE(p, nullptr);
  errno = 0;
  EXPECT_TRUE(is_enomem_null(pm::resize(p, SIZE_MAX - 4096)));
  EXPECT_GE(pm::usable_size(p), 100u);
  pm::dealloc(p);
}

size_t vm_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  size_t pages = 0;
  if (f != nullptr) {
    if (fscanf(f, "%zu", &pages) != 1) pages = 0;
    fclose(f);
  }
  return pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Allocates blocks of `size` until the allocator says no; the blocks are
// chained through their first word. Returns how many it got.
size_t exhaust(size_t size, void** chain) {
  size_t n = 0;
  for (;;) {
    errno = 0;
    void* p = pm::alloc(size);
    if (p == nullptr) {
      REQUIRE(errno == ENOMEM);
      return n;
    }
    memset(p, 0x5c, size < 4096 ? size : 4096);
    *static_cast<void**>(p) = *chain;
    *chain = p;
    ++n;
  }
}

void release_chain(void* chain) {
  while (chain != nullptr) {
    void* next = *static_cast<void**>(chain);
    pm::dealloc(chain);
    chain = next;
  }
}

TEST_F(Fault, AddressSpaceLimit) {
  EXPECT_EXIT(
      {
        pm::dealloc(pm::alloc(64));
        rlimit lim{};
        getrlimit(RLIMIT_AS, &lim);
        lim.rlim_cur = vm_bytes() + (256u << 20);
        REQUIRE(setrlimit(RLIMIT_AS, &lim) == 0);

        void* large = nullptr;
        size_t n_large = exhaust(1 << 20, &large);
        REQUIRE(n_large >= 100);
        void* small = nullptr;
        size_t n_small = exhaust(200, &small);
        // Everything that needs fresh address space now fails cleanly.
        errno = 0;
        REQUIRE(is_enomem_null(pm::alloc(2 << 20)));
        REQUIRE(is_enomem_null(pm::alloc_zeroed(1, 2 << 20)));
        REQUIRE(is_enomem_null(pm::alloc_aligned(1 << 20, 1 << 20)));
        void* keep = small != nullptr ? small : large;
        void* grown = pm::resize(keep, 64 << 20);
        REQUIRE(is_enomem_null(grown));
        REQUIRE(static_cast<unsigned char*>(keep)[8] == 0x5c);

        // Give it all back: the same amount must be available again.
        release_chain(small);
        release_chain(large);
        (void)pm::trim();
        void* again = nullptr;
        size_t n_again = exhaust(1 << 20, &again);
        REQUIRE(n_again * 10 >= n_large * 9);
        release_chain(again);
        (void)pm::trim();
        void* small_again = nullptr;
        size_t n_small_again = exhaust(200, &small_again);
        REQUIRE(n_small_again * 10 >= n_small * 9);
        fprintf(stderr, "large %zu/%zu small %zu/%zu\n", n_large, n_again, n_small, n_small_again);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "large [0-9]+/[0-9]+ small [0-9]+/[0-9]+");
}

}  // namespace
