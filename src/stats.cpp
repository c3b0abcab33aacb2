#include "stats.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>

#include "check_full.h"
#include "heap.h"
#include "os.h"
#include "profile.h"

namespace pm {

extern constinit std::atomic<uint64_t> g_orphan_frees[kNumClasses];

namespace {

constinit std::atomic<uint64_t> g_peak_blocks[kNumClasses] = {};
constinit std::atomic<uint64_t> g_peak_small_bytes{0};
constinit std::atomic<uint64_t> g_peak_live_bytes{0};

// realloc calls by threads without a heap (rare: their first call is realloc(p, n) of a foreign block).
constinit std::atomic<uint64_t> g_orphan_reallocs{0};

void raise(std::atomic<uint64_t>& peak, uint64_t v) noexcept {
  uint64_t cur = peak.load(std::memory_order_relaxed);
  while (v > cur && !peak.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

using Counts = CounterTotals;

// Counters of live and retired threads (heap_counter_totals), and of frees
// by threads without a heap.
void gather(Counts* out) noexcept {
  heap_counter_totals(out);
  for (unsigned c = 0; c < kNumClasses; ++c) {
    // A thread without a heap owns no pool: its frees are all cross-thread.
    uint64_t orphans = g_orphan_frees[c].load(std::memory_order_relaxed);
    out->frees[c] += orphans;
    out->remote_frees[c] += orphans;
  }
  out->reallocs += g_orphan_reallocs.load(std::memory_order_relaxed);
  // Full mode serves every small request from its own heap, in no registry.
  if (g_check_full) [[unlikely]]
    check_full_counts(out->allocs, out->frees);
}

// Counters are read while other threads run: never report a negative count.
uint64_t live_of(const Counts& k, unsigned c) noexcept {
  return k.allocs[c] > k.frees[c] ? k.allocs[c] - k.frees[c] : 0;
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

// Raises the peaks from a snapshot; returns the small live bytes.
uint64_t raise_peaks(const Counts& k, size_t large_live) noexcept {
  uint64_t bytes = 0;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    uint64_t live = live_of(k, c);
    raise(g_peak_blocks[c], live);
    bytes += live * kClasses.size[c];
  }
  raise(g_peak_small_bytes, bytes);
  raise(g_peak_live_bytes, bytes + large_live);
  return bytes;
}

// Sampling walks every heap under the registry lock. With few threads that is
// cheap and done at every sampling point; with many it would serialise their
// slow paths, so it is done at most once per millisecond.
constexpr size_t kAlwaysSampleHeaps = 8;
constinit std::atomic<uint64_t> g_last_sample_ms{0};

bool sample_due() noexcept {
  if (heaps_live() <= kAlwaysSampleHeaps) return true;
  uint64_t now = os::now_ms();
  uint64_t last = g_last_sample_ms.load(std::memory_order_relaxed);
  return now != last && g_last_sample_ms.compare_exchange_strong(last, now, std::memory_order_relaxed);
}

}  // namespace

uint64_t stats_sample_peaks() noexcept {
  Counts k;
  gather(&k);
  return raise_peaks(k, large_live_bytes());
}

void stats_pool_acquired() noexcept {
  if (!sample_due() && !profile_enabled()) return;
  uint64_t small = stats_sample_peaks();
  if (profile_enabled()) [[unlikely]]
    profile_sample(small);
}

void stats_pool_carved(const Heap* h, unsigned cls) noexcept {
  // The global count is read under the registry lock, whose atomic exchange
  // waits for the stores of the carve just done. Skip it while this thread's
  // own count (allocs minus its frees) is not above the recorded peak: the
  // peak it could raise is then usually not higher.
  uint64_t own_a = heap_allocs(h, cls);
  uint64_t own_f = h->frees[cls].load(std::memory_order_relaxed);
  if (own_a <= own_f || own_a - own_f <= g_peak_blocks[cls].load(std::memory_order_relaxed)) return;
  if (!sample_due()) return;
  uint64_t allocs = 0, frees = 0;
  class_counters(cls, &allocs, &frees);
  frees += g_orphan_frees[cls].load(std::memory_order_relaxed);
  if (allocs > frees) raise(g_peak_blocks[cls], allocs - frees);
}

void stats_count_orphan_realloc() noexcept { g_orphan_reallocs.fetch_add(1, std::memory_order_relaxed); }

void stats_collect(Stats* out) noexcept {
  *out = Stats{};
  Counts k;
  gather(&k);
  out->threads = k.threads;
  out->large = large_stats();
  raise_peaks(k, out->large.live_bytes);
  arena_for_each_pool(add_pool, out);
  for (unsigned c = 0; c < kNumClasses; ++c) {
    ClassStats& cs = out->cls[c];
    cs.allocs = k.allocs[c];
    cs.frees = k.frees[c];
    cs.remote_frees = k.remote_frees[c];
    cs.live_blocks = live_of(k, c);
    cs.peak_blocks = g_peak_blocks[c].load(std::memory_order_relaxed);
    out->small_allocs += cs.allocs;
    out->small_frees += cs.frees;
    out->small_live_blocks += cs.live_blocks;
    out->small_live_bytes += cs.live_blocks * kClasses.size[c];
    out->remote_frees += cs.remote_frees;
    out->pool_bytes += cs.pool_bytes;
  }
  out->fragmentation = out->pool_bytes > out->small_live_bytes ? out->pool_bytes - out->small_live_bytes : 0;
  out->small_peak_bytes = g_peak_small_bytes.load(std::memory_order_relaxed);
  out->reallocs = k.reallocs;
  out->live_bytes = out->small_live_bytes + out->large.live_bytes;
  out->peak_live_bytes = g_peak_live_bytes.load(std::memory_order_relaxed);
  out->arena = arena_stats();
  out->os_reserved = os::mapped_bytes();
  // Free slots that are not dirty were purged or never touched: mapped, not committed.
  size_t free_slot_bytes = out->arena.segments * (kSlotsPerSegment - 1) * kSlotSize;
  size_t clean = free_slot_bytes - out->arena.pool_bytes_in_use - out->arena.dirty_bytes;
  if (free_slot_bytes < out->arena.pool_bytes_in_use + out->arena.dirty_bytes) clean = 0;
  out->os_committed = out->os_reserved > clean ? out->os_reserved - clean : 0;
  out->os_resident = resident_bytes();
}

}  // namespace pm
