/* A program that works in phases (a compiler's functions, a server's
 * requests): each phase allocates COUNT blocks of LO-HI bytes, writes 16
 * bytes of each, then frees them all, oldest first (ORDER 0), newest first
 * (1) or in random order (2). With THREADED 1 the program has a second,
 * idle thread. Prints a checksum; time it from outside.
 * Usage: phases COUNT PHASES LO HI [ORDER [THREADED]] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "random.h"

static void* idle_thread(void* arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s COUNT PHASES LO HI [ORDER (0 fifo, 1 lifo, 2 random) [THREADED (0/1)]]\n", argv[0]);
    return 2;
  }
  long n = atol(argv[1]);
  int phases = atoi(argv[2]);
  size_t lo = strtoul(argv[3], NULL, 0), hi = strtoul(argv[4], NULL, 0);
  int order = argc > 5 ? atoi(argv[5]) : 0;
  int threaded = argc > 6 ? atoi(argv[6]) : 0;
  if (n <= 0 || lo < 16 || hi < lo || order < 0 || order > 2) {
    fprintf(stderr, "%s: COUNT must be positive, 16 <= LO <= HI, ORDER 0-2\n", argv[0]);
    return 2;
  }
  pthread_t t;
  if (threaded && pthread_create(&t, NULL, idle_thread, NULL) != 0) {
    fprintf(stderr, "%s: pthread_create failed\n", argv[0]);
    return 1;
  }
  char** a = malloc((size_t)n * sizeof *a);
  if (a == NULL) return 1;
  unsigned long sum = 0;
  for (int ph = 0; ph < phases; ph++) {
    for (long i = 0; i < n; i++) {
      size_t sz = lo + next_random() % (hi - lo + 1);
      a[i] = malloc(sz);
      if (a[i] == NULL) return 1;
      memset(a[i], (int)i, 16);
    }
    if (order == 2)
      for (long i = n - 1; i > 0; i--) {
        long j = (long)(next_random() % (unsigned long long)(i + 1));
        char* tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
      }
    for (long i = 0; i < n; i++) {
      long k = order == 1 ? n - 1 - i : i;
      sum += (unsigned char)a[k][1];
      free(a[k]);
    }
  }
  free(a);
  printf("%lu\n", sum);
  return 0;
}
