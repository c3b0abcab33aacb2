/* A vfork child whose allocation leaves the fast path while the background
 * purger is wanted must not start it: the thread would belong to the child,
 * die at its exit, and leave the parent believing that a purger runs, so
 * that nothing it frees afterwards would go back to the OS while it is
 * idle. The parent's own next slow path starts the purger, which empties
 * the cache of freed large blocks within the purge delay. Run under
 * LD_PRELOAD with POOLMALLOC_PURGE_DELAY=100. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "poolmalloc.h"

static int g_pipe[2];

static void* waiter(void* arg) {
  (void)arg;
  char c;
  if (read(g_pipe[0], &c, 1) != 1) return NULL;
  return NULL;
}

int main(void) {
  int (*get)(poolmalloc_stats*) = NULL;
  *(void**)&get = dlsym(RTLD_DEFAULT, "poolmalloc_stats_get");
  if (get == NULL || pipe(g_pipe) != 0) return 2;
  pthread_t t;
  if (pthread_create(&t, NULL, waiter, NULL) != 0) return 2; /* a threaded program */
  void* volatile p = malloc(64);
  free(p);
  char* big = malloc(400000);
  if (big == NULL) return 2;
  memset(big, 1, 400000);
  free(big); /* a cached large mapping: the purger is wanted */
  pid_t pid = vfork();
  if (pid < 0) return 2;
  if (pid == 0) {
    void* volatile c = malloc(3000); /* a class not used before: the slow path */
    free(c);
    _exit(0);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 2;
  void* volatile q = malloc(5000); /* the parent's own slow path */
  free(q);
  poolmalloc_stats s;
  for (int i = 0; i < 50; ++i) {
    if (get(&s) != 0) return 2;
    if (s.large_cached_bytes == 0) break;
    usleep(100000);
  }
  if (write(g_pipe[1], "x", 1) != 1) return 2;
  pthread_join(t, NULL);
  if (s.large_cached_bytes != 0) {
    fprintf(stderr, "vfork_purger: %llu bytes of freed large blocks still cached after 5 s\n",
            (unsigned long long)s.large_cached_bytes);
    return 1;
  }
  printf("vfork_purger: the parent's purger returned the cached block\n");
  return 0;
}
