/* Threads whose pthread key destructors allocate or free after the
 * allocator's own destructor has torn their heap down, in every round glibc
 * runs them (PTHREAD_DESTRUCTOR_ITERATIONS), the last one included: no heap
 * may be left behind once the threads are gone. glibc runs no further round
 * for a heap set up in the last one, so the allocator's destructor never
 * tears it down: a request after the heap's teardown is served by a heap
 * given up at once, and the background purger gives up the heaps of
 * threads that have ended.
 *   late_destructors alloc   the destructor allocates in every round
 *   late_destructors free    a thread that never allocated frees blocks
 *                            (allocated by main) in the last round only
 *   late_destructors first   a thread that never allocated makes its first
 *                            request in the last round
 * Run under LD_PRELOAD with POOLMALLOC_PURGE_THREAD=1 and a short
 * POOLMALLOC_PURGE_DELAY. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "poolmalloc.h"

enum { kThreads = 40, kFreesPerThread = 8, kSink = kThreads * PTHREAD_DESTRUCTOR_ITERATIONS };

static pthread_key_t g_key;
static int g_free_mode, g_first_mode;
static __thread int t_round;
static void* g_sink[kSink];
static int g_sunk;
static pthread_mutex_t g_sink_lock = PTHREAD_MUTEX_INITIALIZER;
static void* g_to_free[kThreads][kFreesPerThread];

static void destructor(void* arg) {
  ++t_round;
  if (g_first_mode) {
    if (t_round == PTHREAD_DESTRUCTOR_ITERATIONS) {
      void* volatile p = malloc(48);
      free(p);
    }
  } else if (!g_free_mode) {
    void* p = malloc(200);
    if (p == NULL) abort();
    memset(p, 1, 200);
    pthread_mutex_lock(&g_sink_lock);
    g_sink[g_sunk++] = p; /* main frees it */
    pthread_mutex_unlock(&g_sink_lock);
  } else if (t_round == PTHREAD_DESTRUCTOR_ITERATIONS) {
    void** mine = arg;
    for (int i = 0; i < kFreesPerThread; ++i) free(mine[i]);
  }
  pthread_setspecific(g_key, arg); /* another round, up to glibc's limit */
}

static void* thread_main(void* arg) {
  if (!g_free_mode && !g_first_mode) {
    void* volatile p = malloc(32); /* a heap, torn down by the allocator's destructor */
    free(p);
  }
  pthread_setspecific(g_key, arg);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc != 2 || (strcmp(argv[1], "alloc") != 0 && strcmp(argv[1], "free") != 0 && strcmp(argv[1], "first") != 0)) {
    fprintf(stderr, "usage: late_destructors alloc|free|first\n");
    return 2;
  }
  g_free_mode = strcmp(argv[1], "free") == 0;
  g_first_mode = strcmp(argv[1], "first") == 0;
  int (*get)(poolmalloc_stats*) = NULL;
  *(void**)&get = dlsym(RTLD_DEFAULT, "poolmalloc_stats_get");
  if (get == NULL) {
    fprintf(stderr, "late_destructors: not run under libpoolmalloc\n");
    return 2;
  }
  void* volatile first = malloc(1); /* the allocator's key exists before ours */
  free(first);
  if (pthread_key_create(&g_key, destructor) != 0) return 2;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kFreesPerThread; ++i) g_to_free[t][i] = g_free_mode ? malloc(100) : NULL;
    pthread_t th;
    if (pthread_create(&th, NULL, thread_main, g_to_free[t]) != 0) return 2;
    pthread_join(th, NULL);
  }
  for (int i = 0; i < g_sunk; ++i) free(g_sink[i]);
  /* Memory to return, then a request off the fast path: the background
   * purger starts (if the exits above did not start it already). */
  static void* churn[20000];
  for (int i = 0; i < 20000; ++i) churn[i] = malloc(100);
  for (int i = 0; i < 20000; ++i) free(churn[i]);
  void* volatile odd = malloc(5000);
  free(odd);
  poolmalloc_stats s;
  for (int tries = 0;; ++tries) { /* the purger's passes come every half delay */
    if (get(&s) != 0) return 2;
    if (s.threads == 1 || tries == 300) break;
    usleep(10 * 1000);
  }
  printf("%s: %d late blocks, threads with a heap now %llu\n", argv[1], g_free_mode ? kThreads * kFreesPerThread : g_sunk,
         (unsigned long long)s.threads);
  if (!g_free_mode && !g_first_mode && g_sunk != kThreads * PTHREAD_DESTRUCTOR_ITERATIONS) {
    fprintf(stderr, "late_destructors: the destructors ran %d times, not %d\n", g_sunk,
            kThreads * PTHREAD_DESTRUCTOR_ITERATIONS);
    return 1;
  }
  if (s.threads != 1) {
    fprintf(stderr, "late_destructors: %llu heaps left, only main's should be\n", (unsigned long long)s.threads);
    return 1;
  }
  return 0;
}
