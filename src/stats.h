// Statistics, summed on demand from per-thread counters (the fast paths only
// bump counters their own thread owns) and from the arena and large blocks.
//
// What the figures mean (docs/API.md repeats this for users):
//   live blocks of a class = requests - frees, summed over all threads;
//   live bytes = live blocks * class size (the block, not the bytes asked for);
//   fragmentation = bytes of pools in use that hold no live block (free and
//     never-carved blocks, and the tail of a pool too short for a block);
//   peak live = the largest live figure seen at a sampling point, so a lower
//     bound of the true peak. A class is sampled whenever one of its pools
//     carves fresh blocks (a batch of about 8 KiB, at least 16 blocks: live
//     blocks can only reach a new high by using blocks never used before)
//     while the carving thread's own count is above the recorded peak, and
//     all classes and the totals whenever a pool is taken from the arena
//     (beyond eight threads at most once per millisecond),
//     at every statistics read and, with profiling on, at every profile
//     sample. For one thread the class peak is exact to within one carve
//     batch; when threads reuse freed blocks while others are at their high,
//     the peak reached by reuse alone is seen only at the next sampling point.
//   peak large bytes is updated on every large allocation from the OS or the
//   shared cache and every realloc that grows a large block, under the
//   large blocks' lock; blocks held in threads' caches count as live there,
//   so it may exceed the true peak by what those caches held.
#pragma once

#include <cstddef>
#include <cstdint>

#include "heap.h"
#include "large.h"
#include "segment.h"
#include "size_classes.h"

namespace pm {

struct ClassStats {
  uint64_t allocs;        // requests served from this class
  uint64_t frees;         // frees into this class (local and remote)
  uint64_t remote_frees;  // of which by a thread that does not own the pool
  uint64_t live_blocks;   // allocs - frees
  uint64_t peak_blocks;   // see "peak live" above
  uint64_t pools;         // pools of this class in use
  uint64_t pool_bytes;    // bytes of those pools
};

struct Stats {
  ClassStats cls[kNumClasses];
  uint64_t small_allocs, small_frees, small_live_blocks, small_live_bytes;
  uint64_t small_peak_bytes;  // peak of the sum over classes, sampled as above
  uint64_t pool_bytes;        // bytes of all pools in use
  uint64_t fragmentation;     // pool_bytes - small_live_bytes
  uint64_t remote_frees;
  uint64_t reallocs;
  uint64_t threads;  // live thread heaps
  ArenaStats arena;
  LargeStats large;  // counts, live and peak bytes, request histogram
  size_t live_bytes;       // small + large
  size_t peak_live_bytes;  // peak of small + large, sampled
  size_t os_reserved;      // all memory mapped from the OS
  size_t os_committed;     // reserved less free pool slots that were purged or never used
  size_t os_resident;      // resident set of the process (from /proc), 0 if unknown
};

void stats_collect(Stats* out) noexcept;

// Slow-path hooks.
// A pool was taken from the arena: a sampling point for the peaks.
void stats_pool_acquired() noexcept;
// A pool of class cls carved fresh blocks: a sampling point for its peak.
struct Heap;
void stats_pool_carved(const Heap* h, unsigned cls) noexcept;
[[gnu::cold]] void stats_count_orphan_realloc() noexcept;
// The calling thread's own counter: a plain add, no shared cache line.
[[gnu::always_inline]] inline void stats_count_realloc() noexcept {
  Heap* h = tl_heap;
  if (h != &g_empty_heap) [[likely]]
    bump(h->reallocs);
  else
    stats_count_orphan_realloc();
}

// Sums the live blocks of every class over all threads (heap lock held
// briefly) and raises the peaks; returns the small live bytes.
uint64_t stats_sample_peaks() noexcept;

}  // namespace pm
