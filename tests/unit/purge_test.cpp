// Returning memory to the OS: after the purge delay, and with the background
// purger even when the program allocates nothing more.
#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

#include "alloc.h"
#include "large.h"
#include "options.h"
#include "segment.h"

namespace pm {
namespace {

void churn_then_free(size_t blocks, size_t size) {
  std::vector<void*> v;
  for (size_t i = 0; i < blocks; ++i) v.push_back(alloc(size));
  for (void* p : v) dealloc(p);
}

TEST(Purge, DirtyMemoryIsBoundedWithoutThePurger) {
  char e1[] = "POOLMALLOC_PURGE_DELAY=3600000";  // never by age
  char* env[] = {e1, nullptr};
  process_init();  // reads the real environment once; the test's options come after
  options_init(env);  // runs first: no purger thread reads the options yet
  churn_then_free(2000000, 48);  // about 96 MiB of pools
  trim();
  churn_then_free(2000000, 48);
  EXPECT_LE(arena_stats().dirty_bytes, size_t{16} << 20);
}

TEST(Purge, LargeBlockCacheStaysWithinItsBudget) {
  char e1[] = "POOLMALLOC_LARGE_CACHE=4M";
  char* env[] = {e1, nullptr};
  process_init();
  options_init(env);  // before the purger test: no purger thread reads the options yet
  for (int round = 0; round < 20; ++round) {
    std::vector<void*> v;
    for (size_t n = 40000; n < (size_t{3} << 20); n = n * 3 / 2) v.push_back(alloc(n));
    for (void* p : v) dealloc(p);  // freed neighbours merge in the cache
    ASSERT_LE(large_stats().cached_bytes, size_t{4} << 20) << round;
  }
  EXPECT_GT(large_stats().cached_bytes, 0u);
}

TEST(Purge, IdleProgramGetsMemoryBackFromThePurger) {
  char e1[] = "POOLMALLOC_PURGE_THREAD=1", e2[] = "POOLMALLOC_PURGE_DELAY=50";
  char* env[] = {e1, e2, nullptr};
  process_init();  // reads the real environment once; the test's options come after
  options_init(env);
  // Several threads leave pools behind; the main thread frees the blocks.
  std::vector<void*> v;
  for (int i = 0; i < 40000; ++i) v.push_back(alloc(100));
  void* big = alloc(8 << 20);
  for (void* p : v) dealloc(p);
  dealloc(big);
  dealloc(alloc(64));  // a slow-path visit starts the purger
  ArenaStats before = arena_stats();
  EXPECT_GT(before.dirty_bytes + large_stats().cached_bytes, 0u);
  usleep(600 * 1000);  // idle: twelve purge delays
  EXPECT_EQ(arena_stats().dirty_bytes, 0u);
  EXPECT_EQ(large_stats().cached_bytes, 0u);
}

}  // namespace
}  // namespace pm
