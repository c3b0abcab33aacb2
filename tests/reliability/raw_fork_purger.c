/* A child made by _Fork (no fork handlers run) is a process of its own,
 * not a vfork child on its parent's memory: the library's note of its
 * process id must not make it take itself for one, or it never starts the
 * background purger (and never slices its waits). The child frees a lot
 * and allocates on: its purger must be running, a second task in the
 * child. Run under LD_PRELOAD with POOLMALLOC_PURGE_THREAD=1. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int tasks(void) {
  DIR* d = opendir("/proc/self/task");
  if (d == NULL) return -1;
  int n = 0;
  for (struct dirent* e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

static int child(void) {
  enum { kBlocks = 20000 };
  static void* blocks[kBlocks];
  for (int round = 0; round < 3; ++round) { /* free pool memory: the purger is wanted */
    for (int i = 0; i < kBlocks; ++i)
      if ((blocks[i] = malloc(2000)) == NULL) return 2;
    for (int i = 0; i < kBlocks; ++i) free(blocks[i]);
  }
  for (int i = 0; i < kBlocks; ++i) /* slow paths of other classes start it */
    if ((blocks[i] = malloc(100 + i % 900)) == NULL) return 2;
  for (int i = 0; i < 50 && tasks() < 2; ++i) usleep(20000);
  int n = tasks();
  for (int i = 0; i < kBlocks; ++i) free(blocks[i]);
  if (n != 2) {
    fprintf(stderr, "raw_fork_purger: %d task(s) in the _Fork child, 2 expected (the purger)\n", n);
    return 1;
  }
  return 0;
}

int main(void) {
  fflush(stdout);
  pid_t pid = _Fork();
  if (pid < 0) return 2;
  if (pid == 0) _exit(child());
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 2;
  if (WEXITSTATUS(status) != 0) return WEXITSTATUS(status);
  printf("raw_fork_purger: the _Fork child runs its purger\n");
  return 0;
}
