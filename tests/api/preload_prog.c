/* A small program for the preload tests: `work` allocates in known ways and
 * leaks 10 blocks of 100 bytes and one large block; `info`, `stats` and
 * `mallinfo` call glibc's introspection functions, `trim` malloc_trim; `long` then allocates and
 * frees a large block in each of 2,300 ticks of the profile's clock (a
 * profile with more samples than its table holds). */
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void* blocks[1000];
static void* leaks[11];  /* kept reachable so the compiler cannot drop them */

static void* free_half(void* arg) {
  (void)arg;
  for (int i = 0; i < 1000; i += 2) free(blocks[i]);
  return NULL;
}

static void work(void) {
  for (int i = 0; i < 1000; ++i) blocks[i] = malloc(24 + (size_t)(i % 40) * 20);
  pthread_t t;
  pthread_create(&t, NULL, free_half, NULL);
  pthread_join(t, NULL);
  for (int i = 1; i < 1000; i += 2) free(blocks[i]);
  void* r = NULL;
  for (int i = 1; i <= 50; ++i) r = realloc(r, (size_t)i * 1000);
  free(r);
  free(memset(malloc(600000), 3, 600000)); /* kept in the thread's cache of large blocks: free */
  free(memset(malloc(8 << 20), 4, 8 << 20)); /* kept in the shared cache */
  for (int i = 0; i < 10; ++i) leaks[i] = memset(malloc(100), i, 100);
  leaks[10] = memset(malloc(300000), 1, 300000);
}

/* The allocator's profile clock (CLOCK_MONOTONIC_COARSE) in ms; it moves
 * by the kernel's tick, 1 to 10 ms. */
static long long coarse_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* A large request in each of 2,300 ticks of that clock: with a 1 ms
 * interval, one profile sample each. */
static void long_run(void) {
  const struct timespec pause = {0, 300000};
  long long last = coarse_ms();
  for (int ticks = 0; ticks < 2300;) {
    long long now = coarse_ms();
    if (now != last) {
      free(memset(malloc(1 << 20), 2, 64));
      last = now;
      ++ticks;
    }
    nanosleep(&pause, NULL);
  }
}

int main(int argc, char** argv) {
  const char* mode = argc > 1 ? argv[1] : "work";
  work();
  if (strcmp(mode, "info") == 0) return malloc_info(0, stdout) == 0 ? 0 : 1;
  if (strcmp(mode, "stats") == 0) malloc_stats();
  if (strcmp(mode, "long") == 0) long_run();
  if (strcmp(mode, "trim") == 0) malloc_trim(0);
  if (strcmp(mode, "mallinfo") == 0) {
    struct mallinfo2 m = mallinfo2();
    printf("uordblks %zu hblks %zu hblkhd %zu arena %zu fordblks %zu\n", m.uordblks, m.hblks, m.hblkhd, m.arena,
           m.fordblks);
  }
  return argc > 2 ? atoi(argv[2]) : 0;
}
