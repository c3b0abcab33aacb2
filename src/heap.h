// Thread heaps (the thread cache): one per thread, found through an
// initial-exec thread-local pointer. Every thread starts on the shared,
// immutable empty heap whose bins hold an empty pool, so the first
// allocation falls into the slow path that sets the thread up: the fast path
// has no "is this thread initialised?" branch.
//
// Invariants (owner thread only, except `pending` and the statistics):
//   bins[c] is the pool the thread allocates class c from (or &g_empty_pool);
//   partial[c] lists other kActive pools of class c (via next/prev);
//   full lists the heap's kParked pools;
//   every pool listed here has owner == this heap.
#pragma once

#include <atomic>
#include <cstdint>

#include "large.h"
#include "pool.h"
#include "size_classes.h"

namespace pm {

// Requests up to kDirectMax bytes find their pool in one load: a table of
// the bins by granule ((n + 15) / 16), next to the requests' counters.
inline constexpr size_t kDirectMax = 1024;
inline constexpr unsigned kDirectGranules = kDirectMax / kMinAlign + 1;

// The slow path reads the clock at every this many calls (heap_alloc_slow).
inline constexpr uint32_t kSweepEvery = 64;

struct Heap {
  constexpr explicit Heap(Pool* empty) noexcept {
    for (auto& b : direct) b = empty;
    for (auto& b : bins) b = empty;
  }

  // direct[g] == bins[class of granule g], always (set_bin writes both).
  Pool* direct[kDirectGranules] = {};
  // Requests served through `direct`, by granule; with `allocs`, the
  // requests of each class (heap_allocs). Owner-written like the others.
  std::atomic<uint64_t> direct_allocs[kDirectGranules] = {};
  Pool* bins[kNumClasses] = {};
  // Statistics counters, written only by the owner (single writer, relaxed).
  std::atomic<uint64_t> allocs[kNumClasses] = {};
  std::atomic<uint64_t> frees[kNumClasses] = {};  // local and remote frees by this thread
  std::atomic<uint64_t> remote_frees[kNumClasses] = {};  // of which into other threads' pools
  std::atomic<uint64_t> reallocs = {};  // realloc calls by this thread

  Pool* partial[kNumClasses] = {};
  // When the slow path last looked for partial pools that other threads
  // freed whole (release_freed_partials), on os::now_ms's clock, and the
  // slow paths left before it reads the clock again.
  uint64_t swept_ms = 0;
  uint32_t sweep_countdown = 1;
  Pool* full = nullptr;
  std::atomic<Pool*> pending{nullptr};  // parked pools that received remote frees
  LargeTcache large;                    // freed large blocks kept for this thread
  Heap* next_heap = nullptr;            // registry of live heaps
  Heap* prev_heap = nullptr;
  // The thread's id, which heaps_reap_dead asks the kernel about; 0 for a
  // heap never to be reaped: one set up in a vfork child (whose id names
  // no thread of this process, while the thread whose memory and TLS the
  // child ran on goes on using the heap), or kept across a fork.
  int tid = 0;
  bool live = false;
  size_t owned_at_fork = 0;  // fork child: pools naming this heap as owner (heap_after_fork_child)
};

extern constinit Heap g_empty_heap;
extern constinit Pool g_empty_pool;
extern constinit thread_local Heap* tl_heap [[gnu::tls_model("initial-exec")]];

[[gnu::noinline]] void* pool_pop_checked(Heap* h, Pool* p, size_t cls) noexcept;
// The same for a request through `direct`, by its granule g.
[[gnu::noinline]] void* pool_pop_checked_direct(Heap* h, Pool* p, size_t g) noexcept;

// Counters with a single writer (the owner thread), read by others with
// relaxed atomic loads. On x86-64 the owner's update is one plain add to
// memory: an aligned 8-byte store is never torn, and no lock prefix or
// load/store pair is needed. Sanitizer builds use the portable form, which
// the tools can see.
#if defined(__x86_64__) && !defined(PM_SANITIZER_BUILD)
[[gnu::always_inline]] inline void bump(std::atomic<uint64_t>& c) noexcept {
  static_assert(sizeof(c) == sizeof(uint64_t));
  asm("addq $1, %0" : "+m"(c));
}
// --used <= 0, as one subtract-from-memory and a branch on its flags.
[[gnu::always_inline]] inline bool release_one(int32_t& used) noexcept {
  bool empty;
  asm("subl $1, %0" : "+m"(used), "=@ccle"(empty));
  return empty;
}
#else
[[gnu::always_inline]] inline void bump(std::atomic<uint64_t>& c) noexcept {
  c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}
[[gnu::always_inline]] inline bool release_one(int32_t& used) noexcept { return --used <= 0; }
#endif

// malloc pops a heap's current pool without counting the block in the
// pool: one store fewer per request. The pool's `used` is instead this bias
// more than its blocks out less the pops since it became current, so that
// neither a pop nor the free of its last block leaves the fast path; a free
// that runs through the bias (after about 2^20 requests) takes the slow
// path, which sets it up again (heap.cpp, make_current).
inline constexpr int32_t kCurrentBias = int32_t{1} << 20;

// Pops the head of p->free and counts the request (`count()`). The decoded
// link must stay in the segment and, hardened, the block must carry its
// free tag; anything else goes to `checked` (a tail
// call of pool_pop_checked, which takes the slow path when the head is the
// end marker (an empty list), finishes the pop of a list's last block, or
// aborts on a corrupted list). Every call out of this function is a tail
// call, so the fast path needs no stack frame. p is a current pool, whose
// `used` a pop leaves alone (see kCurrentBias).
template <class Count, class Checked>
[[gnu::always_inline]] inline void* pool_pop_counted(Pool* p, Count count, Checked checked) noexcept {
  Block* b = p->free;
#if defined(__x86_64__)
  // b is what malloc returns: in the return register from the start, where
  // the compiler would otherwise copy it there at the end.
  asm("" : "+a"(b));
#endif
  Block* next = decode_link(p, b);
  uintptr_t off_list = (reinterpret_cast<uintptr_t>(next) ^ reinterpret_cast<uintptr_t>(b)) >> kSegmentShift;
  // Only a block that carries the free tag is handed out, so no block goes
  // out twice without a free in between: a double free that a write after
  // the first free hid from free's tag test made a cycle of the list, and a
  // bad link that stays in the segment lands on a live block or on
  // metadata. Both go to `checked`, which aborts. The tag shares the line
  // of the link just read: two ALU operations and an OR into the link test.
  if constexpr (kHardened) off_list |= b->tag ^ free_tag(p);
  if (off_list != 0) [[unlikely]]
    return checked();
  p->free = next;
  // The next block of this class is likely cold by the time it is asked
  // for: start loading it now, while the caller works on this one.
  __builtin_prefetch(next, 1);
  if constexpr (kHardened) b->tag = 0;
  count();
  return b;
}
[[gnu::always_inline]] inline void* pool_pop(Heap* h, Pool* p, size_t cls) noexcept {
  return pool_pop_counted(
      p, [=] { bump(h->allocs[cls]); }, [=] { return pool_pop_checked(h, p, cls); });
}

// The granules of class cls that `direct` covers, [first, last] (empty
// when first > last: the class is above kDirectMax).
[[gnu::always_inline]] inline unsigned first_direct_granule(unsigned cls) noexcept {
  return cls == 0 ? 0 : kClasses.size[cls - 1] / kMinAlign + 1;
}
[[gnu::always_inline]] inline unsigned last_direct_granule(unsigned cls) noexcept {
  unsigned last = kClasses.size[cls] / kMinAlign;
  return last < kDirectGranules ? last : kDirectGranules - 1;
}
// Makes p the pool h allocates class cls from (bins and direct alike).
inline void set_bin(Heap* h, unsigned cls, Pool* p) noexcept {
  h->bins[cls] = p;
  for (unsigned g = first_direct_granule(cls), last = last_direct_granule(cls); g <= last; ++g) h->direct[g] = p;
}
// Requests of class cls served by h, through either table.
inline uint64_t heap_allocs(const Heap* h, unsigned cls) noexcept {
  uint64_t n = h->allocs[cls].load(std::memory_order_relaxed);
  for (unsigned g = first_direct_granule(cls), last = last_direct_granule(cls); g <= last; ++g)
    n += h->direct_allocs[g].load(std::memory_order_relaxed);
  return n;
}

// Slow paths (heap.cpp).
[[gnu::noinline]] void* heap_alloc_slow(Heap* h, unsigned cls) noexcept;
// The OS refused a mapping: when the allocator holds anything mapped for
// reuse (cached large mappings, empty pool segments), it gives it all back
// as malloc_trim does and returns true, and the caller tries once more;
// false when it holds nothing (api.cpp).
[[nodiscard]] bool release_for_retry() noexcept;
// A local free made pool->used <= 0: the pool became empty or was parked.
[[gnu::noinline]] void heap_free_slow(Heap* h, Pool* p) noexcept;
// Thread exit: hand every pool back for other threads to adopt.
void heap_abandon(Heap* h) noexcept;
// A free by h into p, a pool whose owner exited: h takes the pool over (it
// joins h's partial list), so that this free and the next ones into it are
// local and the pool goes back to the arena as soon as it is empty. False
// when another thread took it first.
[[nodiscard]] bool heap_reclaim(Heap* h, Pool* p) noexcept;
// Return empty pools of the calling thread and abandoned pools to the arena.
void heap_collect(bool force) noexcept;
// Heaps are carved, kHeapBytes each, from mappings of kHeapChunk bytes.
inline constexpr size_t kHeapChunk = 64 * 1024;
inline constexpr size_t kHeapBytes = (sizeof(Heap) + 63) & ~size_t{63};
[[nodiscard]] Heap* heap_create() noexcept;
// In the child after fork, with the locks reset: the heaps of the threads
// that did not come along give their pools up, as at a thread's exit, and
// self (the forking thread's heap) gets back parked pools whose report was
// under way in one of them.
void heap_after_fork_child(Heap* self) noexcept;
void heap_lock_for_fork() noexcept;
void heap_unlock_for_fork(bool child) noexcept;

// Process and thread set-up (init.cpp).
[[nodiscard]] Heap* thread_init() noexcept;  // nullptr when out of memory
// The calling thread's heap, set up now if it has none yet; nullptr once
// its heap was torn down at thread exit (or when out of memory).
[[nodiscard]] Heap* thread_heap_or_set_up() noexcept;
// True once the thread's heap was torn down at its exit.
[[nodiscard]] bool thread_heap_torn_down() noexcept;
// A request of class cls by such a thread (a heap set up and given up again).
[[nodiscard]] void* alloc_after_teardown(unsigned cls) noexcept;
void process_init() noexcept;
void fork_prepare() noexcept;
void fork_parent() noexcept;
void fork_child() noexcept;

[[nodiscard]] size_t heaps_live() noexcept;
// Counters of heaps that have exited, folded together.
struct RetiredCounters {
  uint64_t allocs[kNumClasses];
  uint64_t frees[kNumClasses];
  uint64_t remote_frees[kNumClasses];
  uint64_t reallocs;
  TcacheTotals large;  // counters only: an exiting thread's cache is drained
};
// The statistics counters of every heap, live and retired, added up
// (heap.cpp). Read under one hold of the registry's lock, so that a thread
// exiting meanwhile is counted once: live or retired (read apart, a thread
// missed whole took with it its frees of other threads' blocks, whose
// requests stayed counted). The other threads go on meanwhile, so every
// heap's requests are read before any heap's frees: a block can be freed
// only after its request is counted, so requests less frees is then at
// most what was live when the first counter was read, never more (read
// heap by heap, a free counted early in the walk and the block's
// reallocation counted late made too many live).
struct CounterTotals {
  uint64_t allocs[kNumClasses];
  uint64_t frees[kNumClasses];
  uint64_t remote_frees[kNumClasses];
  uint64_t reallocs;
  uint64_t threads;  // live heaps
};
void heap_counter_totals(CounterTotals* out) noexcept;
// Requests and frees of one class, live and retired heaps together, read
// as heap_counter_totals reads them (for the cheap peak sample when a pool
// carves).
void class_counters(unsigned cls, uint64_t* allocs, uint64_t* frees) noexcept;
// The thread caches of large blocks, live and retired, summed under one
// hold of the heap registry's lock; then, still under it, `also(arg)` (the
// large-block statistics read the shared cache there, so that a thread
// exiting meanwhile, whose cache goes to the shared one, is counted once).
// The heap lock is taken before the large lock, never after it.
void large_tcache_totals(TcacheTotals* out, void (*also)(void*), void* arg) noexcept;
// Empties the large-block caches of the other threads: all of them (force),
// or those unused since the last call (the purger).
void heaps_drain_large(bool force) noexcept;
// Gives up, as at their thread's exit, the heaps whose thread has ended
// without tearing them down: set up after its pthread key destructors had
// run (a free from glibc's own thread exit, or a thread's first request in
// the last round of destructors), so that glibc never ran the allocator's
// destructor for them. Called by the background purger.
void heaps_reap_dead() noexcept;

}  // namespace pm
