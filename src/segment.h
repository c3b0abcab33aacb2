// Segments and the arena that hands out their slots to pools.
//
// A segment is kSegmentSize bytes aligned to kSegmentSize. Slot 0 holds this
// header; slots 1..63 hold pool blocks. Invariants (under the arena lock):
//   free_slots has bit i set iff slot i belongs to no pool (bit 0 never set);
//   dirty_slots is a subset of free_slots: free but not yet purged;
//   pool_of[i] points at the descriptor of the pool covering slot i, or at
//   pools[i] (state kFree) when slot i is free, so a stale pointer never
//   reads through a null descriptor;
//   intact_starts has bit i set iff pools[i] is intact: a pool released
//   whole whose slots are all free and dirty, on its class's list of the
//   arena (any acquisition or purge of one of its slots takes it off).
// The segment map has a byte per possible segment address, set from
// before the segment is first used until after it is unmapped.
#pragma once

#include <atomic>
#include <cstdint>

#include "config.h"
#include "pool.h"

namespace pm {

struct Segment {
  uintptr_t cookie;     // g_tag_secret ^ address: marks a live segment header
  uint64_t free_slots;  // see invariants above
  uint64_t dirty_slots;
  uint64_t intact_starts;  // bit i set iff pools[i] is intact (see Pool::intact)
  Segment* next;        // arena's list of segments
  Segment* prev;
  bool reserved;        // made by arena_reserve: never unmapped, purged only when forced
  Pool* pool_of[kSlotsPerSegment];
  Pool pools[kSlotsPerSegment];
};
static_assert(sizeof(Segment) <= kSlotSize, "segment header fits in slot 0");

// One byte per possible segment of the 47-bit user address space, in two
// levels: a table of 1,024 leaves, each of 32 KiB covering 128 GiB, mapped
// when a segment first lies in its range and kept for good. Two loads and
// a compare classify any pointer; what is mapped stays a few pages of
// address space (a flat map took 32 MiB of it, which `ulimit -v` counts).
inline constexpr unsigned kAddressBits = 47;
inline constexpr size_t kSegmentMapSize = size_t{1} << (kAddressBits - kSegmentShift);
inline constexpr unsigned kSegmentMapLeafBits = 15;
inline constexpr size_t kSegmentMapLeaves = kSegmentMapSize >> kSegmentMapLeafBits;
extern constinit uint8_t* g_segment_map[kSegmentMapLeaves];

[[gnu::always_inline]] inline bool in_segment(const void* p) noexcept {
  uintptr_t index = reinterpret_cast<uintptr_t>(p) >> kSegmentShift;
  // An address above the 47 bits (a kernel address, a wild pointer, or a
  // mapping asked for there under 5-level paging) is in no segment of
  // ours, which the kernel places below.
  if (index >= kSegmentMapSize) [[unlikely]]
    return false;
  // Acquire: a leaf is zeroed memory published once, before its first byte is set.
  const uint8_t* leaf = __atomic_load_n(&g_segment_map[index >> kSegmentMapLeafBits], __ATOMIC_ACQUIRE);
  if (leaf == nullptr) return false;
  const uint8_t* e = &leaf[index & ((size_t{1} << kSegmentMapLeafBits) - 1)];
#if defined(__x86_64__) && !defined(PM_SANITIZER_BUILD)
  // A byte load is atomic on x86-64; the plain read lets the compiler test
  // the byte in memory with one compare.
  return *e != 0;
#else
  return __atomic_load_n(e, __ATOMIC_RELAXED) != 0;
#endif
}
// The region: a stretch of address space, placed at random at process
// start, in which segments are mapped while its places are free, so that
// free finds a block's pool with a subtraction, a compare and a table load
// (region_offset, region_used, region_pool). Nothing is reserved: each
// segment is its own mapping, made only where nothing else is mapped, so
// the address-space limit and the mapped-bytes figures count segments as
// before. A segment that finds no place in the region is mapped elsewhere
// and found through the segment map; every segment has its byte in the map.
inline constexpr size_t kRegionMaxSize = size_t{64} << 30;
struct Region {
  uintptr_t base;  // 0 until placed (arena_init)
  // Bytes from `base` covered by segments made so far (a high-water mark):
  // below it, every slot has its entry in g_region_pools.
  uintptr_t used;
};
// Read by every free; written only when the region is placed or grows.
extern constinit PM_HIDDEN Region g_region;
// The pool covering each slot of the region below g_region.used: the
// slot's segment's pool_of entry, or &g_region_none where no segment of
// ours lies (a place found taken, or a segment given back).
extern constinit PM_HIDDEN Pool* g_region_pools[kRegionMaxSize >> kSlotShift];
// A descriptor no heap owns: a free that finds it (memory in the region that
// is not a segment of ours, such as a large block the kernel placed there)
// is sent on to dealloc_foreign by dealloc_remote.
extern constinit Pool g_region_none;

// The offset of p in the region; >= region_used() when p is not in one of
// its segments (a pointer below the base wraps to a huge offset).
[[gnu::always_inline]] inline uintptr_t region_offset(const void* p) noexcept {
#if defined(__x86_64__) && !defined(PM_SANITIZER_BUILD)
  return reinterpret_cast<uintptr_t>(p) - g_region.base;
#else
  return reinterpret_cast<uintptr_t>(p) - __atomic_load_n(&g_region.base, __ATOMIC_ACQUIRE);
#endif
}
[[gnu::always_inline]] inline uintptr_t region_used() noexcept {
#if defined(__x86_64__) && !defined(PM_SANITIZER_BUILD)
  return g_region.used;
#else
  return __atomic_load_n(&g_region.used, __ATOMIC_ACQUIRE);
#endif
}
// The pool of the slot at region offset `off` < region_used().
[[gnu::always_inline]] inline Pool* region_pool(uintptr_t off) noexcept {
#if defined(__x86_64__) && !defined(PM_SANITIZER_BUILD)
  return g_region_pools[off >> kSlotShift];
#else
  return __atomic_load_n(&g_region_pools[off >> kSlotShift], __ATOMIC_ACQUIRE);
#endif
}

[[gnu::always_inline]] inline Segment* segment_of(const void* p) noexcept {
  return reinterpret_cast<Segment*>(reinterpret_cast<uintptr_t>(p) & ~(kSegmentSize - 1));
}
[[gnu::always_inline]] inline Pool* pool_of(const void* p) noexcept {
  return segment_of(p)->pool_of[(reinterpret_cast<uintptr_t>(p) >> kSlotShift) & (kSlotsPerSegment - 1)];
}

// Places the region (at process start, before a segment exists).
void arena_init() noexcept;

// The arena: slots for pools, under one lock (slow path only).
// `new_high`, when given, says whether pools now hold more slots than ever
// before in this process, by a sixty-fourth above the last time it said so.
// With `intact` given, a pool of class cls released whole whose slots no
// one has used or purged since is handed back, still set up for its class,
// and *intact says so: the caller recycles it (pool_recycle) instead of
// setting it up (pool_init), and finds its memory still resident.
[[nodiscard]] Pool* arena_acquire_pool(unsigned slots, bool* new_high = nullptr, unsigned cls = 0,
                                       bool* intact = nullptr) noexcept;
// The lowest index at which a pool of n slots may start (a multiple of
// pool_align_slots(n)) whose n slots are all in `set`, or -1.
[[nodiscard]] int arena_find_run(uint64_t set, unsigned n) noexcept;
// Frees p's slots. With keep_intact (a pool whose every block is free, as
// the heaps release them), p stays intact for its class's next acquisition
// until its slots are taken for another pool or purged.
void arena_release_pool(Pool* p, bool keep_intact = false) noexcept;
// Purge free slots that have been dirty longer than the purge delay; all of
// them when `force`. Returns bytes purged.
size_t arena_purge(bool force) noexcept;
// For the waits of preload/waits.cpp: arena_purge(false), of `budget`
// bytes at most (rounded up to slots), unless the arena's lock is held (by
// another thread, or by the section a signal handler's wait interrupted):
// then false. *left is set to the free slots not yet returned (reserved
// segments' aside).
[[nodiscard]] bool arena_idle_purge(size_t budget, size_t* left) noexcept;

// Returns to the OS the pages of pools whose every block other threads
// freed while their owner took none of them back (kDroppedMark): those
// that were so at the last call and have not changed since, and notes
// those that are so now for the next call; with `force`, every such pool
// at once (a trim). Pools of reserved segments keep their pages. Bytes
// returned.
size_t arena_drop_freed_pools(bool force) noexcept;
// True while pools noted by the last call wait for the next one.
[[nodiscard]] bool arena_drop_pending() noexcept;
// Returns once no purge of a dropped pool is under way: the owner of a
// pool whose stack it finds dropped calls it before it carves the pool's
// blocks again. Takes the arena lock: never call it with the lock held.
void arena_sync() noexcept;

struct ArenaStats {
  size_t segments;
  size_t reserved;   // bytes of segments mapped
  size_t pools_in_use;
  size_t pool_bytes_in_use;  // slots held by pools
  size_t dirty_bytes;        // free, not yet purged
  size_t purgeable_bytes;    // of which outside reserved segments (POOLMALLOC_RESERVE), which only a trim purges
  size_t free_segment_bytes;  // segments with every slot free, which a trim unmaps
  size_t pools_dropped;       // pools in use whose pages went back, all blocks freed by other threads (since start)
};
ArenaStats arena_stats() noexcept;
// POOLMALLOC_RESERVE: map segments for `bytes` up front (pre-faulted when
// asked). Returns the number of segments made.
size_t arena_reserve(size_t bytes, bool prefault) noexcept;
void arena_lock_for_fork() noexcept;
void arena_unlock_for_fork(bool child) noexcept;
// Calls fn(pool, arg) for every pool in use, under the arena lock.
void arena_for_each_pool(void (*fn)(const Pool*, void*), void* arg) noexcept;

}  // namespace pm
