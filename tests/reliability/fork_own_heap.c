/* A process forks after allocating on one thread; the child starts a
 * thread of its own (and so the background purger) and keeps allocating.
 * The purger gives up the heaps of threads that have ended: it must know
 * the forking thread by its id in the child, not the parent's, or it gives
 * up the heap the child's main thread is still using. Run under LD_PRELOAD
 * with POOLMALLOC_PURGE_THREAD=1 and a short POOLMALLOC_PURGE_DELAY. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "poolmalloc.h"

static volatile int g_stop;

static void* churn(void* arg) {
  (void)arg;
  while (!g_stop) {
    void* volatile p = malloc(100);
    free(p);
    usleep(100);
  }
  return NULL;
}

static int child(void) {
  int (*get)(poolmalloc_stats*) = NULL;
  *(void**)&get = dlsym(RTLD_DEFAULT, "poolmalloc_stats_get");
  if (get == NULL) return 2;
  pthread_t t;
  if (pthread_create(&t, NULL, churn, NULL) != 0) return 2;
  static unsigned char* blocks[20000];
  for (int round = 0; round < 20; ++round) { /* many purger passes at a 10 ms delay */
    for (int i = 0; i < 20000; ++i) {
      blocks[i] = malloc(100);
      if (blocks[i] == NULL) return 2;
      memset(blocks[i], round, 100);
    }
    for (int i = 0; i < 20000; ++i) {
      if (blocks[i][99] != (unsigned char)round) return 3;
      free(blocks[i]);
    }
    usleep(20000);
  }
  poolmalloc_stats s;
  if (get(&s) != 0) return 2;
  g_stop = 1;
  pthread_join(t, NULL);
  if (s.threads != 2) {
    fprintf(stderr, "fork_own_heap: %llu threads with a heap in the child, 2 expected\n", (unsigned long long)s.threads);
    return 1;
  }
  return 0;
}

int main(void) {
  void* volatile p = malloc(100); /* the forking thread has a heap */
  free(p);
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) _exit(child());
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 2;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "fork_own_heap: child ended with status %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 1;
  }
  printf("fork_own_heap: the child kept its heap\n");
  return 0;
}
