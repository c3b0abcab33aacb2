#include "heap.h"

#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <new>

#include "check_full.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "purger.h"
#include "profile.h"
#include "segment.h"
#include "stats.h"

namespace pm {

// Its list is empty: `free` points at its end marker, whose link (with the
// key 0) decodes to null.
constinit Pool g_empty_pool{Pool::Empty{}};

namespace {

// Registry of live heaps, abandoned pools, and the heap free list.
constinit SpinLock g_heap_lock;
constinit Heap* g_heaps = nullptr;
constinit std::atomic<size_t> g_heap_count{0};  // live heaps, readable without the lock
constinit Heap* g_free_heaps = nullptr;  // recycled heap structs, linked by next_heap
constinit char* g_heap_chunk = nullptr;  // bump area for new heap structs
constinit size_t g_heap_chunk_left = 0;
constinit Pool* g_abandoned[kNumClasses] = {};
constinit RetiredCounters g_retired = {};

void add_used(Pool* p, int32_t delta) noexcept {
  p->used = p->used + delta;
}

// The current pool of a bin (see kCurrentBias): its blocks out are its
// `used` less the bias plus the pops since it became current, which are the
// requests of its class its heap counted since (every pop of a class is
// one). They are known again when it stops being current (leave_current)
// without a walk of its lists.
void make_current(Heap* h, unsigned cls, Pool* p) noexcept {
  p->allocs_mark = heap_allocs(h, cls);
  add_used(p, kCurrentBias);
  set_bin(h, cls, p);
}

// The blocks out of h's current pool p (blocks on its remote stack count
// as out, as `used` counts them).
// The count alone, for a pool that may not satisfy it (a fork child's
// check of a dead thread's pool).
int32_t counted_out(const Heap* h, const Pool* p) noexcept {
  uint64_t pops = heap_allocs(h, p->cls) - p->allocs_mark;
  return static_cast<int32_t>(static_cast<uint64_t>(p->used - kCurrentBias) + pops);
}
int32_t blocks_out(const Heap* h, const Pool* p) noexcept {
  int32_t out = counted_out(h, p);
  PM_ASSERT(out == static_cast<int32_t>(p->carved - pool_listed_blocks(p)));
  return out;
}

// h's current pool p is current no more: `used` counts its blocks out again.
void leave_current(const Heap* h, Pool* p) noexcept { p->used = blocks_out(h, p); }

bool has_room(const Pool* p) noexcept {
  return has_free_block(p) || p->local_free != nullptr || p->carved < p->capacity ||
         p->remote.load(std::memory_order_relaxed) != 0;
}

int32_t real_used(const Pool* p) noexcept {
  int32_t u = p->used;
  return p->state.load(std::memory_order_relaxed) == PoolState::kParked ? u + kParkBias : u;
}

void release(Pool* p) noexcept {
  PM_ASSERT(real_used(p) == 0 && p->remote.load(std::memory_order_relaxed) == 0);
  arena_release_pool(p, true);
}

// Unparks a parked pool of h whose notification we now hold.
void unpark(Heap* h, Pool* p) noexcept {
  pool_list_remove(&h->full, p);
  add_used(p, kParkBias);
  p->state.store(PoolState::kActive, std::memory_order_relaxed);
  pool_collect_remote(p);
  if (real_used(p) == 0) {
    release(p);
    return;
  }
  pool_list_push(&h->partial[p->cls], p);
}

void drain_pending(Heap* h) noexcept {
  Pool* p = h->pending.exchange(nullptr, std::memory_order_acquire);
  while (p != nullptr) {
    Pool* next = p->pending_next;
    p->pending_next = nullptr;
    PM_ASSERT(p->owner.load(std::memory_order_relaxed) == h);
    unpark(h, p);
    p = next;
  }
}

// Parks the full current pool so that the first remote free reports it
// back. Returns false when remote frees arrived meanwhile and the pool stays
// current.
bool park(Heap* h, Pool* p) noexcept {
  leave_current(h, p);
  add_used(p, -kParkBias);
  p->state.store(PoolState::kParked, std::memory_order_relaxed);
  // The mark goes only onto an empty stack: remote frees that came
  // meanwhile keep the pool current (see kParkedMark).
  uintptr_t empty = 0;
  if (!p->remote.compare_exchange_strong(empty, kParkedMark, std::memory_order_acq_rel, std::memory_order_relaxed)) {
    add_used(p, kParkBias);
    make_current(h, p->cls, p);
    p->state.store(PoolState::kActive, std::memory_order_relaxed);
    return false;
  }
  pool_list_push(&h->full, p);
  return true;
}

// An abandoned pool of class cls with room, adopted by h; nullptr if none.
Pool* adopt(Heap* h, unsigned cls) noexcept {
  if (__atomic_load_n(&g_abandoned[cls], __ATOMIC_RELAXED) == nullptr) return nullptr;
  LockGuard g(g_heap_lock);
  unsigned looked = 0;
  for (Pool* p = g_abandoned[cls]; p != nullptr && looked < 32; ++looked) {
    Pool* next = p->next;
    pool_collect_remote(p);
    if (p->used == 0) {
      pool_list_remove(&g_abandoned[cls], p);
      release(p);
    } else if (has_room(p)) {
      pool_list_remove(&g_abandoned[cls], p);
      p->owner.store(h, std::memory_order_release);
      p->state.store(PoolState::kActive, std::memory_order_relaxed);
      return p;
    }
    p = next;
  }
  return nullptr;
}

// How often the slow path looks for them: once per purge delay, and no
// more than every 100 ms when the delay is shorter (at a delay of 0 every
// slow path walked every list, and pools went back and were taken again
// in turn), read off the clock at every kSweepEvery-th slow path.
uint64_t sweep_interval_ms() noexcept {
  uint64_t d = options().purge_delay_ms;
  return d < 100 ? 100 : d;
}

// Gives back the pools on h's partial lists whose blocks out are all on
// their remote stacks: other threads freed them whole, and h, busy with
// other classes, would not come back to take them. Once per purge delay,
// from the slow path; the stack of every other pool is left as it is.
void release_freed_partials(Heap* h) noexcept {
  for (unsigned c = 0; c < kNumClasses; ++c) {
    for (Pool* p = h->partial[c]; p != nullptr;) {
      Pool* next = p->next;
      uintptr_t head = p->remote.load(std::memory_order_acquire);
      if (head != 0 && head != kDroppedMark && static_cast<int64_t>(remote_count(head)) == p->used) {
        pool_collect_remote(p);
        if (p->used == 0) {
          pool_list_remove(&h->partial[c], p);
          release(p);
        }
      }
      p = next;
    }
  }
}

void abandon_pool(Pool* p) noexcept {  // g_heap_lock held
  if (p->state.load(std::memory_order_relaxed) == PoolState::kParked)
    p->used = p->used + kParkBias;
  p->owner.store(nullptr, std::memory_order_release);
  p->state.store(PoolState::kAbandoned, std::memory_order_relaxed);
  pool_collect_remote(p);
  if (p->used == 0) {
    release(p);
    return;
  }
  pool_list_push(&g_abandoned[p->cls], p);
}

}  // namespace

constinit Heap g_empty_heap{&g_empty_pool};
constinit thread_local Heap* tl_heap [[gnu::tls_model("initial-exec")]] = &g_empty_heap;

void* pool_pop_checked(Heap* h, Pool* p, size_t cls) noexcept {
  Block* b = p->free;
  if (b == end_marker(p)) return heap_alloc_slow(h, cls);
  // b came from a link that stayed in the segment (or is a list's first
  // block): it is mapped, and must be a free block of p.
  if constexpr (kHardened)
    if (b->tag != free_tag(p)) [[unlikely]]
      report_untagged_free_block(p, b);
  pool_check_link(p, b, decode_link(p, b));  // returns only for the end of the list
  if (not_block_start(p, reinterpret_cast<uintptr_t>(b))) [[unlikely]]
    report_untagged_free_block(p, b);
  p->free = end_marker(p);
  if constexpr (kHardened) b->tag = 0;
  bump(h->allocs[cls]);
  return b;
}

void* pool_pop_checked_direct(Heap* h, Pool* p, size_t g) noexcept {
  return pool_pop_checked(h, p, kClasses.by_granule[g]);
}

void* heap_alloc_slow(Heap* h, unsigned cls) noexcept {
  if (h == &g_empty_heap) {
    if (thread_heap_torn_down()) [[unlikely]]
      return alloc_after_teardown(cls);
    h = thread_init();
    if (h == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
  }
  if (g_check_full && h != &g_check_heap) [[unlikely]]
    return check_full_alloc(cls);
  if (h->pending.load(std::memory_order_relaxed) != nullptr) drain_pending(h);
  if (h != &g_check_heap) [[likely]]  // full mode holds its lock here: it polls once it is released
    purger_poll();
  if (profile_enabled()) [[unlikely]]
    profile_tick();
  if (--h->sweep_countdown == 0) [[unlikely]] {
    h->sweep_countdown = kSweepEvery;
    if (uint64_t now = os::now_ms(); now - h->swept_ms >= sweep_interval_ms()) {
      h->swept_ms = now;
      release_freed_partials(h);
    }
  }
  Pool* p = h->bins[cls];
  for (;;) {
    if (p != &g_empty_pool) {
      uint32_t carved = p->carved;
      if (has_free_block(p) || pool_refill(p)) {
        if (p->carved != carved) stats_pool_carved(h, cls);  // live blocks may be at a new high
        return pool_pop(h, p, cls);
      }
      if (!park(h, p)) continue;
      set_bin(h, cls, &g_empty_pool);
    }
    if ((p = h->partial[cls]) != nullptr) {
      pool_list_remove(&h->partial[cls], p);
    } else if ((p = adopt(h, cls)) == nullptr) {
      bool new_high = false, intact = false;
      p = arena_acquire_pool(kClasses.slots[cls], &new_high, cls, &intact);
      // Out of memory or of address space (ulimit -v): what the caches hold
      // may make room for a new segment once given back. Not in full mode,
      // which holds its lock here.
      if (p == nullptr && h != &g_check_heap && release_for_retry())
        p = arena_acquire_pool(kClasses.slots[cls], &new_high, cls, &intact);
      if (p == nullptr) {
        errno = ENOMEM;
        return nullptr;
      }
      if (intact) pool_recycle(p);
      else pool_init(p, cls);
      p->owner.store(h, std::memory_order_release);
      p->state.store(PoolState::kActive, std::memory_order_release);
      // Sample the peaks when pool memory reaches a new high, not on every
      // acquisition of a program that empties and refills pools in cycles
      // (the peaks are sampled lower bounds either way).
      if (new_high || profile_enabled()) stats_pool_acquired();
    }
    make_current(h, cls, p);
  }
}

void heap_free_slow(Heap* h, Pool* p) noexcept {
  if (p->state.load(std::memory_order_relaxed) == PoolState::kParked) {
    uintptr_t mark = kParkedMark;
    // Taking the mark back means no remote thread will report this pool:
    // unpark it ourselves. Otherwise it is on its way to h->pending.
    if (p->remote.compare_exchange_strong(mark, 0, std::memory_order_acq_rel, std::memory_order_relaxed))
      unpark(h, p);
    return;
  }
  if (h->bins[p->cls] == p) {  // the current pool ran through its bias
    leave_current(h, p);
    make_current(h, p->cls, p);
    return;
  }
  PM_ASSERT(p->used == 0 && h->bins[p->cls] != p);
  pool_list_remove(&h->partial[p->cls], p);
  release(p);  // the purger is started by allocations only (see purger.h)
}

bool heap_reclaim(Heap* h, Pool* p) noexcept {
  LockGuard g(g_heap_lock);
  if (p->state.load(std::memory_order_relaxed) != PoolState::kAbandoned) return false;
  unsigned cls = p->cls;
  pool_list_remove(&g_abandoned[cls], p);
  p->owner.store(h, std::memory_order_release);
  p->state.store(PoolState::kActive, std::memory_order_relaxed);
  pool_collect_remote(p);
  pool_list_push(&h->partial[cls], p);
  return true;
}

namespace {

// h's counters join the retired ones, its thread cache of large blocks goes
// to the shared cache unless `keep_tcache`, and h leaves the registry; it
// is recycled for a new thread unless `recycle` is false (a pool that still
// names it as owner must never find it some other thread's). g_heap_lock
// held.
void retire_heap(Heap* h, bool keep_tcache, bool recycle) noexcept {
  for (unsigned c = 0; c < kNumClasses; ++c) {
    g_retired.allocs[c] += heap_allocs(h, c);
    g_retired.frees[c] += h->frees[c].load(std::memory_order_relaxed);
    g_retired.remote_frees[c] += h->remote_frees[c].load(std::memory_order_relaxed);
  }
  g_retired.reallocs += h->reallocs.load(std::memory_order_relaxed);
  // Freed large blocks go to the shared cache; the counters stay here.
  if (!keep_tcache) (void)large_tcache_flush(&h->large);
  large_tcache_add(h->large, &g_retired.large);
  if (h->prev_heap != nullptr) h->prev_heap->next_heap = h->next_heap;
  else g_heaps = h->next_heap;
  if (h->next_heap != nullptr) h->next_heap->prev_heap = h->prev_heap;
  h->live = false;
  g_heap_count.fetch_sub(1, std::memory_order_relaxed);
  if (!recycle) return;
  h->next_heap = g_free_heaps;
  g_free_heaps = h;
}

// --- After fork, in the child, which has only the forking thread. ---

// A remote free that took a parked pool's notification (pool_free_remote)
// and had not yet put the pool on its owner's pending list when the fork
// came: in the child no thread will, and the pool would stay parked for
// good (and the owner's exit wait for it). h's thread forked, so it was in
// none of its own slow paths.
void relist_lost_notifications(Heap* h) noexcept {
  for (Pool* p = h->full; p != nullptr; p = p->next) {
    if (p->remote.load(std::memory_order_relaxed) == kParkedMark) continue;  // still waiting for its first remote free
    bool listed = false;
    for (Pool* q = h->pending.load(std::memory_order_relaxed); q != nullptr && !listed; q = q->pending_next)
      listed = q == p;
    if (listed) continue;
    p->pending_next = h->pending.load(std::memory_order_relaxed);
    h->pending.store(p, std::memory_order_relaxed);
  }
}

// One pass over the arena for all heaps: each heap's owned_at_fork, and
// the pools in use (an upper bound on any list's length).
void count_owned(const Pool* p, void* arg) noexcept {
  ++*static_cast<size_t*>(arg);
  if (Heap* h = p->owner.load(std::memory_order_relaxed); h != nullptr) ++h->owned_at_fork;
}

// A list of h's pools as its thread's slow paths leave it between two
// changes: linked both ways, every pool h's and in `state`, no longer than
// the pools in use (so no cycle). Adds its length to *n.
bool list_intact(const Heap* h, const Pool* head, PoolState state, size_t limit, size_t* n) noexcept {
  const Pool* prev = nullptr;
  for (const Pool* p = head; p != nullptr; prev = p, p = p->next) {
    if (p->prev != prev || p->owner.load(std::memory_order_relaxed) != h ||
        p->state.load(std::memory_order_relaxed) != state || ++*n > limit)
      return false;
  }
  return true;
}

// One pool of a heap whose thread does not exist in the child: abandoned,
// for the child's threads to adopt or take over at their frees, when its
// counts and lists agree. A pool whose thread was inside malloc or free at
// the fork may not; it keeps its dead owner (its blocks stay where they
// are) and the function returns false.
bool abandon_dead_pool(Pool* p) noexcept {
  if (p->state.load(std::memory_order_relaxed) == PoolState::kAbandoned) return true;  // met twice
  uintptr_t mark = kParkedMark;  // no thread is left to report it
  p->remote.compare_exchange_strong(mark, 0, std::memory_order_relaxed);
  p->pending_next = nullptr;
  if (!pool_check_invariants(p)) return false;
  abandon_pool(p);
  return true;
}

// The heap of a thread that does not exist in the child. Its pools go to
// the abandoned lists, as at a thread's exit, so that the child reuses and
// returns their memory. Unless its thread was in a slow path of its own at
// the fork (a list half-changed, pools owned but listed nowhere), which
// leaves it as it is: its memory is then kept, never reused, but never
// handed out twice either.
void retire_dead_heap(Heap* h, size_t pools_in_use) noexcept {
  size_t listed = 0;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    if (!list_intact(h, h->partial[c], PoolState::kActive, pools_in_use, &listed)) return;
    if (Pool* cur = h->bins[c]; cur != &g_empty_pool) {
      if (cur->owner.load(std::memory_order_relaxed) != h || cur->state.load(std::memory_order_relaxed) != PoolState::kActive)
        return;
      ++listed;
    }
  }
  if (!list_intact(h, h->full, PoolState::kParked, pools_in_use, &listed)) return;
  bool all = listed == h->owned_at_fork;
  h->pending.store(nullptr, std::memory_order_relaxed);
  for (Pool* p = h->full; p != nullptr;) {
    Pool* next = p->next;
    all &= abandon_dead_pool(p);
    p = next;
  }
  h->full = nullptr;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    if (Pool* cur = h->bins[c]; cur != &g_empty_pool) {
      cur->used = counted_out(h, cur);  // as leave_current does; checked next
      all &= abandon_dead_pool(cur);
    }
    set_bin(h, c, &g_empty_pool);
    for (Pool* p = h->partial[c]; p != nullptr;) {
      Pool* next = p->next;
      all &= abandon_dead_pool(p);
      p = next;
    }
    h->partial[c] = nullptr;
  }
  // A thread inside its cache of large blocks at the fork leaves it as it was.
  bool busy = h->large.busy.load(std::memory_order_relaxed);
  retire_heap(h, busy, all && !busy);
}

}  // namespace

void heap_after_fork_child(Heap* self) noexcept {
  LockGuard g(g_heap_lock);
  if (self != &g_empty_heap && self != &g_check_heap) {
    self->tid = os::thread_id();  // the forking thread's own id in the child (see heaps_reap_dead)
    relist_lost_notifications(self);
  }
  if (g_heaps == nullptr || (g_heaps == self && self->next_heap == nullptr)) return;  // no other thread had a heap
  // `owner` of a pool may name any heap, live or recycled: count them all.
  for (Heap* h = g_heaps; h != nullptr; h = h->next_heap) h->owned_at_fork = 0;
  for (Heap* h = g_free_heaps; h != nullptr; h = h->next_heap) h->owned_at_fork = 0;
  size_t pools_in_use = 0;
  arena_for_each_pool(count_owned, &pools_in_use);
  for (Heap* h = g_heaps; h != nullptr;) {
    Heap* next = h->next_heap;
    if (h != self) retire_dead_heap(h, pools_in_use);
    h = next;
  }
  // Heaps kept as they were name threads of the parent: never reaped as
  // dead (heaps_reap_dead), since their lists may be half-changed.
  for (Heap* h = g_heaps; h != nullptr; h = h->next_heap)
    if (h != self) h->tid = 0;
}

void heap_abandon(Heap* h) noexcept {
  LockGuard g(g_heap_lock);
  // Take back notifications of parked pools; those already taken are in
  // flight to h->pending and must arrive before h can be recycled.
  unsigned in_flight = 0;
  for (Pool* p = h->full; p != nullptr; p = p->next) {
    uintptr_t mark = kParkedMark;
    if (!p->remote.compare_exchange_strong(mark, 0, std::memory_order_acq_rel, std::memory_order_relaxed)) ++in_flight;
  }
  while (in_flight > 0) {
    Pool* p = h->pending.exchange(nullptr, std::memory_order_acquire);
    if (p == nullptr) {
      sched_yield();
      continue;
    }
    for (; p != nullptr; p = p->pending_next) --in_flight;
  }
  for (Pool* p = h->full; p != nullptr;) {
    Pool* next = p->next;
    abandon_pool(p);
    p = next;
  }
  h->full = nullptr;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    if (Pool* cur = h->bins[c]; cur != &g_empty_pool) {
      leave_current(h, cur);
      abandon_pool(cur);
    }
    set_bin(h, c, &g_empty_pool);
    for (Pool* p = h->partial[c]; p != nullptr;) {
      Pool* next = p->next;
      abandon_pool(p);
      p = next;
    }
    h->partial[c] = nullptr;
  }
  retire_heap(h, false, true);
}

Heap* heap_create() noexcept {
  LockGuard g(g_heap_lock);
  Heap* h = g_free_heaps;
  if (h != nullptr) {
    g_free_heaps = h->next_heap;
  } else {
    if (g_heap_chunk_left < kHeapBytes) {
      g_heap_chunk = static_cast<char*>(os::map(kHeapChunk));
      if (g_heap_chunk == nullptr) return nullptr;
      g_heap_chunk_left = kHeapChunk;
    }
    h = reinterpret_cast<Heap*>(g_heap_chunk);
    g_heap_chunk += kHeapBytes;
    g_heap_chunk_left -= kHeapBytes;
  }
  new (h) Heap(&g_empty_pool);
  h->tid = os::in_vfork_child() ? 0 : os::thread_id();
  h->live = true;
  h->prev_heap = nullptr;
  h->next_heap = g_heaps;
  if (g_heaps != nullptr) g_heaps->prev_heap = h;
  g_heaps = h;
  g_heap_count.fetch_add(1, std::memory_order_relaxed);
  return h;
}

namespace {

// Takes in the remote frees of every pool on the list and returns the pools
// that are then empty to the arena.
void release_empty(Pool** list) noexcept {
  for (Pool* p = *list; p != nullptr;) {
    Pool* next = p->next;
    pool_collect_remote(p);
    if (p->used == 0) {
      pool_list_remove(list, p);
      release(p);
    }
    p = next;
  }
}

}  // namespace

void heap_collect(bool force) noexcept {
  Heap* h = tl_heap;
  if (h != &g_empty_heap) {
    drain_pending(h);
    for (unsigned c = 0; c < kNumClasses; ++c) {
      release_empty(&h->partial[c]);
      Pool* cur = h->bins[c];
      if (force && cur != &g_empty_pool) {
        pool_collect_remote(cur);
        if (blocks_out(h, cur) == 0) {
          leave_current(h, cur);
          set_bin(h, c, &g_empty_pool);
          release(cur);
        }
      }
    }
  }
  LockGuard g(g_heap_lock);
  for (unsigned c = 0; c < kNumClasses; ++c) release_empty(&g_abandoned[c]);
}

size_t heaps_live() noexcept { return g_heap_count.load(std::memory_order_relaxed); }

void heap_counter_totals(CounterTotals* out) noexcept {
  LockGuard g(g_heap_lock);
  out->threads = 0;
  out->reallocs = g_retired.reallocs;
  for (unsigned c = 0; c < kNumClasses; ++c) out->allocs[c] = g_retired.allocs[c];
  for (Heap* h = g_heaps; h != nullptr; h = h->next_heap) {
    for (unsigned c = 0; c < kNumClasses; ++c) out->allocs[c] += heap_allocs(h, c);
    out->reallocs += h->reallocs.load(std::memory_order_relaxed);
    ++out->threads;
  }
  std::atomic_thread_fence(std::memory_order_acquire);  // the frees are read after the requests
  for (unsigned c = 0; c < kNumClasses; ++c) {
    out->frees[c] = g_retired.frees[c];
    out->remote_frees[c] = g_retired.remote_frees[c];
  }
  for (Heap* h = g_heaps; h != nullptr; h = h->next_heap) {
    for (unsigned c = 0; c < kNumClasses; ++c) {
      out->frees[c] += h->frees[c].load(std::memory_order_relaxed);
      out->remote_frees[c] += h->remote_frees[c].load(std::memory_order_relaxed);
    }
  }
}

void class_counters(unsigned cls, uint64_t* allocs, uint64_t* frees) noexcept {
  LockGuard g(g_heap_lock);
  uint64_t a = g_retired.allocs[cls], f = g_retired.frees[cls];
  for (Heap* h = g_heaps; h != nullptr; h = h->next_heap) a += heap_allocs(h, cls);
  std::atomic_thread_fence(std::memory_order_acquire);  // the frees are read after the requests
  for (Heap* h = g_heaps; h != nullptr; h = h->next_heap) f += h->frees[cls].load(std::memory_order_relaxed);
  *allocs = a;
  *frees = f;
}

void large_tcache_totals(TcacheTotals* out, void (*also)(void*), void* arg) noexcept {
  LockGuard g(g_heap_lock);
  *out = g_retired.large;
  for (Heap* h = g_heaps; h != nullptr; h = h->next_heap) large_tcache_add(h->large, out);
  also(arg);
}

void heaps_reap_dead() noexcept {
  constexpr unsigned kBatch = 16;
  Heap* dead[kBatch];
  unsigned n = 0;
  {
    LockGuard g(g_heap_lock);
    const int saved = errno;
    const long pid = ::getpid();
    for (Heap* h = g_heaps; h != nullptr && n < kBatch; h = h->next_heap) {
      // ESRCH: no such thread in the process. A thread id taken again by a
      // newer thread hides a dead heap (kept, as before); it never makes a
      // live one look dead.
      if (h->tid > 0 && ::syscall(SYS_tgkill, pid, static_cast<long>(h->tid), 0) != 0 && errno == ESRCH)
        dead[n++] = h;
    }
    errno = saved;
  }
  for (unsigned i = 0; i < n; ++i) {
    heap_abandon(dead[i]);
    purger_thread_exited();
  }
}

void heaps_drain_large(bool force) noexcept {
  LockGuard g(g_heap_lock);
  Heap* mine = tl_heap;
  bool any = false;
  for (Heap* h = g_heaps; h != nullptr; h = h->next_heap)
    if (h != mine) any |= large_tcache_request(&h->large, force);
  if (!any) return;
  // One barrier for every cache asked; without it no other thread's cache is touched.
  bool fenced = os::barrier_all_threads();
  for (Heap* h = g_heaps; h != nullptr; h = h->next_heap) {
    if (h == mine || !h->large.drain.load(std::memory_order_relaxed)) continue;
    if (fenced) (void)large_tcache_take(&h->large);
    else large_tcache_cancel(&h->large);
  }
}

void heap_lock_for_fork() noexcept { g_heap_lock.lock_for_fork(); }
void heap_unlock_for_fork(bool child) noexcept { g_heap_lock.unlock_after_fork(child); }

}  // namespace pm
