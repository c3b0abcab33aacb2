/* A program whose main thread leaves by pthread_exit while its workers,
 * which allocate, are still running: it must end with status 0 once the
 * last worker returns, as it does without the library, and not be kept
 * alive by the allocator's background thread. Run under LD_PRELOAD; a hang
 * is caught by the test's timeout. It first waits for the background
 * thread to exist, so that a pass means something. */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "purger_probe.h"

static pthread_barrier_t g_started;

/* malloc then free, which the compiler may not fold away. */
static void churn(size_t n) {
  void* volatile p = malloc(n);
  free(p);
}

static void* worker(void* arg) {
  (void)arg;
  for (int i = 0; i < 100000; ++i) churn(100 + (size_t)(i % 3000));
  pthread_barrier_wait(&g_started);
  usleep(300 * 1000); /* outlive the main thread */
  return NULL;
}

int main(void) {
  enum { kWorkers = 3 };
  pthread_barrier_init(&g_started, NULL, kWorkers + 1);
  pthread_t t[kWorkers];
  for (int i = 0; i < kWorkers; ++i)
    if (pthread_create(&t[i], NULL, worker, NULL) != 0) return 3;
  pthread_barrier_wait(&g_started);
  /* Memory to purge, and an allocation slow path to start the purger. */
  for (int tries = 0; tries < 100 && !purger_present(); ++tries) {
    churn(8u << 20);
    churn(3000 + (size_t)tries * 16);
    usleep(10 * 1000);
  }
  if (!purger_present()) {
    fprintf(stderr, "last_thread_exit: no background purger appeared\n");
    return 2;
  }
  pthread_exit(NULL);
}
