// Thread and process lifecycle under the preloaded library: the whole
// program, gtest included, allocates through poolmalloc. Run by meson with
// LD_PRELOAD set; argv[1] is the path of the dlalloc test library.
//   PM_THREADS  short-lived threads in ShortLivedThreadsKeepRssFlat (20000)
#include <dirent.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "purger_probe.h"

namespace {

std::string g_dlalloc_path;

size_t rss_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  size_t size = 0, resident = 0;
  if (f != nullptr && fscanf(f, "%zu %zu", &size, &resident) != 2) resident = 0;
  if (f != nullptr) fclose(f);
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

void churn(unsigned seed, int rounds) {
  unsigned x = seed | 1;
  void* held[64] = {};
  for (int i = 0; i < rounds; ++i) {
    x = x * 1103515245u + 12345u;
    unsigned slot = (x >> 8) % 64;
    free(held[slot]);
    size_t n = (x >> 16) % 8 == 0 ? 40000 + (x % 200000) : 1 + (x >> 4) % 2000;
    held[slot] = malloc(n);
    memset(held[slot], 0x3c, n < 64 ? n : 64);
  }
  for (void* p : held) free(p);
}

TEST(Preload, MallocIsPoolmalloc) {
  Dl_info info{};
  void* m = dlsym(RTLD_DEFAULT, "malloc");
  ASSERT_NE(m, nullptr);
  ASSERT_NE(dladdr(m, &info), 0);
  EXPECT_NE(strstr(info.dli_fname, "poolmalloc"), nullptr) << "malloc comes from " << info.dli_fname;
  void* p = malloc(100);
  EXPECT_EQ(malloc_usable_size(p), 112u);  // poolmalloc's class; glibc would say 104
  free(p);
}

// Fork while three threads allocate; each child allocates (small, large,
// in a new thread) and exits cleanly.
TEST(Preload, ForkStormWhileThreadsAllocate) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> busy;
  for (unsigned t = 0; t < 3; ++t)
    busy.emplace_back([&stop, t] {
      while (!stop.load(std::memory_order_relaxed)) churn(t * 7919 + 1, 2000);
    });
  int bad = 0;
  for (int i = 0; i < 300; ++i) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      churn(static_cast<unsigned>(i), 500);
      std::thread child_thread([i] { churn(static_cast<unsigned>(i) + 99, 500); });
      child_thread.join();
      void* big = malloc(3 << 20);
      memset(big, 1, 3 << 20);
      free(big);
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++bad;
  }
  stop = true;
  for (auto& t : busy) t.join();
  EXPECT_EQ(bad, 0);
}

// C++ thread_local destructors run before pthread key destructors, which
// tear down the thread's heap; a key created later runs after that and
// allocates again, in every destructor round glibc makes.
pthread_key_t g_late_key;
std::atomic<int> g_late_rounds{0};
void late_destructor(void* v) {
  char* p = static_cast<char*>(malloc(200));
  memset(p, 9, 200);
  free(p);
  free(v);
  g_late_rounds.fetch_add(1);
  int round = g_late_rounds.load() % 8;  // re-arm a few times
  if (round < 3) pthread_setspecific(g_late_key, malloc(50));
}

struct TlsUser {
  std::vector<std::string> strings;
  ~TlsUser() {
    strings.clear();
    for (int i = 0; i < 100; ++i) strings.push_back(std::string(100 + i, 'x'));  // allocates while dying
  }
};

TEST(Preload, AllocationInThreadDestructorsAfterTeardown) {
  ASSERT_EQ(pthread_key_create(&g_late_key, late_destructor), 0);
  size_t rss_before = 0;
  for (int i = 0; i < 3000; ++i) {
    if (i == 500) rss_before = rss_bytes();
    std::thread([] {
      thread_local TlsUser user;
      user.strings.push_back("alive");
      pthread_setspecific(g_late_key, malloc(50));
    }).join();
  }
  EXPECT_GE(g_late_rounds.load(), 3000);
  EXPECT_LE(rss_bytes(), rss_before + (8u << 20)) << "memory of exited threads was not given back";
  pthread_key_delete(g_late_key);
}

TEST(Preload, ThreadWhoseFirstCallIsFree) {
  std::vector<void*> blocks;
  for (int i = 0; i < 1000; ++i) blocks.push_back(malloc(1 + i * 40));
  for (int t = 0; t < 50; ++t) {
    std::thread([&blocks, t] {
      free(nullptr);
      for (size_t i = static_cast<size_t>(t); i < blocks.size(); i += 50) free(blocks[i]);
      void* p = malloc(77);  // and it can allocate afterwards
      memset(p, 1, 77);
      free(p);
    }).join();
  }
  void* again = malloc(1000);
  EXPECT_NE(again, nullptr);
  free(again);
}

TEST(Preload, DlopenDlcloseOfAllocatingLibrary) {
  ASSERT_FALSE(g_dlalloc_path.empty());
  long expected = 0;
  for (int i = 0; i < 512; ++i) expected += i & 0xff;
  size_t rss_before = 0;
  for (int i = 0; i < 300; ++i) {
    if (i == 50) rss_before = rss_bytes();
    void* h = dlopen(g_dlalloc_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(h, nullptr) << dlerror();
    auto fn = reinterpret_cast<long (*)()>(dlsym(h, "dlalloc_checksum"));
    ASSERT_NE(fn, nullptr);
    EXPECT_EQ(fn(), expected);
    long from_thread = 0;
    std::thread([&] { from_thread = fn(); }).join();
    EXPECT_EQ(from_thread, expected);
    ASSERT_EQ(dlclose(h), 0);
  }
  EXPECT_LE(rss_bytes(), rss_before + (8u << 20));
}

// Many short-lived threads, each leaving one block for the main thread to
// free after it exited: the resident size must stay flat, and so must the
// pool segments kept once free memory is returned (malloc_trim): free pool
// memory waits a purge delay (1 s) for reuse, longer than the test runs.
TEST(Preload, ShortLivedThreadsKeepRssFlat) {
  const char* env = getenv("PM_THREADS");
  const int total = env != nullptr ? atoi(env) : 20000;
  ASSERT_GE(total, 2000);
  const int warmup = 1000;
  size_t rss_warm = 0, arena_warm = 0;
  void* leftover[4] = {};
  for (int i = 0; i < total; i += 4) {
    if (i == warmup) {
      rss_warm = rss_bytes();
      malloc_trim(0);
      arena_warm = mallinfo2().arena;
    }
    std::thread ts[4];
    for (int k = 0; k < 4; ++k)
      ts[k] = std::thread([&leftover, k, i] {
        churn(static_cast<unsigned>(i + k), 64);
        leftover[k] = malloc(16 + static_cast<size_t>(i % 4000));
      });
    for (int k = 0; k < 4; ++k) {
      ts[k].join();
      free(leftover[k]);
    }
  }
  size_t rss_end = rss_bytes();
  malloc_trim(0);
  size_t arena_end = mallinfo2().arena;
  printf("threads %d: rss %zu KiB -> %zu KiB, segments %zu KiB -> %zu KiB\n", total, rss_warm >> 10, rss_end >> 10,
         arena_warm >> 10, arena_end >> 10);
  EXPECT_LE(rss_end, rss_warm + (8u << 20));
  EXPECT_LE(arena_end, arena_warm + (8u << 20));
}

// The background purger starts by default in a threaded program. glibc's
// set*id calls signal every thread and wait for each to switch: the purger,
// which blocks every signal it may block, must still take part.
TEST(Preload, SetuidWithThePurgerRunning) {
  std::thread([] { free(malloc(64)); }).join();  // the program is now threaded
  bool started = false;
  for (int tries = 0; tries < 50 && !started; ++tries) {
    std::vector<void*> v;
    for (int i = 0; i < 20000; ++i) v.push_back(malloc(100));
    for (void* p : v) free(p);
    free(malloc(8u << 20));
    started = purger_present();
    if (!started) usleep(10 * 1000);
  }
  ASSERT_TRUE(started) << "no purger thread appeared";
  EXPECT_EQ(setgid(getgid()), 0);
  EXPECT_EQ(setuid(getuid()), 0);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) g_dlalloc_path = argv[1];
  return RUN_ALL_TESTS();
}
