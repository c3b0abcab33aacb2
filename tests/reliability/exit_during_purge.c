/* The main thread leaves by pthread_exit while a detached worker allocates
 * and frees, so that the worker's exit (the program's last) often comes
 * while the allocator's background thread is busy returning memory. The
 * process must end with the worker, whatever the purge delay: the
 * background thread may not sleep through that exit. Run many times by
 * exit_during_purge.sh. */
#include <pthread.h>
#include <stdlib.h>

static void* worker(void* arg) {
  (void)arg;
  enum { kBlocks = 5000 };
  static void* blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) blocks[i] = malloc(500);
  for (int i = 0; i < kBlocks; ++i) free(blocks[i]);
  return NULL;
}

int main(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) return 2;
  pthread_detach(t);
  pthread_exit(NULL);
}
