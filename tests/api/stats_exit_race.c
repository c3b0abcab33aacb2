/* The statistics read while threads exit: short-lived threads free blocks
 * of the main thread and exit while it allocates them again and another
 * thread reads the statistics. The program never holds more than HELD
 * blocks of the class, so neither the live count a read gives nor the peak
 * may pass it. (A thread that exited between the read of the retired
 * threads' counters and the walk of the live ones was missed whole: its
 * frees went with it and the main thread's requests stayed, up to SLICE
 * blocks too many, and the peak kept them.) Exit status 1 on a failure. */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "poolmalloc.h"

enum { HELD = 4000, SLICE = 2000, ROUNDS = 3000, PASSES = 6, SIZE = 1500 };

static void* blocks[HELD];
static sem_t freed;
static atomic_int stop;
static uint64_t seen;
static unsigned cls;

static void* worker(void* arg) {
  void** slice = arg;
  free(malloc(8)); /* a heap of its own */
  for (int i = 0; i < SLICE; ++i) free(slice[i]);
  sem_post(&freed);
  return NULL; /* and exits while the main thread allocates */
}

static void* reader(void* arg) {
  (void)arg;
  static poolmalloc_stats s;
  while (!atomic_load(&stop)) {
    if (poolmalloc_stats_get(&s) != 0) abort();
    if (s.classes[cls].live_blocks > seen) seen = s.classes[cls].live_blocks;
  }
  return NULL;
}

int main(void) {
  static poolmalloc_stats s;
  if (poolmalloc_stats_get(&s) != 0) return 2;
  while (cls < s.num_classes && s.classes[cls].block_size < SIZE) ++cls;
  const uint64_t base = s.classes[cls].live_blocks;
  sem_init(&freed, 0, 0);
  for (int i = 0; i < HELD; ++i) blocks[i] = malloc(SIZE);
  for (int pass = 0; pass < PASSES; ++pass) {
    pthread_t r;
    atomic_store(&stop, 0);
    pthread_create(&r, NULL, reader, NULL);
    for (int round = 0; round < ROUNDS; ++round) {
      void** slice = blocks + (round % (HELD / SLICE)) * SLICE;
      pthread_t w;
      if (pthread_create(&w, NULL, worker, slice) != 0) return 2;
      pthread_detach(w);
      while (sem_wait(&freed) != 0) continue;
      for (int i = 0; i < SLICE; ++i) slice[i] = malloc(SIZE);
    }
    atomic_store(&stop, 1);
    pthread_join(r, NULL);
  }
  poolmalloc_stats_get(&s);
  printf("class of %lu bytes: %d held, at most %lu live seen, %lu live at the end, peak %lu\n",
         (unsigned long)s.classes[cls].block_size, HELD, (unsigned long)(seen - base),
         (unsigned long)(s.classes[cls].live_blocks - base), (unsigned long)(s.classes[cls].peak_live_blocks - base));
  int ok = seen <= base + HELD && s.classes[cls].live_blocks == base + HELD &&
           s.classes[cls].peak_live_blocks <= base + HELD;
  for (int i = 0; i < HELD; ++i) free(blocks[i]);
  return ok ? 0 : 1;
}
