/* Test helper shared by C and C++ tests run under the preloaded library:
 * whether the background purger thread is there. Needs _GNU_SOURCE (gettid). */
#ifndef POOLMALLOC_TESTS_PURGER_PROBE_H
#define POOLMALLOC_TESTS_PURGER_PROBE_H

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* A thread other than the caller that blocks SIGINT, SIGTERM and SIGUSR1,
 * as the background purger does and no thread of this program does. */
static inline int purger_present(void) {
  int found = 0;
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return 0;
  struct dirent* e;
  while ((e = readdir(d)) != NULL) {
    int tid = atoi(e->d_name);
    if (tid <= 0 || tid == gettid()) continue;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", tid);
    FILE* f = fopen(path, "r");
    if (f == NULL) continue;
    unsigned long long blocked = 0;
    while (fgets(line, sizeof line, f) != NULL)
      if (sscanf(line, "SigBlk: %llx", &blocked) == 1) break;
    fclose(f);
    unsigned long long want = (1ull << (SIGINT - 1)) | (1ull << (SIGTERM - 1)) | (1ull << (SIGUSR1 - 1));
    if ((blocked & want) == want) found = 1;
  }
  closedir(d);
  return found;
}

#endif
