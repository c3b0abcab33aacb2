// The C entry points of poolmalloc.h (statistics, purge, version and
// allocation with sizes), forwarded to the core. Fixed pools are in
// fixed_pool.cpp.
#include <errno.h>

#include "alloc.h"
#include "large.h"
#include "poolmalloc.h"
#include "report.h"
#include "stats.h"

namespace {

static_assert(pm::kNumClasses <= POOLMALLOC_MAX_CLASSES);

void fill(poolmalloc_stats* out, const pm::Stats& s) noexcept {
  *out = poolmalloc_stats{};
  out->num_classes = pm::kNumClasses;
  out->small_max = pm::kSmallMax;
  for (unsigned c = 0; c < pm::kNumClasses; ++c) {
    const pm::ClassStats& cs = s.cls[c];
    poolmalloc_class_stats& o = out->classes[c];
    o.block_size = pm::kClasses.size[c];
    o.requests = cs.allocs;
    o.frees = cs.frees;
    o.remote_frees = cs.remote_frees;
    o.live_blocks = cs.live_blocks;
    o.live_bytes = cs.live_blocks * o.block_size;
    o.peak_live_blocks = cs.peak_blocks;
    o.peak_live_bytes = cs.peak_blocks * o.block_size;
    o.pools = cs.pools;
    o.pool_bytes = cs.pool_bytes;
    o.fragmentation_bytes = o.pool_bytes > o.live_bytes ? o.pool_bytes - o.live_bytes : 0;
  }
  out->small_requests = s.small_allocs;
  out->small_frees = s.small_frees;
  out->small_live_blocks = s.small_live_blocks;
  out->small_live_bytes = s.small_live_bytes;
  out->small_peak_live_bytes = s.small_peak_bytes;
  out->pools = s.arena.pools_in_use;
  out->pool_bytes = s.pool_bytes;
  out->fragmentation_bytes = s.fragmentation;
  out->remote_frees = s.remote_frees;
  out->reallocs = s.reallocs;
  out->threads = s.threads;
  out->large_requests = s.large.allocs;
  out->large_frees = s.large.frees;
  out->large_live_blocks = s.large.live_blocks;
  out->large_live_bytes = s.large.live_bytes;
  out->large_peak_live_bytes = s.large.peak_live_bytes;
  out->large_mapped_bytes = s.large.mapped_bytes;
  out->large_cached_bytes = s.large.cached_bytes;
  out->live_bytes = s.live_bytes;
  out->peak_live_bytes = s.peak_live_bytes;
  out->os_reserved_bytes = s.os_reserved;
  out->os_committed_bytes = s.os_committed;
  out->os_resident_bytes = s.os_resident;
  out->segments = s.arena.segments;
}

poolmalloc_allocation sized(void* p) noexcept { return {p, p != nullptr ? pm::usable_size(p) : 0}; }

// A range no block size of the allocator falls in.
poolmalloc_allocation impossible() noexcept {
  errno = EINVAL;
  return {nullptr, 0};
}

}  // namespace

extern "C" {

const char* poolmalloc_version(void) noexcept { return POOLMALLOC_VERSION_STRING; }
int poolmalloc_version_number(void) noexcept { return POOLMALLOC_VERSION_NUMBER; }

int poolmalloc_stats_get(poolmalloc_stats* out) noexcept {
  if (out == nullptr) return -1;
  pm::Stats s;
  pm::stats_collect(&s);
  fill(out, s);
  return 0;
}

int poolmalloc_stats_print(int fd, int format) noexcept {
  if (format != POOLMALLOC_FORMAT_TEXT && format != POOLMALLOC_FORMAT_JSON) return -1;
  pm::Stats s;
  pm::stats_collect(&s);
  pm::NoWriteSignals quiet;  // a closed pipe or the file size limit: -1, not a signal
  pm::Writer w(fd);
  if (format == POOLMALLOC_FORMAT_TEXT) pm::report_text(w, s, false);
  else pm::report_json(w, s, false, false);
  w.flush();
  return w.ok() ? 0 : -1;
}

size_t poolmalloc_purge(void) noexcept { return pm::trim(); }

void* poolmalloc_malloc(size_t n) noexcept { return pm::alloc(n); }
void* poolmalloc_aligned_alloc(size_t align, size_t n) noexcept {
  if (align == 0 || (align & (align - 1)) != 0) {
    errno = EINVAL;
    return nullptr;
  }
  return pm::alloc_aligned(align, n);
}
void poolmalloc_free(void* p) noexcept { pm::dealloc(p); }
size_t poolmalloc_usable_size(const void* p) noexcept { return pm::usable_size(p); }

poolmalloc_allocation poolmalloc_alloc_at_least(size_t n) noexcept { return sized(pm::alloc(n == 0 ? 1 : n)); }

poolmalloc_allocation poolmalloc_alloc_range(size_t min, size_t max) noexcept {
  if (min == 0) min = 1;
  if (min > max) return impossible();
  if (min <= pm::kSmallMax) {
    unsigned cls = pm::class_of(min);
    if (pm::class_size(cls) > max) return impossible();
    return sized(pm::alloc_class(cls));
  }
  // A large block's usable size depends on where its header falls: a plain
  // block has whole pages less its 16-byte header, a page-aligned one min
  // rounded up to a page (its header is on a page of its own). The plain one
  // is smaller unless min falls in the last 16 bytes of a page.
  const size_t header = 16, page = pm::kPageSize;
  if (min > SIZE_MAX - 2 * page) {
    // Larger than any mapping: EINVAL when no block size (a whole number of
    // pages, or that less the header) lies in the range, ENOMEM when one does.
    size_t up = 0;
    bool fits = !__builtin_add_overflow(min, page - 1, &up) && up / page * page <= max;
    if (!__builtin_add_overflow(min, header + page - 1, &up)) fits = fits || up / page * page - header <= max;
    if (!fits) return impossible();
    errno = ENOMEM;
    return {nullptr, 0};
  }
  const size_t plain = (min + header + page - 1) / page * page - header;
  const size_t aligned = (min + page - 1) / page * page;
  if (plain < aligned ? plain > max : aligned > max) return impossible();
  if (aligned < plain) return sized(pm::alloc_aligned(page, min));  // always a mapping of its own
  // A plain block may come from the thread's cache of freed large blocks,
  // which serves a request with a block up to a quarter larger: one too
  // large for max is kept aside while the next is taken, so that the cache
  // runs out of candidates and a block of the plain size (from the shared
  // cache, which splits, or a fresh mapping) follows.
  void* held[pm::kTcacheEntries];
  unsigned n_held = 0;
  poolmalloc_allocation a = sized(pm::alloc(min));
  while (a.ptr != nullptr && a.size > max && n_held < pm::kTcacheEntries) {
    held[n_held++] = a.ptr;
    a = sized(pm::alloc(min));
  }
  int err = errno;
  for (unsigned i = 0; i < n_held; ++i) pm::dealloc(held[i]);
  errno = err;
  if (a.ptr != nullptr && a.size > max) {  // not expected: the cache holds at most kTcacheEntries blocks
    pm::dealloc(a.ptr);
    errno = ENOMEM;
    return {nullptr, 0};
  }
  return a;
}

}  // extern "C"
