/* Under an address-space limit (ulimit -v), memory the allocator keeps for
 * reuse must not make a request fail that fits once that memory is given
 * back: freed large blocks, which stay mapped in the cache, must make room
 * for small blocks, and the pool segments those leave free for large blocks
 * again. Run under LD_PRELOAD. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

static int failures = 0;
static void expect(int ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "address_limit: FAILED: %s\n", what);
    ++failures;
  }
}

static size_t vm_bytes(void) {
  FILE* f = fopen("/proc/self/statm", "r");
  size_t pages = 0;
  if (f != NULL && fscanf(f, "%zu", &pages) != 1) pages = 0;
  if (f != NULL) fclose(f);
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

enum { kBig = 1 << 20, kMaxBig = 4096, kSmall = 64 };
static void* big[kMaxBig];

/* 1 MiB blocks, one page of each written, until malloc fails. */
static size_t fill_big(void) {
  size_t n = 0;
  while (n < kMaxBig && (big[n] = malloc(kBig)) != NULL) memset(big[n++], 1, 4096);
  return n;
}

/* Freed blocks that could not serve a request alone, and address space the
 * program gave back itself: together they make room, so the request must
 * not fail while the allocator keeps the blocks mapped for reuse. */
static void check_room_from_both(void) {
  enum { kOwn = 20 << 20, kFreed = 30, kAsk = 45 << 20 };
  void* own = mmap(NULL, kOwn, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  expect(own != MAP_FAILED, "the program's own 20 MiB mapping");
  size_t n = fill_big();
  expect(n >= 2 * kFreed, "at least 60 MiB of 1 MiB blocks under the limit");
  for (size_t i = 0; i < 2 * kFreed && i < n; i += 2) {  /* every other block: no two side by side */
    free(big[i]);
    big[i] = NULL;
  }
  if (own != MAP_FAILED) munmap(own, kOwn);
  void* p = malloc(kAsk);
  expect(p != NULL, "45 MiB from 30 MiB of freed blocks and 20 MiB the program unmapped");
  if (p != NULL) memset(p, 2, kAsk);
  free(p);
  for (size_t i = 0; i < n; ++i) free(big[i]);
}

/* A large block grown by realloc a MiB at a time close to the limit: the
 * extra room a growth asks for is a guess, and when the OS refuses it the
 * block must still grow by what the program asked, as far as the limit
 * allows; the block that cannot grow stays as it was. */
static void check_realloc_growth_near_the_limit(void) {
  enum { kStart = 64 << 20, kStep = 1 << 20, kHeadroom = 24 << 20 };
  malloc_trim(0);
  char* p = malloc(kStart);
  expect(p != NULL, "a 64 MiB block");
  if (p == NULL) return;
  memset(p, 7, kStart);
  struct rlimit lim;
  getrlimit(RLIMIT_AS, &lim);
  struct rlimit low = lim;
  low.rlim_cur = vm_bytes() + kHeadroom;
  if (setrlimit(RLIMIT_AS, &low) != 0) return;
  size_t n = kStart;
  for (;;) {
    errno = 0;
    char* q = realloc(p, n + kStep);
    if (q == NULL) {
      expect(errno == ENOMEM, "a refused growth sets ENOMEM");
      expect(p[0] == 7 && p[n - 1] == 7, "a refused growth leaves the block as it was");
      break;
    }
    p = q;
    memset(p + n, 7, kStep);
    n += kStep;
  }
  setrlimit(RLIMIT_AS, &lim);
  printf("address_limit: a 64 MiB block grew to %zu MiB with %d MiB of headroom\n", n >> 20, kHeadroom >> 20);
  expect(n >= kStart + (16 << 20), "a 64 MiB block grows by at least 16 MiB with 24 MiB of headroom");
  free(p);
}

int main(void) {
  Dl_info info;
  void* m = dlsym(RTLD_DEFAULT, "malloc");
  if (m == NULL || !dladdr(m, &info) || strstr(info.dli_fname, "poolmalloc") == NULL) {
    fprintf(stderr, "address_limit: malloc is not poolmalloc's (run under LD_PRELOAD)\n");
    return 3;
  }
  struct rlimit lim;
  getrlimit(RLIMIT_AS, &lim);
  lim.rlim_cur = vm_bytes() + (160u << 20);
  if (setrlimit(RLIMIT_AS, &lim) != 0) return 4;

  size_t nbig = fill_big();
  expect(nbig >= 100, "at least 100 MiB of 1 MiB blocks under the limit");
  for (size_t i = 0; i < nbig; ++i) free(big[i]);

  /* Small blocks, chained through themselves, until malloc fails. */
  void* head = NULL;
  size_t nsmall = 0;
  for (;;) {
    void** b = malloc(kSmall);
    if (b == NULL) break;
    *b = head;
    head = b;
    ++nsmall;
  }
  expect(errno == ENOMEM, "malloc failed with ENOMEM");
  size_t small_mib = nsmall * kSmall >> 20;
  expect(small_mib * 10 >= nbig * 8, "small blocks got at least 80 % of what the large ones had");
  while (head != NULL) {
    void* next = *(void**)head;
    free(head);
    head = next;
  }

  size_t again = fill_big();
  expect(again * 10 >= nbig * 8, "large blocks got at least 80 % of it back after the small ones were freed");
  for (size_t i = 0; i < again; ++i) free(big[i]);
  check_room_from_both();
  check_realloc_growth_near_the_limit();
  printf("address_limit: %zu MiB of large blocks, then %zu MiB of small ones, then %zu MiB of large; %d failures\n",
         nbig, small_mib, again, failures);
  return failures == 0 ? 0 : 1;
}
