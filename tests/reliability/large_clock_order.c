/* Two threads free large blocks at about the same time: thread A reads the
 * clock first but takes the large cache's lock second, after thread B,
 * whose reading is a little later, has cached its block. A's earlier time
 * must not make B's block look freed long ago (an unsigned difference that
 * wraps) and get it unmapped at once: both blocks stay cached for the
 * purge delay. The program interposes clock_gettime (it is linked with
 * -rdynamic) to hold A right after the library reads the time in A's free,
 * and to run B's clock a few milliseconds ahead. Run under LD_PRELOAD. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "poolmalloc.h"

enum { kBlock = 2 << 20 }; /* above the thread caches' largest block */

static __thread int t_hold_next_read;
static __thread long t_ahead_ms;
static sem_t g_a_read_clock, g_b_freed;

int clock_gettime(clockid_t clock, struct timespec* ts) {
  int r = (int)syscall(SYS_clock_gettime, clock, ts);
  if (r == 0 && t_ahead_ms != 0) {
    long ns = ts->tv_nsec + t_ahead_ms * 1000000L;
    ts->tv_sec += ns / 1000000000L;
    ts->tv_nsec = ns % 1000000000L;
  }
  if (t_hold_next_read) {
    t_hold_next_read = 0;
    sem_post(&g_a_read_clock);
    sem_wait(&g_b_freed);
  }
  return r;
}

static char* g_a;
static char* g_b;

static void* thread_a(void* arg) {
  (void)arg;
  t_hold_next_read = 1;
  free(g_a);
  return NULL;
}

static void* thread_b(void* arg) {
  (void)arg;
  sem_wait(&g_a_read_clock);
  t_ahead_ms = 20;
  free(g_b);
  sem_post(&g_b_freed);
  return NULL;
}

int main(void) {
  int (*get)(poolmalloc_stats*) = NULL;
  *(void**)&get = dlsym(RTLD_DEFAULT, "poolmalloc_stats_get");
  if (get == NULL) {
    fprintf(stderr, "large_clock_order: not run under libpoolmalloc\n");
    return 2;
  }
  sem_init(&g_a_read_clock, 0, 0);
  sem_init(&g_b_freed, 0, 0);
  g_a = malloc(kBlock);
  g_b = malloc(kBlock);
  if (g_a == NULL || g_b == NULL) return 2;
  memset(g_a, 1, kBlock);
  memset(g_b, 1, kBlock);
  pthread_t a, b;
  if (pthread_create(&b, NULL, thread_b, NULL) != 0 || pthread_create(&a, NULL, thread_a, NULL) != 0) return 2;
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  poolmalloc_stats s;
  if (get(&s) != 0) return 2;
  printf("cached %llu bytes, mapped %llu\n", (unsigned long long)s.large_cached_bytes,
         (unsigned long long)s.large_mapped_bytes);
  if (s.large_cached_bytes < 2 * (unsigned long long)kBlock) {
    fprintf(stderr, "large_clock_order: a block freed a moment ago was unmapped\n");
    return 1;
  }
  return 0;
}
