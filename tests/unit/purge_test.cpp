// Returning memory to the OS: after the purge delay, and with the background
// purger even when the program allocates nothing more.
#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <barrier>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "alloc.h"
#include "config.h"
#include "large.h"
#include "options.h"
#include "purger.h"
#include "segment.h"
#include "size_classes.h"
#include "stats.h"

namespace pm {
namespace {

// The list of blocks lives in memory mapped here, not from the process's
// malloc: in a ThreadSanitizer build that is the tool's allocator, which a
// fork child of a threaded process may find locked for good.
void churn_then_free(size_t blocks, size_t size) {
  size_t bytes = blocks * sizeof(void*);
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) std::abort();
  auto* v = static_cast<void**>(mem);
  for (size_t i = 0; i < blocks; ++i) v[i] = alloc(size);
  for (size_t i = 0; i < blocks; ++i) dealloc(v[i]);
  munmap(mem, bytes);
}

TEST(Purge, DirtyMemoryIsBoundedWithoutThePurger) {
  char e1[] = "POOLMALLOC_PURGE_DELAY=3600000";  // never by age
  char* env[] = {e1, nullptr};
  process_init();  // reads the real environment once; the test's options come after
  options_init(env);  // runs first: no purger thread reads the options yet
  churn_then_free(2000000, 48);  // about 96 MiB of pools
  static_assert(size_t{96} << 20 > kMaxDirtyBytes);
  trim();
  churn_then_free(2000000, 48);
  EXPECT_LE(arena_stats().dirty_bytes, kMaxDirtyBytes);
  // Only the excess went: a phase that frees more than the bound finds the
  // bound's worth still resident when it builds the next (all of it was
  // purged at once, and 96 MiB ended with 32 MiB dirty).
  EXPECT_GE(arena_stats().dirty_bytes, kMaxDirtyBytes * 3 / 4);
}

// With the purger thread running, free memory goes back within the purge
// delay however the program waits: the bound does not apply, and a phase
// that frees more than it keeps all of it resident for the next.
void phases_with_purger_scenario() {
  char e1[] = "POOLMALLOC_PURGE_DELAY=3600000";
  char e2[] = "POOLMALLOC_PURGE_THREAD=1";
  char* env[] = {e1, e2, nullptr};
  process_init();
  options_init(env);
  churn_then_free(20000, 100);  // memory to purge: the next slow path starts the thread
  churn_then_free(20000, 100);
  if (!purger_running()) std::_Exit(81);
  churn_then_free(2000000, 48);  // about 96 MiB of pools
  std::_Exit(arena_stats().dirty_bytes > kMaxDirtyBytes ? 0 : 82);
}

TEST(PurgeThread, WhileItRunsPhasesLargerThanTheBoundStayResident) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(phases_with_purger_scenario(), testing::ExitedWithCode(0), "");
}

TEST(Purge, LargeBlockCacheStaysWithinItsBudget) {
  char e1[] = "POOLMALLOC_LARGE_CACHE=4M";
  char* env[] = {e1, nullptr};
  process_init();
  options_init(env);  // before the purger test: no purger thread reads the options yet
  for (int round = 0; round < 20; ++round) {
    std::vector<void*> v;
    for (size_t n = 70000; n < (size_t{3} << 20); n = n * 3 / 2) v.push_back(alloc(n));
    for (void* p : v) dealloc(p);  // freed neighbours merge in the cache
    LargeStats s = large_stats();
    ASSERT_LE(s.cached_bytes - s.thread_cached_bytes, size_t{4} << 20) << round;  // the shared cache
    ASSERT_LE(s.thread_cached_bytes, options().large_thread_cache) << round;
  }
  LargeStats s = large_stats();
  EXPECT_GT(s.cached_bytes - s.thread_cached_bytes, 0u);
  // No cache at all: a freed block goes back at once, a thread keeps none.
  char e2[] = "POOLMALLOC_LARGE_CACHE=0";
  char* env0[] = {e2, nullptr};
  options_init(env0);
  trim();
  dealloc(alloc(16));
  dealloc(alloc(600000));
  EXPECT_EQ(large_stats().cached_bytes, 0u);
}

TEST(Purge, IdleProgramGetsMemoryBackFromThePurger) {
  char e1[] = "POOLMALLOC_PURGE_THREAD=1", e2[] = "POOLMALLOC_PURGE_DELAY=50";
  char* env[] = {e1, e2, nullptr};
  process_init();  // reads the real environment once; the test's options come after
  options_init(env);
  std::thread([] {}).join();  // a threaded process: the main thread has a cache of large blocks
  std::vector<void*> v;
  for (int i = 0; i < 40000; ++i) v.push_back(alloc(100));
  void* big = alloc(8 << 20);
  void* mid = alloc(600000);  // freed into this thread's own cache of large blocks
  for (void* p : v) dealloc(p);
  dealloc(big);
  dealloc(mid);
  dealloc(alloc(64));  // a slow-path visit starts the purger
  ArenaStats before = arena_stats();
  EXPECT_GT(before.dirty_bytes + large_stats().cached_bytes, 0u);
  EXPECT_GE(large_stats().thread_cached_bytes, 600000u);
  // Idle for eighteen purge delays: pool slots go after one, a thread
  // cache is drained after two purger passes without use, and cached
  // mappings go after ten.
  usleep(900 * 1000);
  EXPECT_EQ(arena_stats().dirty_bytes, 0u);
  EXPECT_EQ(large_stats().thread_cached_bytes, 0u);  // drained from the idle thread's cache
  EXPECT_EQ(large_stats().cached_bytes, 0u);
}

// Threads of this process other than the calling one, with their
// blocked-signal masks.
std::vector<std::pair<int, unsigned long long>> other_threads() {
  std::vector<std::pair<int, unsigned long long>> out;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    int tid = std::atoi(e->d_name);
    if (tid <= 0 || tid == gettid()) continue;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    FILE* f = std::fopen(path, "r");
    if (f == nullptr) continue;
    char line[256];
    unsigned long long mask = 0;
    while (std::fgets(line, sizeof line, f) != nullptr)
      if (std::sscanf(line, "SigBlk: %llx", &mask) == 1) break;
    std::fclose(f);
    out.emplace_back(tid, mask);
  }
  closedir(d);
  return out;
}

bool sig_in(unsigned long long mask, int sig) { return (mask >> (sig - 1)) & 1; }

// The purge a wait makes once it has ended (before the call returns) is
// bounded: at most its budget of pool memory and of cached large blocks,
// the end of a large range when the range is larger; an unbounded one then
// returns the rest. Runs in a fresh process: no purger thread, fixed options.
void bounded_idle_purge_scenario() {
  char e1[] = "POOLMALLOC_PURGE_DELAY=20", e2[] = "POOLMALLOC_PURGE_THREAD=0";
  char* env[] = {e1, e2, nullptr};
  process_init();
  options_init(env);
  churn_then_free(300000, 100);  // about 36 MiB of pools, all free
  void* big = alloc(24 << 20);
  memset(big, 1, 24 << 20);
  dealloc(big);
  usleep(60 * 1000);  // past the purge delay
  const size_t budget = size_t{4} << 20;
  size_t dirty = arena_stats().dirty_bytes, cached = large_stats().cached_bytes;
  if (dirty < 2 * budget || cached < 2 * budget) std::_Exit(30);
  if (!idle_purge(budget)) std::_Exit(31);  // more is left
  size_t dirty2 = arena_stats().dirty_bytes, cached2 = large_stats().cached_bytes;
  if (dirty - dirty2 == 0 || dirty - dirty2 > budget) std::_Exit(32);
  if (cached - cached2 != budget) std::_Exit(33);
  (void)idle_purge();
  if (arena_stats().dirty_bytes != 0 || large_stats().cached_bytes != 0) std::_Exit(34);
  std::_Exit(0);
}

TEST(Purge, AnIdlePurgeStaysWithinItsBudget) {
  EXPECT_EXIT(bounded_idle_purge_scenario(), ::testing::ExitedWithCode(0), "");
}

// The default (auto): a single-threaded program never gets the thread; once
// the program has a thread of its own, the purger starts, runs with signals
// blocked, returns everything idle and then parks until a free wakes it.
// Runs in a fresh process: whether the process has ever had a second thread
// is what is tested.
void auto_purger_scenario() {
  char e1[] = "POOLMALLOC_PURGE_DELAY=40";
  char* env[] = {e1, nullptr};
  process_init();
  options_init(env);
  if (options().purge_thread != PurgeThread::kAuto) std::_Exit(10);
  churn_then_free(40000, 100);
  dealloc(alloc(8 << 20));
  dealloc(alloc(64));
  if (purger_running()) std::_Exit(11);  // still single-threaded
  int joined = 0;
  std::thread([&joined] { joined = gettid(); }).join();
  // A joined thread can stay listed in /proc for a moment after join returns.
  auto listed = [](int tid) {
    for (auto [t, m] : other_threads())
      if (t == tid) return true;
    return false;
  };
  for (int i = 0; i < 200 && listed(joined); ++i) usleep(5 * 1000);
  auto before = other_threads();  // a sanitizer's own threads, if any
  churn_then_free(40000, 100);
  dealloc(alloc(8 << 20));
  if (!purger_running()) std::_Exit(12);
  auto during = other_threads();
  if (during.size() != before.size() + 1) std::_Exit(13);
  for (auto [tid, blocked] : during) {
    bool old = false;
    for (auto [t, m] : before) old = old || t == tid;
    if (!old && !(sig_in(blocked, SIGINT) && sig_in(blocked, SIGTERM) && sig_in(blocked, SIGUSR1) &&
                  sig_in(blocked, SIGCHLD)))
      std::_Exit(14);
  }
  // Idle: the large cache keeps mappings ten delays, so wait well past that.
  for (int i = 0; i < 100 && !purger_parked(); ++i) usleep(20 * 1000);
  if (arena_stats().dirty_bytes != 0 || large_stats().cached_bytes != 0) std::_Exit(15);
  if (!purger_parked()) std::_Exit(16);  // nothing left: the thread waits
  if (other_threads().size() != before.size() + 1) std::_Exit(17);
  // Memory freed with no allocation after it: the free wakes the thread,
  // which returns it and parks again.
  std::vector<void*> v;
  for (int i = 0; i < 40000; ++i) v.push_back(alloc(100));
  void* big = alloc(8 << 20);
  for (int i = 0; i < 50 && !purger_parked(); ++i) usleep(20 * 1000);  // what the allocations left
  if (!purger_parked()) std::_Exit(18);
  for (void* p : v) dealloc(p);
  dealloc(big);
  if (purger_parked()) std::_Exit(19);  // woken by the frees
  for (int i = 0; i < 100 && !purger_parked(); ++i) usleep(20 * 1000);
  if (arena_stats().dirty_bytes != 0 || large_stats().cached_bytes != 0) std::_Exit(24);
  if (!purger_parked()) std::_Exit(25);
  std::_Exit(0);
}

TEST(PurgeThread, AutoStartsOnlyInAThreadedProgramAndParksWhenIdle) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(auto_purger_scenario(), testing::ExitedWithCode(0), "");
}

// The last allocating thread exits and the program then only waits: the
// exit hands the thread's pools back to the arena with no allocation after
// it, so the purger must already be there to return them.
void thread_exit_scenario() {
  char e1[] = "POOLMALLOC_PURGE_DELAY=40";
  char* env[] = {e1, nullptr};
  process_init();
  options_init(env);
  std::thread([] {
    void* p[8];
    for (void*& q : p) q = alloc(200000);  // a pool of eight 208 KiB blocks
    for (void* q : p) dealloc(q);          // the class's current pool keeps them
  }).join();
  for (int i = 0; i < 100 && (arena_stats().dirty_bytes != 0 || arena_stats().pools_in_use != 0); ++i)
    usleep(20 * 1000);
  if (arena_stats().pools_in_use != 0) std::_Exit(70);  // the exit gave the pool back
  if (arena_stats().dirty_bytes != 0) std::_Exit(71);   // and it was returned
  if (!purger_running()) std::_Exit(72);
  std::_Exit(0);
}

TEST(PurgeThread, PoolsFreedByAThreadsExitAreReturnedWithNoAllocationAfter) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(thread_exit_scenario(), testing::ExitedWithCode(0), "");
}

// A program whose last thread leaves by pthread_exit ends, as it does
// without the library: the purger notices it is alone and ends too (a
// process lives as long as any of its threads). Run in a grandchild, which
// the scenario kills after ten seconds if it is still there.
void last_thread_exit_scenario() {
  char e1[] = "POOLMALLOC_PURGE_DELAY=40";
  char* env[] = {e1, nullptr};
  process_init();
  options_init(env);
  pid_t pid = fork();
  if (pid < 0) std::_Exit(80);
  if (pid == 0) {
    // A forked child counts as single-threaded until one of its threads allocates.
    std::thread([] { churn_then_free(20000, 100); }).join();
    if (!purger_running()) std::_Exit(81);
    // The main thread ends alone, as pthread_exit ends it (the raw system
    // call: pthread_exit would unwind through the test framework's frames).
    syscall(SYS_exit, 0);
  }
  int status = 0;
  for (int i = 0; i < 1000; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) std::_Exit(WIFEXITED(status) ? WEXITSTATUS(status) : 82);
    usleep(10 * 1000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  std::_Exit(83);  // still running: kept alive by the purger
}

TEST(PurgeThread, EndsWhenTheProgramsLastThreadExits) {
#ifdef PM_SANITIZER_BUILD
  // A sanitizer runtime cannot start threads after a threaded fork, and
  // runs a thread of its own, which keeps the process alive anyway.
  GTEST_SKIP() << "needs a thread started after fork, and no thread but the program's";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(last_thread_exit_scenario(), testing::ExitedWithCode(0), "");
}

// free never starts the purger thread, however much it leaves to purge:
// glibc frees TLS blocks under its stack-cache lock, which pthread_create
// takes (a purger started from such a free deadlocked CPython's
// test_threading). The next allocation slow path starts it.
void free_never_starts_scenario() {
  char e1[] = "POOLMALLOC_PURGE_THREAD=1";
  char* env[] = {e1, nullptr};
  process_init();
  options_init(env);
  std::vector<void*> v;
  for (int i = 0; i < 40000; ++i) v.push_back(alloc(100));
  void* big = alloc(8 << 20);
  void* mid = alloc(600000);
  if (purger_running()) std::_Exit(40);
  for (void* p : v) dealloc(p);  // whole pools go back to the arena, dirty
  dealloc(big);                  // into the shared cache
  dealloc(mid);                  // into this thread's cache
  if (arena_stats().dirty_bytes == 0 || large_stats().cached_bytes == 0) std::_Exit(41);
  if (purger_running()) std::_Exit(42);
  dealloc(alloc(3000));  // a class not used yet: an allocation slow path
  if (!purger_running()) std::_Exit(43);
  std::_Exit(0);
}

TEST(PurgeThread, FreeNeverStartsIt) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(free_never_starts_scenario(), testing::ExitedWithCode(0), "");
}

// No free is missed by a purger that is parking: two threads free bursts
// of their own blocks at random points of the purger's cycle (some while it
// looks whether anything is left), and each burst's memory must be returned
// without any later allocation. A missed wake leaves it dirty with the
// purger parked, and the wait below runs out.
void park_race_scenario() {
  char e1[] = "POOLMALLOC_PURGE_THREAD=1", e2[] = "POOLMALLOC_PURGE_DELAY=10";
  char* env[] = {e1, e2, nullptr};
  process_init();
  options_init(env);
  churn_then_free(4000, 400);
  dealloc(alloc(3000));  // an allocation slow path with memory to purge: the purger starts
  if (!purger_running()) std::_Exit(59);
  constexpr int kRounds = 60, kBlocks = 3000;  // 400 bytes each: about 20 pools per burst
  std::barrier sync(2);
  auto burst = [&](bool main_thread) {
    unsigned seed = main_thread ? 12345 : 777;
    for (int round = 0; round < kRounds; ++round) {
      std::vector<void*> v;
      for (int i = 0; i < kBlocks; ++i) v.push_back(alloc(400));
      seed = seed * 1103515245 + 12345;
      usleep((seed >> 16) % 12000);  // a random point of the purger's cycle
      sync.arrive_and_wait();
      for (void* p : v) dealloc(p);
      sync.arrive_and_wait();
      if (main_thread) {
        for (int waited = 0; arena_stats().dirty_bytes != 0 && waited < 2000; ++waited) usleep(1000);
        if (arena_stats().dirty_bytes != 0) std::_Exit(60 + (purger_parked() ? 1 : 0));
      }
      sync.arrive_and_wait();
    }
  };
  std::thread other(burst, false);
  burst(true);
  other.join();
  std::_Exit(0);
}

TEST(PurgeThread, NoFreeIsMissedWhileThePurgerParks) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(park_race_scenario(), testing::ExitedWithCode(0), "");
}

// Under a seccomp filter the purger does not call membarrier (a filter may
// kill the process for a call it does not expect): it leaves the idle
// thread's cache of large blocks alone. The filter here kills on
// membarrier, for every thread of the process.
void seccomp_scenario() {
  char e1[] = "POOLMALLOC_PURGE_THREAD=1", e2[] = "POOLMALLOC_PURGE_DELAY=20";
  char* env[] = {e1, e2, nullptr};
  process_init();
  options_init(env);
  std::thread([] {}).join();  // a threaded process: the main thread has a cache of large blocks
  dealloc(alloc(16));
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) std::_Exit(30);
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) std::_Exit(31);
  dealloc(alloc(600000));  // into this thread's cache, then idle
  dealloc(alloc(64));
  usleep(300 * 1000);  // fifteen purge delays: the purger has looked many times
  if (large_stats().thread_cached_bytes == 0) std::_Exit(32);  // drained without the barrier?
  std::_Exit(0);
}

TEST(PurgeThread, UnderASeccompFilterTheIdleThreadsCacheIsLeftAlone) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(seccomp_scenario(), testing::ExitedWithCode(0), "");
}

// A forked child of a threaded program has one thread, although glibc still
// reports it as threaded: it gets no purger until it starts a thread itself.
void fork_child_scenario() {
  char e1[] = "POOLMALLOC_PURGE_DELAY=40";
  char* env[] = {e1, nullptr};
  process_init();
  options_init(env);
  std::thread([] { dealloc(alloc(64)); }).join();
  pid_t pid = fork();
  if (pid < 0) std::_Exit(20);
  if (pid == 0) {
    churn_then_free(40000, 100);
    dealloc(alloc(8 << 20));
    if (purger_running()) std::_Exit(21);
#ifndef PM_SANITIZER_BUILD  // ThreadSanitizer cannot start threads after a threaded fork
    std::thread([] { dealloc(alloc(64)); }).join();
    churn_then_free(40000, 100);
    dealloc(alloc(8 << 20));  // an allocation off the fast path, with memory to purge
    if (!purger_running()) std::_Exit(22);
#endif
    std::_Exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::_Exit(WIFEXITED(status) ? WEXITSTATUS(status) : 23);
}

TEST(PurgeThread, ForkedChildCountsAsSingleThreaded) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(fork_child_scenario(), testing::ExitedWithCode(0), "");
}

void purger_off_scenario() {
  char e1[] = "POOLMALLOC_PURGE_THREAD=0", e2[] = "POOLMALLOC_PURGE_DELAY=40";
  char* env[] = {e1, e2, nullptr};
  process_init();
  options_init(env);
  std::thread([] {}).join();
  churn_then_free(40000, 100);
  dealloc(alloc(8 << 20));
  std::_Exit(purger_running() ? 1 : 0);
}

// Free slots of reserved segments (POOLMALLOC_RESERVE) stay until a trim:
// they leave the purger nothing to do, and it parks.
void reserved_dirty_scenario() {
  char e1[] = "POOLMALLOC_PURGE_DELAY=20";
  char* env[] = {e1, nullptr};
  process_init();
  options_init(env);
  if (arena_reserve(size_t{8} << 20, false) == 0) std::_Exit(10);
  std::thread([] {}).join();  // a threaded program: the purger may start
  churn_then_free(20000, 1000);
  dealloc(alloc(5000));  // a slow path: starts the purger
  if (!purger_running()) std::_Exit(11);
  for (int i = 0; i < 100 && !purger_parked(); ++i) usleep(20 * 1000);
  ArenaStats st = arena_stats();
  if (st.dirty_bytes == 0) std::_Exit(12);  // the test needs dirty reserved slots
  if (st.purgeable_bytes != 0) std::_Exit(13);
  if (!purger_parked()) std::_Exit(14);
  std::_Exit(0);
}

TEST(PurgeThread, ParksWhenOnlyReservedSlotsAreDirty) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(reserved_dirty_scenario(), testing::ExitedWithCode(0), "");
}

// POOLMALLOC_PURGE_DELAY=0: every pool given back is returned at once, also
// when many are given back within one millisecond, and no freed large block
// is kept, by the shared cache or a thread's.
void zero_delay_scenario() {
  char e1[] = "POOLMALLOC_PURGE_DELAY=0";
  char e2[] = "POOLMALLOC_PURGE_THREAD=0";
  char* env[] = {e1, e2, nullptr};
  process_init();
  options_init(env);
  std::vector<void*> v;
  for (int i = 0; i < 200; ++i) v.push_back(alloc(250000));  // 25 pools of eight blocks
  for (void* p : v) dealloc(p);
  if (arena_stats().dirty_bytes != 0) std::_Exit(10);
  dealloc(alloc(8 << 20));
  if (large_stats().cached_bytes != 0) std::_Exit(11);
  std::thread([] { dealloc(alloc(600 << 10)); }).join();  // threaded: a thread cache's size
  dealloc(alloc(600 << 10));
  if (large_stats().cached_bytes != 0) std::_Exit(12);
  std::_Exit(0);
}

TEST(Purge, ZeroDelayReturnsEveryPoolAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(zero_delay_scenario(), testing::ExitedWithCode(0), "");
}

TEST(PurgeThread, OffMeansNever) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(purger_off_scenario(), testing::ExitedWithCode(0), "");
}

// Pages of the given blocks that are resident.
size_t resident_pages(const std::vector<void*>& blocks) {
  size_t n = 0;
  uintptr_t last = 0;
  for (void* b : blocks) {
    uintptr_t page = reinterpret_cast<uintptr_t>(b) & ~uintptr_t{kPageSize - 1};
    if (page == last) continue;
    last = page;
    unsigned char v = 0;
    if (mincore(reinterpret_cast<void*>(page), kPageSize, &v) != 0) std::_Exit(90);
    n += v & 1;
  }
  return n;
}

// A thread allocates 4 MiB of 64-byte blocks and then waits, alive and
// idle, while the main thread frees every one of them into its pools. The
// pools that are then wholly on their remote stacks go back to the OS:
// with `trim`, at malloc_trim; otherwise from the background purger. The
// owner then allocates from its pools again, and the blocks it gets are
// whole and distinct.
void idle_owner_scenario(bool trim_now) {
  char e1[] = "POOLMALLOC_PURGE_THREAD=1", e2[] = "POOLMALLOC_PURGE_DELAY=40";
  char* env[] = {e1, e2, nullptr};
  process_init();
  options_init(env);
  constexpr size_t kBlocks = (size_t{4} << 20) / 64;
  std::vector<void*> blocks(kBlocks);
  std::barrier sync(2);
  int failed = 0;
  std::thread owner([&] {
    for (void*& b : blocks) {
      b = alloc(64);
      std::memset(b, 0x5a, 64);
    }
    sync.arrive_and_wait();  // the main thread frees them
    sync.arrive_and_wait();  // and looks at their pages
    std::vector<void*> again(kBlocks);
    for (size_t i = 0; i < kBlocks; ++i) {
      again[i] = alloc(64);
      std::memset(again[i], static_cast<int>(i), 64);
    }
    for (size_t i = 0; i < kBlocks; ++i)
      if (static_cast<unsigned char*>(again[i])[63] != static_cast<unsigned char>(i)) failed = 1;
    for (void* b : again) dealloc(b);
  });
  sync.arrive_and_wait();
  const size_t pages = resident_pages(blocks);
  if (pages < kBlocks * 64 / kPageSize) std::_Exit(91);
  for (void* b : blocks) dealloc(b);  // remote frees: the owner takes none of them back
  dealloc(alloc(64));  // the freeing thread goes on: its slow path starts the purger
  size_t left = 0;
  if (trim_now) {
    trim();
    left = resident_pages(blocks);
  } else {
    for (int i = 0; i < 200 && (left = resident_pages(blocks)) > pages / 16; ++i) usleep(20 * 1000);
  }
  // The class's current pool may still be carving: it is not wholly free.
  if (left > pages / 16) {
    std::fprintf(stderr, "%zu of %zu pages resident\n", left, pages);
    std::_Exit(92);
  }
  sync.arrive_and_wait();
  owner.join();
  if (failed != 0) std::_Exit(93);
  std::_Exit(0);
}

TEST(PurgeThread, PoolsOtherThreadsFreedWholeGoBackWhileTheirOwnerIsIdle) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(idle_owner_scenario(false), testing::ExitedWithCode(0), "");
}

TEST(Purge, TrimReturnsPoolsOtherThreadsFreedWhole) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(idle_owner_scenario(true), testing::ExitedWithCode(0), "");
}

// Pools of the 64-byte class in use (heaps' lists, current pools).
uint64_t pools_of_64() {
  Stats s;
  stats_collect(&s);
  return s.cls[class_of(64)].pools;
}

// A producer fills pools of one size, moves on to another size and stays
// busy there, while a consumer frees everything it made of the first. A
// pool that the producer took back from the full ones at the consumer's
// first free, before the rest came, sits on the producer's partial list;
// the producer's slow path gives it back once a purge delay has passed,
// with no purger thread to do it. Exits 0 when it holds.
[[noreturn]] void busy_producer_scenario() {
  char e1[] = "POOLMALLOC_PURGE_DELAY=20";
  char e2[] = "POOLMALLOC_PURGE_THREAD=0";
  char* env[] = {e1, e2, nullptr};
  process_init();
  options_init(env);
  const size_t three_pools = size_t{kClasses.capacity[class_of(64)]} * 3;
  std::vector<void*> blocks(three_pools);
  std::barrier sync(2);
  uint64_t before = 0, after = 0;
  std::thread producer([&] {
    for (void*& b : blocks) b = alloc(64);  // two full pools and a current one
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    dealloc(alloc(1000));  // a first request of another class: the slow path takes the first pool back
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    before = pools_of_64();
    usleep(150 * 1000);  // past the purge delay, and the 100 ms that the slow path waits at least
    std::vector<void*> other(4000);
    for (void*& b : other) b = alloc(1000);  // refills of the other class: slow paths
    for (void* b : other) dealloc(b);
    after = pools_of_64();
  });
  sync.arrive_and_wait();
  dealloc(blocks[0]);  // the first pool's first remote free reports it to the producer
  sync.arrive_and_wait();
  sync.arrive_and_wait();
  for (size_t i = 1; i < blocks.size(); ++i) dealloc(blocks[i]);
  sync.arrive_and_wait();
  producer.join();
  if (before < 2) std::_Exit(2);  // the scenario did not leave a partial pool
  if (after > 1) {  // the current pool stays
    std::fprintf(stderr, "%llu pools of 64 bytes left, %llu before\n", static_cast<unsigned long long>(after),
                 static_cast<unsigned long long>(before));
    std::_Exit(1);
  }
  std::_Exit(0);
}

TEST(Purge, PoolsOtherThreadsFreedWholeGoBackWhileTheirOwnerWorksOnOtherSizes) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(busy_producer_scenario(), testing::ExitedWithCode(0), "");
}

// An owner thread allocates 4096 blocks of 64 bytes, the main thread frees
// them all and trims, so that the owner's full pools go back whole; then
// main_after(blocks) runs on the main thread, and owner_after(blocks) on
// the owner once it is done.
template <class MainAfter, class OwnerAfter>
void with_dropped_pools(MainAfter main_after, OwnerAfter owner_after) {
  process_init();
  std::vector<void*> blocks(4096);
  std::barrier sync(2);
  std::thread owner([&] {
    for (void*& b : blocks) b = alloc(64);
    sync.arrive_and_wait();
    sync.arrive_and_wait();
    owner_after(blocks);
  });
  sync.arrive_and_wait();
  for (void* b : blocks) dealloc(b);
  trim();
  main_after(blocks);
  sync.arrive_and_wait();
  owner.join();
}

// A remote free of a block of a pool whose pages went back (every block of
// it was free) is a double free.
TEST(Purge, FreeIntoAPoolReturnedWholeIsADoubleFree) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(with_dropped_pools([](std::vector<void*>& b) { dealloc(b[0]); }, [](std::vector<void*>&) {}),
               "double free");
}

// The owner's current pool, freed whole by another thread, is not dropped
// while it is current: its owner pops its list on the fast path, without
// looking at the stack first, so a block it then freed a second time
// would be handed out at once, unreported (its free tag gone with the
// pool's pages), and again once the pool was carved anew. The second free
// stops the program as it does in a pool that keeps its pages.
TEST(Purge, OwnersFreeIntoItsCurrentPoolFreedWholeIsReported) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const size_t three_pools = size_t{kClasses.capacity[class_of(64)]} * 3;  // the last one current, all carved
  EXPECT_DEATH(
      {
        process_init();
        std::vector<void*> blocks(three_pools);
        std::barrier sync(2);
        std::thread owner([&] {
          for (void*& b : blocks) b = alloc(64);
          sync.arrive_and_wait();
          sync.arrive_and_wait();
          dealloc(blocks.back());  // freed already, by the main thread
          void* q = alloc(64);
          for (size_t i = 0; i < three_pools; ++i)
            if (alloc(64) == q) std::_Exit(3);  // handed out twice
        });
        sync.arrive_and_wait();
        for (void* b : blocks) dealloc(b);
        trim();
        sync.arrive_and_wait();
        owner.join();
      },
      "double free of");
}

// The same block freed again by its pool's owner: its free tag went with
// the pool's pages, and the owner finds the block on its list when it
// takes the dropped pool back (here at its trim).
TEST(Purge, OwnersFreeIntoAPoolReturnedWholeIsADoubleFree) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(with_dropped_pools([](std::vector<void*>&) {},
                                  [](std::vector<void*>& b) {
                                    dealloc(b[0]);
                                    trim();
                                  }),
               "double free into a pool whose blocks were all free");
}

}  // namespace
}  // namespace pm
