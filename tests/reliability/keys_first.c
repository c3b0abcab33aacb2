/* A program that creates more pthread keys than glibc's first-level array
 * holds (32) before its first allocation, so the allocator's own key lands
 * where pthread_setspecific must calloc, and whose key destructors allocate.
 * Run under LD_PRELOAD; exits 0 when every destructor saw its value. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { kKeys = 64, kThreads = 200 };
static pthread_key_t keys[kKeys];
static int destructed[kThreads];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void destroy(void* v) {
  int* id = v;
  char* scratch = malloc(100 + *id % 900); /* allocate in a destructor */
  if (scratch == NULL) abort();
  memset(scratch, 7, 100);
  pthread_mutex_lock(&lock);
  destructed[*id / kKeys]++;
  pthread_mutex_unlock(&lock);
  free(scratch);
  free(id);
}

static void* body(void* arg) {
  int t = (int)(long)arg;
  for (int k = 0; k < kKeys; ++k) {
    int* v = malloc(sizeof *v);
    *v = t * kKeys + k;
    if (pthread_setspecific(keys[k], v) != 0) abort();
  }
  return NULL;
}

int main(void) {
  for (int k = 0; k < kKeys; ++k)
    if (pthread_key_create(&keys[k], destroy) != 0) return 2;
  Dl_info info;
  void* m = dlsym(RTLD_DEFAULT, "malloc");
  if (m == NULL || !dladdr(m, &info) || strstr(info.dli_fname, "poolmalloc") == NULL) {
    fprintf(stderr, "keys_first: malloc is not poolmalloc's\n");
    return 3;
  }
  for (int round = 0; round < kThreads; round += 8) {
    pthread_t th[8];
    for (int i = 0; i < 8; ++i) pthread_create(&th[i], NULL, body, (void*)(long)(round + i));
    for (int i = 0; i < 8; ++i) pthread_join(th[i], NULL);
  }
  for (int t = 0; t < kThreads; ++t)
    if (destructed[t] != kKeys) {
      fprintf(stderr, "keys_first: thread %d ran %d of %d destructors\n", t, destructed[t], kKeys);
      return 1;
    }
  printf("keys_first: %d threads x %d keys, every destructor ran and allocated\n", kThreads, kKeys);
  return 0;
}
