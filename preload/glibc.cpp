// glibc's malloc introspection and tuning calls, answered with poolmalloc's
// own figures.
#include <limits.h>
#include <malloc.h>
#include <stdio.h>

#include "alloc.h"
#include "stats.h"

#define PM_EXPORT __attribute__((visibility("default")))

namespace {

struct Summary {
  size_t arena;      // bytes of pool segments mapped
  size_t in_use;     // bytes of live blocks (small and large)
  size_t free;       // bytes held in pools but not in use
  size_t large_n;    // live large blocks
  size_t large_map;  // bytes mapped for large blocks (live and cached)
  size_t pools;
};

Summary summarize() noexcept {
  static pm::Stats s;  // large: keep it off the stack; callers are not concurrent in practice
  pm::stats_collect(&s);
  Summary r{};
  r.arena = s.arena.reserved;
  r.in_use = s.small_live_bytes + s.large.live_bytes;
  r.free = s.arena.pool_bytes_in_use > s.small_live_bytes ? s.arena.pool_bytes_in_use - s.small_live_bytes : 0;
  r.large_n = s.large.live_blocks;
  r.large_map = s.large.mapped_bytes;
  r.pools = s.arena.pools_in_use;
  return r;
}

int clamp(size_t v) noexcept { return v > INT_MAX ? INT_MAX : static_cast<int>(v); }

}  // namespace

extern "C" {

PM_EXPORT int malloc_trim(size_t) noexcept { return pm::trim() > 0 ? 1 : 0; }

PM_EXPORT struct mallinfo2 mallinfo2() noexcept {
  Summary s = summarize();
  struct mallinfo2 m{};
  m.arena = s.arena;
  m.ordblks = s.pools;
  m.hblks = s.large_n;
  m.hblkhd = s.large_map;
  m.uordblks = s.in_use;
  m.fordblks = s.free;
  return m;
}

PM_EXPORT struct mallinfo mallinfo() noexcept {
  struct mallinfo2 w = mallinfo2();
  struct mallinfo m{};
  m.arena = clamp(w.arena);
  m.ordblks = clamp(w.ordblks);
  m.hblks = clamp(w.hblks);
  m.hblkhd = clamp(w.hblkhd);
  m.uordblks = clamp(w.uordblks);
  m.fordblks = clamp(w.fordblks);
  return m;
}

PM_EXPORT void malloc_stats() noexcept {
  Summary s = summarize();
  fprintf(stderr,
          "poolmalloc:\n"
          "pool segments mapped = %10zu\n"
          "in use (small+large) = %10zu\n"
          "free in pools        = %10zu\n"
          "pools in use         = %10zu\n"
          "large blocks         = %10zu\n"
          "large bytes mapped   = %10zu\n",
          s.arena, s.in_use, s.free, s.pools, s.large_n, s.large_map);
}

PM_EXPORT int malloc_info(int options, FILE* fp) noexcept {
  if (options != 0 || fp == nullptr) {
    errno = EINVAL;
    return -1;
  }
  Summary s = summarize();
  fprintf(fp,
          "<malloc version=\"poolmalloc-1\">\n"
          "<system type=\"current\" size=\"%zu\"/>\n"
          "<total type=\"inuse\" size=\"%zu\"/>\n"
          "<total type=\"free\" size=\"%zu\"/>\n"
          "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n"
          "</malloc>\n",
          s.arena + s.large_map, s.in_use, s.free, s.large_n, s.large_map);
  return 0;
}

// glibc's tuning parameters steer glibc's heap, which is not in use here:
// poolmalloc is tuned through POOLMALLOC_* variables. Known parameters are
// accepted (they cannot change a program's results); unknown ones fail.
PM_EXPORT int mallopt(int param, int) noexcept {
  switch (param) {
    case M_MXFAST: case M_TRIM_THRESHOLD: case M_TOP_PAD: case M_MMAP_THRESHOLD:
    case M_MMAP_MAX: case M_CHECK_ACTION: case M_PERTURB: case M_ARENA_TEST: case M_ARENA_MAX:
      return 1;
    default:
      return 0;
  }
}

}  // extern "C"
