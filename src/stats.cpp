#include "stats.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>

#include "heap.h"
#include "os.h"

namespace pm {

extern constinit std::atomic<uint64_t> g_orphan_frees[kNumClasses];

namespace {

void add_heap(const Heap* h, void* arg) noexcept {
  auto* s = static_cast<Stats*>(arg);
  for (unsigned c = 0; c < kNumClasses; ++c) {
    s->cls[c].allocs += h->allocs[c].load(std::memory_order_relaxed);
    s->cls[c].frees += h->frees[c].load(std::memory_order_relaxed);
  }
  s->remote_frees += h->remote_frees.load(std::memory_order_relaxed);
  ++s->threads;
}

void add_pool(const Pool* p, void* arg) noexcept {
  auto* s = static_cast<Stats*>(arg);
  s->cls[p->cls].pools += 1;
  s->cls[p->cls].pool_bytes += size_t{p->slots} * kSlotSize;
}

// VmRSS from /proc/self/statm without stdio (which may allocate).
size_t resident_bytes() noexcept {
  int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* c = buf;
  while (*c != ' ' && *c != '\0') ++c;  // skip total size
  while (*c == ' ') ++c;
  size_t pages = 0;
  for (; *c >= '0' && *c <= '9'; ++c) pages = pages * 10 + static_cast<size_t>(*c - '0');
  return pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace

void stats_collect(Stats* out) noexcept {
  *out = Stats{};
  heaps_for_each(add_heap, out);
  RetiredCounters r;
  retired_counters(&r);
  for (unsigned c = 0; c < kNumClasses; ++c) {
    ClassStats& cs = out->cls[c];
    cs.allocs += r.allocs[c];
    cs.frees += r.frees[c] + g_orphan_frees[c].load(std::memory_order_relaxed);
    // Counters are read while other threads run: never report a negative count.
    cs.live_blocks = cs.allocs > cs.frees ? cs.allocs - cs.frees : 0;
  }
  out->remote_frees += r.remote_frees;
  arena_for_each_pool(add_pool, out);
  for (unsigned c = 0; c < kNumClasses; ++c) {
    const ClassStats& cs = out->cls[c];
    out->small_allocs += cs.allocs;
    out->small_frees += cs.frees;
    out->small_live_blocks += cs.live_blocks;
    out->small_live_bytes += cs.live_blocks * kClasses.size[c];
  }
  out->arena = arena_stats();
  out->large = large_stats();
  out->os_mapped = os::mapped_bytes();
  out->os_resident = resident_bytes();
}

}  // namespace pm
