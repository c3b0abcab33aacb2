/* Churn of large blocks: LIVE slots, each replaced at random (or in turn
 * with FIFO 1) by a block of LO-HI bytes with every page written. Prints
 * a checksum; time it from outside.
 * Usage: large_churn LO HI LIVE OPERATIONS [FIFO] */
#include <stdio.h>
#include <stdlib.h>

#include "random.h"

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s LO HI LIVE OPERATIONS [FIFO (0/1)]\n", argv[0]);
    return 2;
  }
  size_t lo = strtoul(argv[1], NULL, 0), hi = strtoul(argv[2], NULL, 0);
  int n = atoi(argv[3]);
  long ops = atol(argv[4]);
  int fifo = argc > 5 ? atoi(argv[5]) : 0;
  if (lo == 0 || hi < lo || n <= 0) {
    fprintf(stderr, "%s: 0 < LO <= HI and LIVE > 0\n", argv[0]);
    return 2;
  }
  char** a = calloc((size_t)n, sizeof *a);
  if (a == NULL) return 1;
  unsigned long sum = 0;
  for (long i = 0; i < ops; i++) {
    int k = fifo ? (int)(i % n) : (int)(next_random() % (unsigned)n);
    free(a[k]);
    size_t sz = lo + next_random() % (hi - lo + 1);
    a[k] = malloc(sz);
    if (a[k] == NULL) return 1;
    for (size_t o = 0; o < sz; o += 4096) a[k][o] = 1;
    a[k][sz - 1] = 2;
    sum += (unsigned char)a[k][sz / 2];
  }
  for (int k = 0; k < n; k++) free(a[k]);
  free(a);
  printf("%lu\n", sum);
  return 0;
}
