/* Reads poolmalloc's statistics from a C program linked with -lpoolmalloc
 * (malloc is poolmalloc's), prints them, and returns memory to the OS. */
#include <poolmalloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
  enum { kBlocks = 1000 };
  static void* blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) blocks[i] = malloc(48);
  for (int i = 0; i < kBlocks; i += 2) free(blocks[i]);

  poolmalloc_stats s;
  if (poolmalloc_stats_get(&s) != 0) return 1;
  uint64_t live48 = 0;
  for (uint32_t c = 0; c < s.num_classes; ++c)
    if (s.classes[c].block_size == 48) live48 = s.classes[c].live_blocks;
  printf("poolmalloc %s: %llu live blocks of 48 bytes, %llu bytes live in all\n", poolmalloc_version(),
         (unsigned long long)live48, (unsigned long long)s.live_bytes);
  if (live48 < kBlocks / 2) return 1; /* malloc did not go through poolmalloc */

  for (int i = 1; i < kBlocks; i += 2) free(blocks[i]);
  fflush(stdout);
  poolmalloc_stats_print(STDOUT_FILENO, POOLMALLOC_FORMAT_TEXT);
  printf("purged %zu bytes\n", poolmalloc_purge());
  return 0;
}
