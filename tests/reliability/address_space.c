/* The address space the preloaded library takes in a small program (one
 * malloc and free): what `ulimit -v` counts against the program. It was
 * 45 MB more than glibc's, most of it a flat segment map of 32 MiB; with
 * the map in two levels it is the region's table (8 MiB), one segment
 * (4 MiB) and a few pages. Exit status 0 when VmSize stays under 32 MiB. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  void* volatile p = malloc(100);
  free(p);
  FILE* f = fopen("/proc/self/status", "r");
  if (f == NULL) return 2;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, "VmSize:", 7) == 0) kib = strtol(line + 7, NULL, 10);
  fclose(f);
  printf("VmSize %ld kB\n", kib);
  return kib > 0 && kib < 32 * 1024 ? 0 : 1;
}
