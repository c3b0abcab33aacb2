/* A library that allocates blocks in its constructor and frees them in its
 * destructor, as C++ libraries do with their static objects: at exit, the
 * blocks are freed after the program's own handlers. */
#include <stdlib.h>

enum { kBlocks = 7 };
static void* g_blocks[kBlocks];

__attribute__((constructor)) static void take(void) {
  for (int i = 0; i < kBlocks; ++i) g_blocks[i] = malloc(500);
}

__attribute__((destructor)) static void give_back(void) {
  for (int i = 0; i < kBlocks; ++i) free(g_blocks[i]);
}

int exit_free_blocks(void) { return kBlocks; }
