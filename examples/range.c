/* Allocation that reports the real usable size: at least n bytes, or a size
 * within a range (null when no block size falls in it). */
#include <poolmalloc.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  poolmalloc_allocation a = poolmalloc_alloc_at_least(100);
  printf("asked for 100 bytes, got %zu usable\n", a.size);
  memset(a.ptr, 0, a.size); /* all of it is ours */
  poolmalloc_free(a.ptr);

  poolmalloc_allocation r = poolmalloc_alloc_range(1000, 1100);
  printf("asked for 1000..1100 bytes, got %zu\n", r.size);
  if (r.ptr == NULL || r.size < 1000 || r.size > 1100) return 1;
  poolmalloc_free(r.ptr);

  poolmalloc_allocation none = poolmalloc_alloc_range(17, 20);
  printf("asked for 17..20 bytes: %s\n", none.ptr == NULL ? "no block size in range" : "?");
  return none.ptr == NULL ? 0 : 1;
}
