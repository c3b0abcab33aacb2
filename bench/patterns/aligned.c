/* Aligned large blocks in a loop: posix_memalign(ALIGN, SIZE), every page
 * written, freed when its slot comes round again (O_DIRECT buffers, SIMD
 * arrays, over-aligned C++ types). Prints a checksum; time it from outside.
 * Usage: aligned ALIGN SIZE ITERATIONS [LIVE (1-64)] */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s ALIGN SIZE ITERATIONS [LIVE (1-64)]\n", argv[0]);
    return 2;
  }
  size_t align = strtoul(argv[1], NULL, 0), size = strtoul(argv[2], NULL, 0);
  long iters = atol(argv[3]);
  int live_count = argc > 4 ? atoi(argv[4]) : 1;
  if (size == 0 || live_count < 1 || live_count > 64) {
    fprintf(stderr, "%s: SIZE must be positive and LIVE 1-64\n", argv[0]);
    return 2;
  }
  void* live[64] = {0};
  unsigned long sum = 0;
  for (long i = 0; i < iters; i++) {
    int k = (int)(i % live_count);
    free(live[k]);
    int err = posix_memalign(&live[k], align, size);
    if (err != 0) {
      fprintf(stderr, "%s: posix_memalign(%zu, %zu) failed: error %d\n", argv[0], align, size, err);
      return 1;
    }
    char* p = live[k];
    for (size_t o = 0; o < size; o += 4096) p[o] = (char)i;
    sum += (unsigned char)p[0];
  }
  for (int k = 0; k < live_count; k++) free(live[k]);
  printf("%lu\n", sum);
  return 0;
}
