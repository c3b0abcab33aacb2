/* A thread makes its first allocation in a vfork child, as code that builds
 * an argument vector before exec does. The child runs on the thread's memory
 * and thread-local storage, so the heap it sets up is the thread's own from
 * then on, but it was set up under the child's thread id. Once the child has
 * ended, the purger, which gives up the heaps of threads that no longer
 * exist, must not take that id for the thread's and give up a heap the
 * thread still uses (another thread would then be handed it too). Run under
 * LD_PRELOAD with POOLMALLOC_PURGE_THREAD=1 and a short POOLMALLOC_PURGE_DELAY. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "poolmalloc.h"

enum { kBlocks = 256, kSize = 48 };

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_step; /* 1: the worker has its heap; 2: main has looked */

static void wait_step(int step) {
  pthread_mutex_lock(&g_lock);
  while (g_step < step) pthread_cond_wait(&g_cond, &g_lock);
  pthread_mutex_unlock(&g_lock);
}

static void set_step(int step) {
  pthread_mutex_lock(&g_lock);
  g_step = step;
  pthread_cond_broadcast(&g_cond);
  pthread_mutex_unlock(&g_lock);
}

/* Threads that allocate and end: each end wakes the purger for a pass, and
 * each takes a heap that ended threads gave up. */
static void* short_lived(void* arg) {
  (void)arg;
  unsigned char* p[64];
  for (int i = 0; i < 64; ++i) {
    p[i] = malloc(kSize);
    if (p[i] == NULL) abort();
    memset(p[i], 0xee, kSize);
  }
  for (int i = 0; i < 64; ++i) free(p[i]);
  return NULL;
}

static int run_short_lived(int count) {
  for (int i = 0; i < count; ++i) {
    pthread_t t;
    if (pthread_create(&t, NULL, short_lived, NULL) != 0) return -1;
    pthread_join(t, NULL);
    usleep(5000);
  }
  return 0;
}

static int g_worker_status;

static void* worker(void* arg) {
  (void)arg;
  pid_t pid = vfork();
  if (pid < 0) {
    g_worker_status = 2;
    set_step(1);
    return NULL;
  }
  if (pid == 0) {
    char* s = strdup("first allocation of the thread");
    free(s);
    _exit(s == NULL ? 1 : 0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    g_worker_status = 2;
    set_step(1);
    return NULL;
  }
  static unsigned char* blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    blocks[i] = malloc(kSize);
    if (blocks[i] == NULL) abort();
    memset(blocks[i], i, kSize);
  }
  set_step(1);
  wait_step(2);
  /* The blocks are intact and the pools still this thread's to use. */
  for (long round = 0; round < 20000; ++round) {
    int i = (int)(round % kBlocks);
    for (int k = 0; k < kSize; ++k)
      if (blocks[i][k] != (unsigned char)i) {
        fprintf(stderr, "vfork_first_alloc: block %p changed under its thread\n", (void*)blocks[i]);
        g_worker_status = 1;
        return NULL;
      }
    free(blocks[i]);
    blocks[i] = malloc(kSize);
    if (blocks[i] == NULL) abort();
    memset(blocks[i], i, kSize);
  }
  for (int i = 0; i < kBlocks; ++i) free(blocks[i]);
  return NULL;
}

int main(void) {
  int (*get)(poolmalloc_stats*) = NULL;
  *(void**)&get = dlsym(RTLD_DEFAULT, "poolmalloc_stats_get");
  if (get == NULL) {
    fprintf(stderr, "vfork_first_alloc: poolmalloc is not preloaded\n");
    return 2;
  }
  void* volatile p = malloc(100); /* main has a heap */
  free(p);
  if (run_short_lived(1) != 0) return 2; /* a second thread that allocated: the purger starts */
  pthread_t w;
  if (pthread_create(&w, NULL, worker, NULL) != 0) return 2;
  wait_step(1);
  if (g_worker_status != 0) return g_worker_status;
  /* Purger passes (10 ms apart at the test's delay), and threads that take
   * heaps given up by others, while the worker holds its blocks. */
  if (run_short_lived(60) != 0) return 2;
  poolmalloc_stats s;
  if (get(&s) != 0) return 2;
  set_step(2);
  if (run_short_lived(20) != 0) return 2;
  pthread_join(w, NULL);
  if (s.threads != 2) {
    fprintf(stderr, "vfork_first_alloc: %llu threads with a heap, 2 expected (main and the worker)\n",
            (unsigned long long)s.threads);
    return 1;
  }
  if (g_worker_status != 0) return g_worker_status;
  printf("vfork_first_alloc: the worker kept its heap\n");
  return 0;
}
