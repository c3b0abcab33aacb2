// POOLMALLOC_CHECK=full through the core API (meson runs this program with
// the variable set). Each detection is a death test with its message; the
// first test shows that correct programs run clean in this mode.
#include <gtest/gtest.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "alloc.h"
#include "check_full.h"
#include "os.h"
#include "size_classes.h"
#include "stats.h"

namespace {

// A fault in a guard page: a plain SIGSEGV, or the sanitizer's SEGV report.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EXPECT_FAULT(statement) EXPECT_DEATH(statement, "SEGV")
#else
#define EXPECT_FAULT(statement) EXPECT_EXIT(statement, ::testing::KilledBySignal(SIGSEGV), "")
#endif

class Full : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    pm::dealloc(pm::alloc(1));  // process set-up reads the environment
    ASSERT_TRUE(pm::g_check_full) << "run with POOLMALLOC_CHECK=full";
  }
};

TEST_F(Full, CorrectProgramsRunClean) {
  std::vector<std::pair<unsigned char*, size_t>> live;
  for (int round = 0; round < 4; ++round) {
    for (size_t n = 1; n < 300000; n = n * 5 / 4 + 1) {
      auto* p = static_cast<unsigned char*>(round % 2 ? pm::alloc_zeroed(1, n) : pm::alloc(n));
      ASSERT_NE(p, nullptr);
      EXPECT_GE(pm::usable_size(p), n);
      EXPECT_TRUE(pm::owns(p));
      memset(p, static_cast<int>(n & 0xff), pm::usable_size(p));  // all usable bytes are the caller's
      live.emplace_back(p, n);
    }
    for (size_t a = 32; a <= (1 << 16); a *= 2) {
      void* p = pm::alloc_aligned(a, a / 2 + 8);
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % a, 0u) << a;
      memset(p, 1, a / 2 + 8);
      pm::dealloc(p);
    }
    for (auto& [p, n] : live) {
      auto* q = static_cast<unsigned char*>(pm::resize(p, n * 2 + 1));
      ASSERT_NE(q, nullptr);
      EXPECT_EQ(q[n - 1], static_cast<unsigned char>(n & 0xff));
      p = q;
    }
    std::thread([&live] {  // frees from another thread
      for (auto& [p, n] : live) pm::dealloc(p);
    }).join();
    live.clear();
  }
}

TEST_F(Full, OverflowPastUsableSize) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(24));
        p[pm::usable_size(p)] = 'x';
        pm::dealloc(p);
      },
      "poolmalloc: heap overflow: canary after the block was overwritten, block 0x[0-9a-f]+ \\(size class 32 bytes\\)");
}

TEST_F(Full, OverflowOverTheSizeRecord) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(16));
        memset(p + 16, 0, 16);
        pm::dealloc(p);
      },
      "poolmalloc: heap overflow: the size record after the block was overwritten");
}

// realloc names the overflow as free does (it used to say "not allocated
// or already freed").
TEST_F(Full, ReallocOfAnOverflowedBlockNamesTheOverflow) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(16));
        memset(p + 16, 'A', 16);
        (void)pm::resize(p, 64);
      },
      "poolmalloc: heap overflow: the size record after the block was overwritten");
}

TEST_F(Full, WriteAfterFree) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(64));
        pm::dealloc(p);
        p[40] = 1;
        for (int i = 0; i < 10000; ++i) pm::dealloc(pm::alloc(64));  // push it out of quarantine
      },
      "poolmalloc: write after free \\(found when the block left quarantine\\) in block 0x[0-9a-f]+ \\(size class 64 bytes\\)");
}

TEST_F(Full, DoubleFree) {
  EXPECT_DEATH(
      {
        void* p = pm::alloc(100);
        pm::dealloc(p);
        pm::dealloc(p);
      },
      "poolmalloc: double free of 0x[0-9a-f]+ \\(size class 112 bytes\\)");
}

TEST_F(Full, DoubleFreeAcrossThreads) {
  EXPECT_DEATH(
      {
        void* p = pm::alloc(100);
        std::thread([p] { pm::dealloc(p); }).join();
        std::thread([p] { pm::dealloc(p); }).join();
      },
      "poolmalloc: double free of 0x");
}

TEST_F(Full, InteriorFree) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(100));
        pm::dealloc(p + 8);
      },
      "poolmalloc: free of a pointer that was not allocated \\(interior or foreign\\)");
}

TEST_F(Full, ReallocOfFreedBlock) {
  EXPECT_DEATH(
      {
        void* p = pm::alloc(100);
        pm::dealloc(p);
        (void)pm::resize(p, 200);
      },
      "poolmalloc: realloc of a pointer that was not allocated or already freed");
}

TEST_F(Full, LargeOverflowHitsGuardPage) {
  EXPECT_FAULT({
    auto* p = static_cast<volatile char*>(pm::alloc(300000));
    p[300000 + 8] = 'x';
  });
}

// Blocks of a slot (64 KiB) and more come from pools in the default mode;
// in full mode they are guarded mappings, as above: a write a few pages
// past the block's end faults at once, where past a pool block it would
// land in the next block.
TEST_F(Full, BlocksOfASlotOrMoreAreGuardedMappings) {
  for (size_t n : {size_t{65536}, size_t{100000}, pm::kSmallMax}) {
    void* p = pm::alloc(n);
    EXPECT_FALSE(pm::in_segment(p)) << n;
    EXPECT_TRUE(pm::owns(p)) << n;
    pm::dealloc(p);
  }
  EXPECT_FAULT({
    auto* p = static_cast<volatile char*>(pm::alloc(100000));
    size_t end = pm::usable_size(const_cast<char*>(p));
    for (size_t i = end; i < end + 4 * pm::kPageSize; i += pm::kPageSize) p[i] = 'x';
  });
}

TEST_F(Full, LargeOverflowIntoAlignmentGap) {
  EXPECT_DEATH(
      {
        auto* p = static_cast<char*>(pm::alloc(300001));
        p[300001] = 'x';
        pm::dealloc(p);
      },
      "poolmalloc: heap overflow: canary after the block was overwritten, block 0x[0-9a-f]+ \\(size class 300001 bytes\\)");
}

// A small block with a huge alignment: the rear guard follows the block,
// and the canary between them is less than a page, not the alignment.
TEST_F(Full, LargeAlignmentWritesNoMoreThanTheBlock) {
  auto resident_kib = [] {
    FILE* f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f == nullptr || fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = -1;
    if (f != nullptr) fclose(f);
    return rss * static_cast<long>(pm::kPageSize / 1024);
  };
  long before = resident_kib();
  auto* p = static_cast<char*>(pm::alloc_aligned(size_t{1} << 30, 16));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (size_t{1} << 30), 0u);
  memset(p, 7, 16);
  EXPECT_LT(resident_kib() - before, 1024);  // 1 GiB of canary before the fix
  EXPECT_FAULT(static_cast<volatile char*>(p)[16 + pm::kPageSize] = 'x');  // in the rear guard
  pm::dealloc(p);
}

TEST_F(Full, LargeUseAfterFreeFaults) {
  EXPECT_FAULT({
    auto* p = static_cast<volatile char*>(pm::alloc(600000));
    pm::dealloc(const_cast<char*>(p));
    (void)p[1000];
  });
}

// The page below a large block's header page holds its size, read-only: a
// write there faults as one past the block does, and cannot change the
// size that free, realloc and malloc_usable_size go by.
TEST_F(Full, LargeUnderflowBelowTheHeaderPageFaults) {
  for (size_t n : {size_t{300000}, size_t{1} << 20})
    EXPECT_FAULT({
      auto* p = static_cast<volatile char*>(pm::alloc(n));
      uintptr_t header_page = (reinterpret_cast<uintptr_t>(p) - 16) & ~uintptr_t{4095};
      *reinterpret_cast<volatile char*>(header_page - 4096) = 1;
    });
}

// An aligned block of 0 bytes is a live block with usable bytes, as
// malloc(0)'s is, not a pointer onto its rear guard page.
TEST_F(Full, ZeroBytesAtALargeAlignmentIsAUsableBlock) {
  for (size_t align : {size_t{1} << 19, size_t{1} << 20}) {
    auto* p = static_cast<char*>(pm::alloc_aligned(align, 0));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u);
    EXPECT_GE(pm::usable_size(p), 1u);
    EXPECT_TRUE(pm::owns(p));
    p[0] = 1;
    pm::dealloc(p);
  }
}

// A realloc that shrinks when nothing can be mapped keeps its block, as in
// the default mode (full mode moves every block it reallocates, so a
// shrink needs a new one); growing still fails, the block untouched.
// Exits 0 when every step holds.
[[noreturn]] void shrink_with_nothing_to_map() {
  const size_t sizes[3] = {size_t{8} << 20, size_t{300000}, size_t{3000}};
  char* blocks[3];
  for (int i = 0; i < 3; ++i) {
    blocks[i] = static_cast<char*>(pm::alloc(sizes[i]));
    if (blocks[i] == nullptr) _exit(2);
    memset(blocks[i], 'a' + i, sizes[i]);
  }
  pm::os::inject_map_failures(1000000);
  errno = 0;
  for (int i = 0; i < 3; ++i) {
    auto* q = static_cast<char*>(pm::resize(blocks[i], sizes[i] / 4));  // moved, or kept
    if (q == nullptr || errno != 0 || q[0] != 'a' + i || q[sizes[i] / 4 - 1] != 'a' + i) _exit(3 + i);
    blocks[i] = q;
  }
  if (pm::resize(blocks[2], size_t{64} << 20) != nullptr || errno != ENOMEM) _exit(6);
  pm::os::inject_map_failures(0);
  _exit(0);
}

TEST_F(Full, ShrinkingReallocKeepsTheBlockWhenNothingCanBeMapped) {
  EXPECT_EXIT(shrink_with_nothing_to_map(), ::testing::ExitedWithCode(0), "");
}

// Address space of the process, from /proc/self/status (VmSize), in KiB.
long vm_size_kib() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strncmp(line, "VmSize:", 7) == 0) kib = std::strtol(line + 7, nullptr, 10);
  std::fclose(f);
  return kib;
}

// Freed large blocks stay mapped, inaccessible, for a while; no more than
// 256 MiB of them: a program that frees its large blocks does not grow.
TEST_F(Full, QuarantineOfLargeBlocksIsBoundedInBytes) {
  const size_t n = size_t{64} << 20;
  pm::dealloc(pm::alloc(n));
  const long before = vm_size_kib();
  ASSERT_GT(before, 0);
  for (int i = 0; i < 24; ++i) {
    auto* p = static_cast<char*>(pm::alloc(n));
    ASSERT_NE(p, nullptr);
    p[0] = 1;
    p[n - 1] = 2;
    pm::dealloc(p);
  }
  const long grown = vm_size_kib() - before;
  EXPECT_LE(grown, (256 + 64) << 10) << "KiB of address space kept by 24 freed blocks of 64 MiB";
}

// Lowers the address-space limit to what the process has mapped now and
// `room` bytes more.
bool limit_address_space(size_t room) {
  const long vm = vm_size_kib();
  if (vm <= 0) return false;
  rlimit lim{};
  lim.rlim_cur = lim.rlim_max = static_cast<rlim_t>(vm) * 1024 + room;
  return setrlimit(RLIMIT_AS, &lim) == 0;
}

// A large request that finds no address space gives the quarantine back and
// tries again; so does a small one whose pool needs a new segment. Exits 0
// when every step holds.
[[noreturn]] void map_failure_takes_the_quarantine_back() {
  for (int i = 0; i < 3; ++i) pm::dealloc(pm::alloc(size_t{8} << 20));  // quarantined
  pm::os::inject_map_failures(1);
  errno = 0;
  void* p = pm::alloc(size_t{8} << 20);
  if (p == nullptr) _exit(3);
  if (errno != 0) _exit(4);
  pm::dealloc(p);
  // A process under an address-space limit that holds one large block at a
  // time: the freed ones must not use up the limit.
  const size_t big = size_t{192} << 20;
  if (!limit_address_space(size_t{512} << 20)) _exit(2);
  for (int i = 0; i < 10; ++i) {
    auto* q = static_cast<char*>(pm::alloc(big));
    if (q == nullptr) _exit(10 + i);
    q[0] = 1;
    pm::dealloc(q);
  }
  // Small blocks that need more new segments than the limit leaves beside
  // the quarantined block: its room is taken back for them.
  pm::dealloc(pm::alloc(big));
  if (!limit_address_space(size_t{64} << 20)) _exit(2);
  std::vector<void*> small;
  small.reserve((size_t{128} << 20) / 3000 + 1);
  errno = 0;
  for (size_t total = 0; total < (size_t{128} << 20); total += 3000) {
    void* q = pm::alloc(3000);
    if (q == nullptr) _exit(5);
    if (errno != 0) _exit(6);  // a request that succeeds leaves errno alone, also on its retry
    small.push_back(q);
  }
  for (void* q : small) pm::dealloc(q);
  _exit(0);
}

TEST_F(Full, MapFailureTakesTheQuarantineBack) {
  EXPECT_EXIT(map_failure_takes_the_quarantine_back(), ::testing::ExitedWithCode(0), "");
}

TEST_F(Full, LargeDoubleFree) {
  EXPECT_DEATH(
      {
        void* p = pm::alloc(600000);
        pm::dealloc(p);
        pm::dealloc(p);
      },
      "poolmalloc: double free of 0x");
}

// The statistics (and so the leak summary at exit) count what the program
// asked for: each request in its own class, each free when it is made,
// though its block waits in quarantine and came from a larger class.
TEST_F(Full, StatisticsCountTheProgramsRequestsAndFrees) {
  const unsigned cls = pm::class_of(40);
  pm::Stats before{}, after{};
  pm::stats_collect(&before);
  std::vector<void*> kept;
  for (int i = 0; i < 100; ++i) kept.push_back(pm::alloc(40));
  for (int i = 0; i < 30; ++i) pm::dealloc(kept[static_cast<size_t>(i)]);
  void* big = pm::alloc(1 << 20);
  void* gone = pm::alloc(300000);
  pm::dealloc(gone);
  pm::stats_collect(&after);
  EXPECT_EQ(after.cls[cls].allocs - before.cls[cls].allocs, 100u);
  EXPECT_EQ(after.cls[cls].frees - before.cls[cls].frees, 30u);
  EXPECT_EQ(after.cls[cls].live_blocks - before.cls[cls].live_blocks, 70u);
  EXPECT_EQ(after.large.allocs - before.large.allocs, 2u);
  EXPECT_EQ(after.large.frees - before.large.frees, 1u);
  EXPECT_EQ(after.large.live_blocks - before.large.live_blocks, 1u);
  EXPECT_GE(after.large.live_bytes - before.large.live_bytes, size_t{1} << 20);
  EXPECT_LT(after.large.live_bytes - before.large.live_bytes, (size_t{1} << 20) + 4096);
  for (size_t i = 30; i < kept.size(); ++i) pm::dealloc(kept[i]);
  pm::dealloc(big);
  pm::stats_collect(&after);
  EXPECT_EQ(after.cls[cls].live_blocks, before.cls[cls].live_blocks);
  EXPECT_EQ(after.large.live_blocks, before.large.live_blocks);
  EXPECT_EQ(after.large.live_bytes, before.large.live_bytes);
}

}  // namespace
