/* Buffers grown by appends (string builders, vectors without reserve):
 * BUFFERS of them grown together from START to END bytes by STEP, the last
 * byte written at every step, then freed; REPEAT times. Prints a checksum;
 * time it from outside.
 * Usage: realloc_grow START END STEP REPEAT [BUFFERS (1-16)] */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s START END STEP REPEAT [BUFFERS (1-16)]\n", argv[0]);
    return 2;
  }
  size_t start = strtoul(argv[1], NULL, 0), end = strtoul(argv[2], NULL, 0), step = strtoul(argv[3], NULL, 0);
  long reps = atol(argv[4]);
  int nbuf = argc > 5 ? atoi(argv[5]) : 1;
  if (start == 0 || end < start || step == 0 || nbuf < 1 || nbuf > 16) {
    fprintf(stderr, "%s: 0 < START <= END, STEP > 0, BUFFERS 1-16\n", argv[0]);
    return 2;
  }
  unsigned long sum = 0;
  for (long r = 0; r < reps; r++) {
    char* b[16] = {0};
    size_t last = start;
    for (size_t n = start; n <= end; n += step) {
      for (int k = 0; k < nbuf; k++) {
        char* q = realloc(b[k], n);
        if (q == NULL) return 1;
        b[k] = q;
        b[k][n - 1] = (char)n;
      }
      last = n;
    }
    for (int k = 0; k < nbuf; k++) {
      sum += (unsigned char)b[k][last - 1];
      free(b[k]);
    }
  }
  printf("%lu\n", sum);
  return 0;
}
