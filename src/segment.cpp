#include "segment.h"

#include <new>

#include "lock.h"
#include "options.h"
#include "os.h"
#include "purger.h"
#include "size_classes.h"

namespace pm {

// Plain bytes (zero-filled .bss) accessed with atomic builtins: an array of
// std::atomic this large is slow for compilers to constant-initialise.
constinit uint8_t* g_segment_map[kSegmentMapLeaves] = {};
alignas(64) constinit Region g_region = {0, 0};
constinit Pool* g_region_pools[kRegionMaxSize >> kSlotShift] = {};
constinit Pool g_region_none;

namespace {

constinit SpinLock g_arena_lock;
constinit Segment* g_segments = nullptr;  // all segments, most recently created first
constinit size_t g_segment_count = 0;
constinit size_t g_pools_in_use = 0;
constinit size_t g_slots_reported = 0;  // the high last reported through `new_high`
constinit size_t g_slots_in_use = 0;
constinit size_t g_dirty_count = 0;  // free slots not yet purged
constexpr size_t kMaxDirtySlots = kMaxDirtyBytes / kSlotSize;  // config.h
constinit uint64_t g_last_purge_ms = 0;
constinit size_t g_pools_dropped = 0;  // arena_drop_freed_pools, since start

constexpr uint64_t kAllSlots = ~uint64_t{0} & ~uint64_t{1};  // slot 0 is the header

// Pools released whole and still intact, by class, most recently released
// first (linked through next/prev, which a released pool no longer uses):
// the next pool of the class takes one back, on slots still resident,
// without the search for a run and the set-up of a new pool.
constinit Pool* g_intact[kNumClasses] = {};

void intact_remove(Pool* p) noexcept {
  segment_of(p->start)->intact_starts &= ~(uint64_t{1} << p->first_slot);
  pool_list_remove(&g_intact[p->cls], p);
  p->intact = false;
}

// Slots at .. at + n - 1 of s are about to hold another pool or to be
// purged: an intact pool over any of them is intact no more.
void intact_invalidate(Segment* s, unsigned at, unsigned n) noexcept {
  uint64_t below_end = at + n >= kSlotsPerSegment ? ~uint64_t{0} : (uint64_t{1} << (at + n)) - 1;
  for (uint64_t m = s->intact_starts & below_end; m != 0; m &= m - 1) {
    Pool* q = &s->pools[__builtin_ctzll(m)];
    if (q->first_slot + q->slots > at) intact_remove(q);
  }
}

// The region's bookkeeping, under the arena lock: which of its
// segment-sized places hold a segment, and which were found taken by some
// other mapping (first fit keeps `used` low).
constexpr size_t kRegionPlaces = kRegionMaxSize / kSegmentSize;
constinit uint64_t g_region_live[kRegionPlaces / 64] = {};
constinit uint64_t g_region_taken[kRegionPlaces / 64] = {};

bool in_region(const void* p) noexcept {
  return g_region.base != 0 && reinterpret_cast<uintptr_t>(p) - g_region.base < kRegionMaxSize;
}
size_t place_of(const void* p) noexcept { return (reinterpret_cast<uintptr_t>(p) - g_region.base) / kSegmentSize; }
void set_bit(uint64_t* set, size_t i, bool on) noexcept {
  if (on) set[i / 64] |= uint64_t{1} << (i % 64);
  else set[i / 64] &= ~(uint64_t{1} << (i % 64));
}
void set_region_pool(size_t slot, Pool* p) noexcept { __atomic_store_n(&g_region_pools[slot], p, __ATOMIC_RELEASE); }

// Slot i of s is now covered by p: in the segment's header, and in the
// region's table when s lies in the region.
void set_pool_of(Segment* s, unsigned i, Pool* p) noexcept {
  s->pool_of[i] = p;
  if (in_region(s)) set_region_pool(place_of(s) * kSlotsPerSegment + i, p);
}

// Makes `end` (a place boundary) the region's bound for free's lookup,
// first giving every slot below it that no segment covers yet the entry
// g_region_none.
void raise_region_used(uintptr_t end) noexcept {
  for (uintptr_t off = g_region.used; off < end; off += kSlotSize)
    if (g_region_pools[off >> kSlotShift] == nullptr) set_region_pool(off >> kSlotShift, &g_region_none);
  __atomic_store_n(&g_region.used, end, __ATOMIC_RELEASE);
}

// Memory for a new segment: the region's first open place, or, when places
// keep being taken by other mappings or the region is full, a mapping
// anywhere. nullptr when the system has no memory for it.
void* segment_memory() noexcept {
  if (g_region.base != 0) {
    for (unsigned tries = 0; tries < 8; ++tries) {
      size_t i = kRegionPlaces;  // the first place neither live nor taken
      for (size_t w = 0; w < kRegionPlaces / 64; ++w) {
        if (uint64_t open = ~(g_region_live[w] | g_region_taken[w]); open != 0) {
          i = w * 64 + static_cast<size_t>(__builtin_ctzll(open));
          break;
        }
      }
      if (i == kRegionPlaces) break;
      void* at = reinterpret_cast<void*>(g_region.base + i * kSegmentSize);
      os::MapAt r = os::map_at(at, kSegmentSize);
      if (r == os::MapAt::kMapped) return at;
      if (r == os::MapAt::kNoMemory) return nullptr;
      set_bit(g_region_taken, i, true);
    }
  }
  void* mem = os::map_aligned(kSegmentSize, kSegmentSize);
  // Blocks' addresses must leave the top 16 bits of a remote stack's head
  // word to its count (pool.h): a segment the kernel placed higher (with
  // 5-level page tables, only when asked to) is refused.
  if (mem != nullptr && reinterpret_cast<uintptr_t>(mem) + kSegmentSize - 1 > kRemoteAddrMask) {
    os::unmap(mem, kSegmentSize);
    return nullptr;
  }
  return mem;
}

// The segment map's byte for s, its leaf mapped first if need be (arena
// lock held); nullptr when the OS refuses the leaf.
uint8_t* map_entry(const Segment* s) noexcept {
  uintptr_t index = reinterpret_cast<uintptr_t>(s) >> kSegmentShift;
  uint8_t*& leaf = g_segment_map[index >> kSegmentMapLeafBits];
  if (leaf == nullptr) {
    auto* fresh = static_cast<uint8_t*>(os::map(size_t{1} << kSegmentMapLeafBits));
    if (fresh == nullptr) return nullptr;
    __atomic_store_n(&leaf, fresh, __ATOMIC_RELEASE);
  }
  return &leaf[index & ((size_t{1} << kSegmentMapLeafBits) - 1)];
}

// s's leaf is mapped (map_entry succeeded for it when it was created).
void map_set(const Segment* s, bool on) noexcept { __atomic_store_n(map_entry(s), on ? 1 : 0, __ATOMIC_RELEASE); }

Segment* segment_create() noexcept {
  void* mem = segment_memory();
  if (mem == nullptr) return nullptr;
  if (map_entry(static_cast<const Segment*>(mem)) == nullptr) {
    os::unmap(mem, kSegmentSize);
    return nullptr;
  }
  auto* s = new (mem) Segment;
  s->cookie = g_tag_secret ^ reinterpret_cast<uintptr_t>(s);
  s->free_slots = kAllSlots;
  s->dirty_slots = 0;
  s->intact_starts = 0;
  s->reserved = false;
  char* base = static_cast<char*>(mem);
  for (unsigned i = 0; i < kSlotsPerSegment; ++i) {
    Pool* p = new (&s->pools[i]) Pool;
    p->first_slot = i;
    p->start = base + size_t{i} * kSlotSize;
    set_pool_of(s, i, p);
  }
  if (in_region(s)) {  // also a segment the kernel placed in the region by chance
    set_bit(g_region_live, place_of(s), true);
    set_bit(g_region_taken, place_of(s), false);
    uintptr_t end = (place_of(s) + 1) * kSegmentSize;
    if (end > g_region.used) raise_region_used(end);
  }
  s->prev = nullptr;
  s->next = g_segments;
  if (g_segments != nullptr) g_segments->prev = s;
  g_segments = s;
  ++g_segment_count;
  map_set(s, true);
  return s;
}

// Unmaps an empty segment and forgets it. Its entries in the segment map
// and the region's table go first, so that a pointer into it (a free of a
// block freed before) finds no pool in unmapped memory; a segment the
// kernel would not unmap (ENOMEM: the split would pass vm.max_map_count)
// gets them back and stays listed, purged, for a later purge.
void segment_destroy(Segment* s) noexcept {
  const bool region = in_region(s);
  map_set(s, false);
  if (region)
    for (unsigned i = 0; i < kSlotsPerSegment; ++i) set_region_pool(place_of(s) * kSlotsPerSegment + i, &g_region_none);
  Segment* prev = s->prev;
  Segment* next = s->next;
  if (!os::unmap(s, kSegmentSize)) {
    if (region)
      for (unsigned i = 0; i < kSlotsPerSegment; ++i) set_region_pool(place_of(s) * kSlotsPerSegment + i, s->pool_of[i]);
    map_set(s, true);
    return;
  }
  if (prev != nullptr) prev->next = next;
  else g_segments = next;
  if (next != nullptr) next->prev = prev;
  --g_segment_count;
  if (region) set_bit(g_region_live, place_of(s), false);
}

// Purges the free slots that have waited the purge delay (all when force),
// `budget` bytes at most (rounded up to slots; what is left stays dirty for
// the next call). Bytes purged.
size_t purge_locked(bool force, uint64_t now, size_t budget = SIZE_MAX) noexcept {
  size_t purged = 0;
  uint64_t delay = options().purge_delay_ms;
  Segment* spare = nullptr;  // keep one empty segment mapped
  for (Segment* s = g_segments; s != nullptr && purged < budget;) {
    Segment* next = s->next;
    uint64_t ready = 0;
    for (uint64_t d = (force || !s->reserved) ? s->dirty_slots : 0; d != 0; d &= d - 1) {
      unsigned i = static_cast<unsigned>(__builtin_ctzll(d));
      if (force || now - s->pools[i].freed_at_ms >= delay) ready |= uint64_t{1} << i;
    }
    while (ready != 0 && purged < budget) {  // one madvise per run of adjacent slots
      unsigned i = static_cast<unsigned>(__builtin_ctzll(ready));
      unsigned n = static_cast<unsigned>(__builtin_ctzll(~(ready >> i)));
      if (size_t left = budget - purged; left < size_t{n} * kSlotSize)
        n = static_cast<unsigned>((left + kSlotSize - 1) / kSlotSize);
      uint64_t run = ((n == 64) ? ~uint64_t{0} : (uint64_t{1} << n) - 1) << i;
      s->dirty_slots &= ~run;
      if (!s->reserved) g_dirty_count -= n;
      intact_invalidate(s, i, n);
      os::purge(s->pools[i].start, size_t{n} * kSlotSize);
      purged += size_t{n} * kSlotSize;
      ready &= ~run;
    }
    if (s->free_slots == kAllSlots && s->dirty_slots == 0 && !s->reserved) {
      if (spare == nullptr && !force) spare = s;
      else segment_destroy(s);
    }
    s = next;
  }
  g_last_purge_ms = now;
  return purged;
}

void maybe_purge_locked() noexcept {
  uint64_t now = os::now_ms();
  uint64_t delay = options().purge_delay_ms;
  // The cap holds only while no purger thread runs: with one, free memory
  // goes back within the purge delay however the program waits, and a
  // program whose phases free more than the cap at once finds it still
  // resident when it builds the next.
  if (g_dirty_count > kMaxDirtySlots && !purger_running()) {
    // Only the excess, and an eighth of the cap more so that a program at
    // the cap does not purge at every release (everything dirty counts as
    // old enough here).
    size_t excess = g_dirty_count - kMaxDirtySlots + kMaxDirtySlots / 8;
    purge_locked(false, now + delay, excess * kSlotSize);
  } else if (delay == 0 || now - g_last_purge_ms >= delay / 2 + 1) {
    purge_locked(false, now);
  }
}

}  // namespace

void arena_init() noexcept {
  // ThreadSanitizer allows mappings only in its own ranges of the address
  // space: under it, every segment is mapped where the kernel chooses.
  if constexpr (kThreadSanitizer) return;
  if (!options().region) return;  // POOLMALLOC_REGION=0
  LockGuard g(g_arena_lock);
  if (g_region.base != 0) return;
  // A random place between 16 and 80 TiB, where the kernel maps nothing of
  // its own accord on x86-64 (programs sit near 0 or at 85 TiB, the mmap
  // area grows down from 128 TiB) and segments keep unpredictable addresses.
  uint64_t r = 0;
  os::random_bytes(&r, sizeof r);
  constexpr uintptr_t kLow = uintptr_t{16} << 40, kSpan = (uintptr_t{64} << 40) - kRegionMaxSize;
  uintptr_t base = kLow + (r % (kSpan / kSegmentSize)) * kSegmentSize;
  __atomic_store_n(&g_region.base, base, __ATOMIC_RELEASE);
}

int arena_find_run(uint64_t set, unsigned n) noexcept {
  if (n == 0 || n > kSlotsPerSegment) return -1;
  // Bit i of `starts`: slots i .. i + have - 1 are all in the set, growing
  // `have` to n by doubling (bits shifted in from the top are zero, so no
  // run reaches past the last slot).
  uint64_t starts = set;
  for (unsigned have = 1; have < n && starts != 0;) {
    unsigned step = have < n - have ? have : n - have;
    starts &= starts >> step;
    have += step;
  }
  // Only the indices a pool of n slots may start at: the multiples of a.
  // For a dividing 64 (every pool size is a power of two) those bits are
  // ~0 / (2^a - 1): 0x5555... for a = 2, 0x1111... for 4.
  unsigned a = pool_align_slots(n);
  uint64_t every = 0;
  if (kSlotsPerSegment % a == 0) {
    every = ~uint64_t{0} / ((uint64_t{1} << a) - 1);
  } else {
    for (unsigned i = 0; i < kSlotsPerSegment; i += a) every |= uint64_t{1} << i;
  }
  starts &= every;
  return starts == 0 ? -1 : __builtin_ctzll(starts);
}

Pool* arena_acquire_pool(unsigned slots, bool* new_high, unsigned cls, bool* intact) noexcept {
  LockGuard g(g_arena_lock);
  maybe_purge_locked();
  Segment* found = nullptr;
  int at = -1;
  // First a pool of the class released intact, then runs that are still
  // resident (dirty), then any free run.
  if (intact != nullptr) {
    *intact = false;
    if (Pool* p = g_intact[cls]; p != nullptr && p->slots == slots) {
      intact_remove(p);
      found = segment_of(p->start);
      at = static_cast<int>(p->first_slot);
      *intact = true;
    }
  }
  for (Segment* s = g_segments; s != nullptr && at < 0; s = s->next) {
    if ((at = arena_find_run(s->dirty_slots, slots)) >= 0) found = s;
  }
  for (Segment* s = g_segments; s != nullptr && at < 0; s = s->next) {
    if ((at = arena_find_run(s->free_slots, slots)) >= 0) found = s;
  }
  if (at < 0) {
    found = segment_create();
    if (found == nullptr) return nullptr;
    at = static_cast<int>(pool_align_slots(slots));  // the first aligned index after the header's slot 0
  }
  if (intact == nullptr || !*intact) intact_invalidate(found, static_cast<unsigned>(at), slots);
  uint64_t bits = ((uint64_t{1} << slots) - 1) << at;
  found->free_slots &= ~bits;
  if (!found->reserved) g_dirty_count -= static_cast<size_t>(__builtin_popcountll(found->dirty_slots & bits));
  found->dirty_slots &= ~bits;
  Pool* p = &found->pools[at];
  p->slots = static_cast<uint8_t>(slots);
  for (unsigned i = 0; i < slots; ++i) set_pool_of(found, at + i, p);
  ++g_pools_in_use;
  g_slots_in_use += slots;
  // A new high worth a statistics sample: one sixty-fourth above the last
  // (every new high up to 64 slots), so that a heap growing to N slots takes
  // O(log N) samples, not one per pool.
  if (new_high != nullptr) {
    *new_high = g_slots_in_use > g_slots_reported + g_slots_reported / 64;
    if (*new_high) g_slots_reported = g_slots_in_use;
  }
  return p;
}

void arena_release_pool(Pool* p, bool keep_intact) noexcept {
  LockGuard g(g_arena_lock);
  Segment* s = segment_of(p->start);
  unsigned at = p->first_slot;
  unsigned slots = p->slots;
  p->owner.store(nullptr, std::memory_order_relaxed);
  p->state.store(PoolState::kFree, std::memory_order_release);
  uint64_t now = os::now_ms();
  uint64_t bits = ((uint64_t{1} << slots) - 1) << at;
  for (unsigned i = 0; i < slots; ++i) {
    set_pool_of(s, at + i, &s->pools[at + i]);
    s->pools[at + i].freed_at_ms = now;
  }
  s->free_slots |= bits;
  if (!s->reserved) g_dirty_count += static_cast<size_t>(__builtin_popcountll(bits & ~s->dirty_slots));
  s->dirty_slots |= bits;
  --g_pools_in_use;
  g_slots_in_use -= slots;
  if (keep_intact) {
    p->intact = true;
    s->intact_starts |= uint64_t{1} << at;
    pool_list_push(&g_intact[p->cls], p);
  }
  purger_note();  // under the arena lock
  maybe_purge_locked();
}

size_t arena_purge(bool force) noexcept {
  LockGuard g(g_arena_lock);
  return purge_locked(force, os::now_ms());
}

bool arena_idle_purge(size_t budget, size_t* left) noexcept {
  if (!g_arena_lock.try_lock()) return false;
  purge_locked(false, os::now_ms(), budget);
  *left = g_dirty_count;
  g_arena_lock.unlock();
  return true;
}

size_t arena_reserve(size_t bytes, bool prefault) noexcept {
  LockGuard g(g_arena_lock);
  size_t made = 0;
  for (size_t have = 0; have < bytes; have += kSegmentSize, ++made) {
    Segment* s = segment_create();
    if (s == nullptr) break;
    s->reserved = true;
    if (prefault) {
      os::prefault(s->pools[1].start, kSegmentSize - kSlotSize);
      // Resident now: taken first, and returned by a trim (a reserved
      // segment's dirty slots are purged only when forced; they are not
      // counted in g_dirty_count, which the purge delay works from).
      s->dirty_slots = kAllSlots;
    }
  }
  return made;
}

ArenaStats arena_stats() noexcept {
  LockGuard g(g_arena_lock);
  ArenaStats st{};
  st.segments = g_segment_count;
  st.reserved = g_segment_count * kSegmentSize;
  st.pools_in_use = g_pools_in_use;
  st.pool_bytes_in_use = g_slots_in_use * kSlotSize;
  st.purgeable_bytes = g_dirty_count * kSlotSize;
  st.pools_dropped = g_pools_dropped;
  for (Segment* s = g_segments; s != nullptr; s = s->next) {
    st.dirty_bytes += static_cast<size_t>(__builtin_popcountll(s->dirty_slots)) * kSlotSize;
    if (s->free_slots == kAllSlots && !s->reserved) st.free_segment_bytes += kSegmentSize;
  }
  return st;
}

namespace {

// Pools found with every block on their remote stack by the last call of
// arena_drop_freed_pools, with the head word they had then (arena lock).
constexpr unsigned kMaxDropCandidates = 1024;  // 64 MiB or more of pools a pass
constinit Pool* g_drop_pool[kMaxDropCandidates] = {};
constinit uintptr_t g_drop_head[kMaxDropCandidates] = {};
constinit unsigned g_drop_count = 0;

// p, a pool in use whose remote stack was `head`, gets the dropped mark in
// its place and its slots go back to the OS, if the stack still is `head`
// and holds every block of the pool. No pool changes hands while the arena
// lock is held (acquisition and release take it), so the state and the
// capacity read here are those of the pool the stack belongs to; its owner
// waits for the lock before it carves the pool again (arena_sync).
size_t drop_locked(Pool* p, uintptr_t head) noexcept {
  // The stack as noted, loaded again before the state is read: the pushes
  // that made it came after their blocks were handed out, so after any
  // unpark of the pool (see kDroppedMark: parked pools only).
  if (p->remote.load(std::memory_order_acquire) != head ||
      p->state.load(std::memory_order_acquire) != PoolState::kParked || segment_of(p->start)->reserved)
    return 0;
  if (!pool_all_remote(p, head) ||
      !p->remote.compare_exchange_strong(head, kDroppedMark, std::memory_order_acquire, std::memory_order_relaxed))
    return 0;
  size_t bytes = size_t{p->slots} * kSlotSize;
  os::purge(p->start, bytes);
  ++g_pools_dropped;
  return bytes;
}

}  // namespace

size_t arena_drop_freed_pools(bool force) noexcept {
  size_t dropped = 0;
  // The pools noted last time, if no free and no collection touched their
  // stacks since: their owners have taken nothing back for a whole pass.
  // A few at a time, so that a thread that needs a pool meanwhile waits
  // for a few purges, not for a thousand.
  for (bool more = true; more;) {
    LockGuard g(g_arena_lock);
    for (unsigned batch = 0; g_drop_count > 0 && batch < 16; ++batch) {
      --g_drop_count;
      Pool* p = g_drop_pool[g_drop_count];
      if (in_segment(p)) dropped += drop_locked(p, g_drop_head[g_drop_count]);  // not unmapped since
    }
    more = g_drop_count > 0;
  }
  LockGuard g(g_arena_lock);
  if (!g_pools_freed_remotely.exchange(false, std::memory_order_relaxed) && !force) return dropped;
  for (Segment* s = g_segments; s != nullptr; s = s->next) {
    if (s->reserved) continue;
    for (unsigned i = 1; i < kSlotsPerSegment; ++i) {
      Pool* p = &s->pools[i];
      if (s->pool_of[i] != p) continue;  // a free slot, or inside a pool
      uintptr_t head = p->remote.load(std::memory_order_acquire);
      if (p->state.load(std::memory_order_acquire) != PoolState::kParked || !pool_all_remote(p, head)) continue;
      if (force) {
        dropped += drop_locked(p, head);
      } else if (g_drop_count < kMaxDropCandidates) {
        g_drop_pool[g_drop_count] = p;
        g_drop_head[g_drop_count] = head;
        ++g_drop_count;
      } else {
        g_pools_freed_remotely.store(true, std::memory_order_relaxed);  // the rest next time
      }
    }
  }
  return dropped;
}

bool arena_drop_pending() noexcept {
  LockGuard g(g_arena_lock);
  return g_drop_count != 0;
}

void arena_sync() noexcept { LockGuard g(g_arena_lock); }

void arena_for_each_pool(void (*fn)(const Pool*, void*), void* arg) noexcept {
  LockGuard g(g_arena_lock);
  for (Segment* s = g_segments; s != nullptr; s = s->next) {
    for (unsigned i = 1; i < kSlotsPerSegment; ++i) {
      const Pool* p = &s->pools[i];
      // Acquire: a pool's owner sets it up (its class) outside the arena
      // lock, then publishes it by its state (heap_alloc_slow).
      if (s->pool_of[i] == p && p->state.load(std::memory_order_acquire) != PoolState::kFree) fn(p, arg);
    }
  }
}

void arena_lock_for_fork() noexcept { g_arena_lock.lock_for_fork(); }
void arena_unlock_for_fork(bool child) noexcept { g_arena_lock.unlock_after_fork(child); }

}  // namespace pm
