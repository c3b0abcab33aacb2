// Statistics, summed on demand from per-thread counters (the fast paths only
// bump counters their own thread owns) and from the arena and large blocks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "large.h"
#include "segment.h"
#include "size_classes.h"

namespace pm {

struct ClassStats {
  uint64_t allocs;       // requests served from this class
  uint64_t frees;        // frees into this class (local and remote)
  uint64_t live_blocks;  // allocs - frees
  uint64_t pools;        // pools of this class in use
  uint64_t pool_bytes;   // bytes of those pools
};

struct Stats {
  ClassStats cls[kNumClasses];
  uint64_t small_allocs, small_frees, small_live_blocks, small_live_bytes;
  uint64_t remote_frees;
  uint64_t threads;  // live thread heaps
  ArenaStats arena;
  LargeStats large;
  size_t os_mapped;    // all memory mapped from the OS
  size_t os_resident;  // resident set of the process (from /proc), 0 if unknown
};

void stats_collect(Stats* out) noexcept;

}  // namespace pm
