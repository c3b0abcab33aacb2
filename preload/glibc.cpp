// glibc's malloc introspection and tuning calls, answered with poolmalloc's
// own figures.
#include <limits.h>
#include <malloc.h>
#include <stdio.h>

#include "alloc.h"
#include "report.h"
#include "stats.h"
#include "writer.h"

#define PM_EXPORT __attribute__((visibility("default")))

namespace {

int clamp(size_t v) noexcept { return v > INT_MAX ? INT_MAX : static_cast<int>(v); }

void to_file(void* fp, const char* s, size_t n) noexcept { fwrite(s, 1, n, static_cast<FILE*>(fp)); }

// POOLMALLOC_STATS and POOLMALLOC_PROFILE report when the program exits,
// after everything else it runs at exit: the program's own atexit
// handlers and static destructors, and those of every library, which may
// free blocks that would otherwise show as leaks. A handler registered
// for no library (a null DSO handle) while the libraries' constructors
// run comes before the dynamic linker's own handler in exit's list, so it
// runs after it, and so after the libraries' destructors and the C++
// static destructors they registered earlier. The library is never
// unloaded (-z nodelete), so the handler stays callable.
extern "C" int __cxa_atexit(void (*fn)(void*), void* arg, void* dso) noexcept;
constinit bool g_report_registered = false;
void report_last(void*) noexcept { pm::report_at_exit(); }
[[gnu::constructor]] void register_report() noexcept {
  g_report_registered = __cxa_atexit(report_last, nullptr, nullptr) == 0;
}
// Without that handler (no memory for it), at the library's own
// destructor, as a fallback.
[[gnu::destructor]] void report_at_exit() noexcept {
  if (!g_report_registered) pm::report_at_exit();
}

}  // namespace

extern "C" {

PM_EXPORT int malloc_trim(size_t) noexcept { return pm::trim() > 0 ? 1 : 0; }

// glibc's fields, filled with poolmalloc's nearest figures (docs/API.md).
PM_EXPORT struct mallinfo2 mallinfo2() noexcept {
  pm::Stats s;
  pm::stats_collect(&s);
  struct mallinfo2 m{};
  m.arena = s.arena.reserved;          // bytes of pool segments
  m.ordblks = s.arena.pools_in_use;    // pools in use
  m.hblks = s.large.live_blocks;       // large blocks, each its own mapping
  // Mapped bytes of the live large blocks, as in glibc: the cached freed
  // mappings are free memory, not blocks.
  m.hblkhd = s.large.mapped_bytes > s.large.cached_bytes ? s.large.mapped_bytes - s.large.cached_bytes : 0;
  m.usmblks = s.peak_live_bytes;
  // As glibc's, whose readers add uordblks and hblkhd for the heap in use
  // and subtract uordblks from arena for its free part: uordblks counts the
  // live blocks of the arena alone (the small ones), and arena is
  // uordblks + fordblks.
  m.uordblks = s.small_live_bytes < m.arena ? s.small_live_bytes : m.arena;
  m.fordblks = m.arena - m.uordblks;  // free blocks, free slots and headers of the segments
  // Free pool memory a trim would return, part of fordblks.
  m.keepcost = s.arena.dirty_bytes < m.fordblks ? s.arena.dirty_bytes : m.fordblks;
  return m;
}

// mallinfo and glibc's own name for it, __libc_mallinfo.
PM_EXPORT struct mallinfo __libc_mallinfo() noexcept {
  struct mallinfo2 w = mallinfo2();
  struct mallinfo m{};
  m.arena = clamp(w.arena);
  m.ordblks = clamp(w.ordblks);
  m.hblks = clamp(w.hblks);
  m.hblkhd = clamp(w.hblkhd);
  m.usmblks = clamp(w.usmblks);
  m.uordblks = clamp(w.uordblks);
  m.fordblks = clamp(w.fordblks);
  m.keepcost = clamp(w.keepcost);
  return m;
}
PM_EXPORT struct mallinfo mallinfo() noexcept { return __libc_mallinfo(); }

PM_EXPORT void malloc_stats() noexcept {
  pm::Stats s;
  pm::stats_collect(&s);
  fflush(stderr);  // keep the program's buffered output in order
  pm::Writer w(2);
  pm::report_text(w, s, false);
}

// glibc returns EINVAL itself for options other than 0 (not -1 with errno,
// as its manual page says), errno untouched; a null stream, which glibc
// would write through, fails the same way.
PM_EXPORT int malloc_info(int options, FILE* fp) noexcept {
  if (options != 0 || fp == nullptr) return EINVAL;
  pm::Stats s;
  pm::stats_collect(&s);
  pm::Writer w(to_file, fp);
  pm::report_xml(w, s);
  return 0;
}

// glibc's tuning parameters steer glibc's heap, which is not in use here:
// poolmalloc is tuned through POOLMALLOC_* variables. The result is glibc
// 2.36's, which a program may test: 1 for every parameter, known or not
// (M_NLBLKS, M_GRAIN and M_KEEP of <malloc.h> are ignored there too),
// except M_MXFAST outside 0 to 80 * sizeof(size_t) / 4, its largest fast bin.
PM_EXPORT int mallopt(int param, int value) noexcept {
  if (param == M_MXFAST && (value < 0 || static_cast<size_t>(value) > 80 * sizeof(size_t) / 4)) return 0;
  return 1;
}
PM_EXPORT int __libc_mallopt(int param, int value) noexcept { return mallopt(param, value); }

}  // extern "C"
