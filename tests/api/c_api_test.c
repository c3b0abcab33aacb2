/* The C header from C99 (built with -std=c99 -pedantic and every warning an
 * error): the fixed pools, range allocation and statistics through the
 * shared library, as a C program sees them. Exit status 0 when all hold. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "poolmalloc.h"

static int failures = 0;

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) {                                               \
      fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures;                                                \
    }                                                            \
  } while (0)

static void fixed_pools(void) {
  poolmalloc_fixed_options o = {.block_size = 40, .initial_blocks = 64, .max_blocks = 100, .thread_safe = 1};
  poolmalloc_fixed_pool* pool = poolmalloc_fixed_create(&o);
  poolmalloc_fixed_stats st;
  void* blocks[100];
  int i;
  CHECK(pool != NULL);
  if (pool == NULL) return;
  for (i = 0; i < 100; ++i) {
    blocks[i] = poolmalloc_fixed_alloc(pool);
    CHECK(blocks[i] != NULL);
    CHECK(poolmalloc_fixed_owns(pool, blocks[i]));
    memset(blocks[i], i, 40);
  }
  errno = 0;
  CHECK(poolmalloc_fixed_alloc(pool) == NULL); /* at the cap */
  CHECK(errno == ENOMEM);
  poolmalloc_fixed_get_stats(pool, &st);
  CHECK(st.block_size == 48);
  CHECK(st.in_use == 100 && st.peak_in_use == 100 && st.failures == 1);
  CHECK(st.capacity == 100 && st.max_blocks == 100);
  poolmalloc_fixed_free(pool, blocks[7]);
  CHECK(poolmalloc_fixed_alloc(pool) == blocks[7]); /* the freed block first */
  for (i = 0; i < 100; ++i) poolmalloc_fixed_free(pool, blocks[i]);
  poolmalloc_fixed_get_stats(pool, &st);
  CHECK(st.in_use == 0);
  poolmalloc_fixed_destroy(pool);

  memset(&o, 0, sizeof o);
  errno = 0;
  CHECK(poolmalloc_fixed_create(&o) == NULL); /* block_size 0 */
  CHECK(errno == EINVAL);
  o.block_size = 9;
  o.align = 1; /* counts as 8: a block of 9 bytes takes 16 */
  pool = poolmalloc_fixed_create(&o);
  CHECK(pool != NULL);
  if (pool == NULL) return;
  poolmalloc_fixed_get_stats(pool, &st);
  CHECK(st.block_size == 16);
  poolmalloc_fixed_destroy(pool);
}

static void ranges(void) {
  poolmalloc_allocation a = poolmalloc_alloc_at_least(100);
  poolmalloc_allocation r = poolmalloc_alloc_range(1000, 1100);
  poolmalloc_allocation n;
  CHECK(a.ptr != NULL && a.size == 112);
  CHECK(r.ptr != NULL && r.size == 1024);
  errno = 0;
  n = poolmalloc_alloc_range(17, 20);
  CHECK(n.ptr == NULL && n.size == 0 && errno == EINVAL);
  /* Near SIZE_MAX: no block size in the range is EINVAL, one too large to map ENOMEM. */
  errno = 0;
  n = poolmalloc_alloc_range(SIZE_MAX - 8000, SIZE_MAX - 7000);
  CHECK(n.ptr == NULL && errno == EINVAL);
  errno = 0;
  n = poolmalloc_alloc_range(SIZE_MAX - 100, SIZE_MAX - 50);
  CHECK(n.ptr == NULL && errno == EINVAL);
  errno = 0;
  n = poolmalloc_alloc_range(SIZE_MAX - 8190, SIZE_MAX - 4000); /* holds SIZE_MAX - 4111 */
  CHECK(n.ptr == NULL && errno == ENOMEM);
  errno = 0;
  CHECK(poolmalloc_aligned_alloc(3, 10) == NULL && errno == EINVAL);
  errno = 0;
  CHECK(poolmalloc_aligned_alloc(0, 10) == NULL && errno == EINVAL);
  poolmalloc_free(a.ptr);
  poolmalloc_free(r.ptr);
}

static void statistics(void) {
  poolmalloc_stats s;
  CHECK(poolmalloc_stats_get(&s) == 0);
  CHECK(s.num_classes > 0 && s.num_classes <= POOLMALLOC_MAX_CLASSES);
  CHECK(s.small_max == 262144);
  CHECK(poolmalloc_stats_get(NULL) == -1);
  {
    /* To a pipe with no reader: -1, and no SIGPIPE to end the program. */
    int fds[2];
    CHECK(pipe(fds) == 0);
    close(fds[0]);
    CHECK(poolmalloc_stats_print(fds[1], POOLMALLOC_FORMAT_TEXT) == -1);
    close(fds[1]);
  }
  CHECK(poolmalloc_version_number() == POOLMALLOC_VERSION_NUMBER);
  CHECK(strcmp(poolmalloc_version(), POOLMALLOC_VERSION_STRING) == 0);
}

int main(void) {
  fixed_pools();
  ranges();
  statistics();
  if (failures == 0) puts("c api ok");
  return failures == 0 ? 0 : 1;
}
