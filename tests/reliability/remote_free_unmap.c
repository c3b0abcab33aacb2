/* A free by a thread that does not own the block's pool publishes the block
 * on the pool's remote stack with one compare-and-swap. From then on, the
 * owner may collect the block, give the emptied pool back and a purge may
 * unmap its segment, whose header holds the pool's descriptor: the freeing
 * thread must not read the pool after its swap. remote_free_unmap.sh runs
 * this program under gdb and holds the freeing thread right after the
 * swap while the owner trims; run alone it only checks that the program
 * works. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "poolmalloc.h"

static void* volatile g_block;

/* The driver's breakpoint: the owner has trimmed. */
__attribute__((noinline)) void owner_trimmed(void) { __asm__ volatile(""); }

static uint64_t segments(void) {
  static int (*get)(poolmalloc_stats*);
  if (get == NULL) *(void**)&get = dlsym(RTLD_DEFAULT, "poolmalloc_stats_get");
  if (get == NULL) {
    fprintf(stderr, "remote_free_unmap: not run under libpoolmalloc\n");
    exit(2);
  }
  poolmalloc_stats s;
  if (get(&s) != 0) exit(2);
  return s.segments;
}

static void* freeing_thread(void* arg) {
  (void)arg;
  while (g_block == NULL) usleep(1000);
  free(g_block);
  printf("freeing thread: done\n");
  return NULL;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  pthread_t t;
  if (pthread_create(&t, NULL, freeing_thread, NULL) != 0) return 2;
  /* Blocks of the largest pool class until one lands in a new segment: its
   * pool is then the only one there. */
  static void* kept[4096];
  size_t n = 0;
  uint64_t before = segments();
  void* p;
  for (;;) {
    p = malloc(250000);
    if (p == NULL || n == sizeof kept / sizeof kept[0]) return 2;
    if (segments() > before) break;
    kept[n++] = p;
  }
  uint64_t with = segments();
  g_block = p;
  sleep(1); /* the freeing thread frees it (under gdb: stops after its swap) */
  malloc_trim(0);
  uint64_t after = segments();
  printf("owner: segments %llu, %llu with the block, %llu after trim\n", (unsigned long long)before,
         (unsigned long long)with, (unsigned long long)after);
  owner_trimmed();
  pthread_join(t, NULL);
  for (size_t i = 0; i < n; ++i) free(kept[i]);
  printf("ok\n");
  return 0;
}
