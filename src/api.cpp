#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "check_full.h"
#include "large.h"
#include "profile.h"
#include "stats.h"

namespace pm {

// Frees by threads that never allocated (they have no heap to count in).
constinit std::atomic<uint64_t> g_orphan_frees[kNumClasses] = {};

namespace {

// A large block; `*dirty` as for large_alloc (every byte for the guarded
// blocks of POOLMALLOC_CHECK=full, which are filled with a pattern).
void* alloc_large_dirty(size_t n, size_t align, size_t* dirty) noexcept {
  // A process whose first request is large must not key headers with the
  // secret still unset: set-up would change it and every such block would
  // later fail its check on free.
  process_init();
  *dirty = n;
  if (g_check_full) [[unlikely]]
    return check_full_alloc_large(n, align);
  void* p = n <= kMaxRequest ? large_alloc(n, align, dirty) : nullptr;
  if (p == nullptr && n <= kMaxRequest && release_for_retry()) p = large_alloc(n, align, dirty);
  if (p == nullptr) errno = ENOMEM;
  else if (profile_enabled()) [[unlikely]]
    profile_tick();  // large.cpp counts the block itself, under its lock
  return p;
}

// realloc may hand the block back unmoved, so it checks the pointer as a
// free would. The pool may be another thread's.
void check_realloc_block(const Pool* pool, const void* p) noexcept {
  switch (shared_block_state(pool, p)) {
    case SharedBlockState::kNotABlock:
      fatal("realloc of a pointer that was not allocated (interior or foreign):", p);
    case SharedBlockState::kFreed:
      fatal("realloc of a freed block:", p, pool->block_size);
    case SharedBlockState::kLive:
      break;
  }
}

}  // namespace

void* alloc_large(size_t n, size_t align) noexcept {
  size_t dirty;
  return alloc_large_dirty(n, align, &dirty);
}

void dealloc_foreign(void* p) noexcept {
  if (p == nullptr) return;
  if (in_segment(p)) return dealloc_in_pool(pool_of(p), p);
  if (g_check_full) [[unlikely]]
    return check_full_free(p);
  large_free(p);
  if (profile_enabled()) [[unlikely]]
    profile_tick();
}

void* alloc_above_direct(size_t n) noexcept {
  if (n <= kSmallMax) [[likely]]
    return alloc_class(class_of(n));
  return alloc_large(n, kMinAlign);
}

void dealloc_remote(Heap* h, Pool* p, Block* b) noexcept {
  if (p == &g_region_none) [[unlikely]]  // in the region, but not in a segment of ours
    return dealloc_foreign(b);
  if (g_check_full) [[unlikely]]  // every pool is g_check_heap's: all frees come here
    return check_full_free(b);
  // The pool's owner exited: take the pool over instead of pushing onto a
  // list that only an adoption would ever collect (a thread whose first
  // call is this free gets its heap for it). The free then runs the
  // owner's path, with its checks.
  if (p->state.load(std::memory_order_acquire) == PoolState::kAbandoned) {
    if (Heap* mine = thread_heap_or_set_up(); mine != nullptr && heap_reclaim(mine, p)) return dealloc(b);
    h = tl_heap;
  }
  unsigned cls = p->shared.cls;
  pool_free_remote(p, b);
  if (h == &g_empty_heap) [[unlikely]] {
    // A thread that frees what others allocated but has not allocated yet
    // (a consumer that only frees) gets a heap for its counters: one shared
    // atomic counter would make every such free of every such thread wait
    // on the same cache line. Only a thread whose heap is already torn down
    // (a free by a late destructor) counts here.
    h = thread_heap_or_set_up();
    if (h == nullptr) {
      g_orphan_frees[cls].fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  bump(h->frees[cls]);
  bump(h->remote_frees[cls]);
}

void* alloc_zeroed(size_t count, size_t size) noexcept {
  size_t n = 0;
  if (__builtin_mul_overflow(count, size, &n)) [[unlikely]] {
    errno = ENOMEM;
    return nullptr;
  }
  if (n > kSmallMax) {
    // Pages fresh from the kernel are already zero: clearing them would
    // fault in every page of a big array the program may touch only in part.
    size_t dirty;
    void* p = alloc_large_dirty(n, kMinAlign, &dirty);
    if (p != nullptr) memset(p, 0, dirty < n ? dirty : n);
    return p;
  }
  void* p = alloc(n);
  // Reused pool blocks hold old data (and free blocks their links): clear,
  // at least the link and tag words, which a request under 16 bytes would
  // otherwise leave in the block's usable slack (every block has 16).
  if (p != nullptr) memset(p, 0, n < sizeof(Block) ? sizeof(Block) : n);
  return p;
}

void* resize(void* p, size_t n) noexcept {
  stats_count_realloc();
  if (g_check_full) [[unlikely]]
    return check_full_resize(p, n);
  if (p == nullptr) return alloc(n);
  if (n == 0) {
    dealloc(p);
    return nullptr;
  }
  size_t old;
  size_t want = n;
  Pool* pool = nullptr;
  if (in_segment(p)) {
    pool = pool_of(p);
    check_realloc_block(pool, p);
    old = class_size(pool->cls);  // the line free and malloc keep hot
    // Stay put while the block fits and is not more than twice too big.
    if (n <= old && (n > old / 2 || old <= kMinAlign)) return p;
    // A block that grows a little at a time (a string built by appends)
    // would move to the next class, 1/8 larger, on almost every step: grow
    // it by half at least, as a large block grows, so that it moves about a
    // fifth as often and leaves fewer classes' pools holding its old
    // copies. The growth stops at the end of a tier (one slot, then the
    // largest class), so that a buffer of a few tens of KiB does not land
    // in the multi-slot classes for the sake of a guess.
    size_t tier = old < kSlotSize ? kSlotSize : kSmallMax;
    if (n > old && n <= tier && n < old + old / 2) want = old + old / 2 < tier ? old + old / 2 : tier;
  } else {
    if (!large_owns(p)) [[unlikely]]
      fatal("realloc of a pointer that was not allocated (invalid or freed):", p);
    old = large_usable(p);
    if (n > kSmallMax) {
      if (void* q = large_realloc(p, n)) return q;
    }
  }
  const int saved = errno;
  void* q = alloc(want);
  if (q == nullptr) [[unlikely]] {
    // No room to move into: a block that shrinks stays where it is, as
    // glibc's does, since it holds the n bytes already. One that grows
    // fails, with errno set and p untouched.
    if (n > old) return nullptr;
    errno = saved;
    return p;
  }
  memcpy(q, p, n < old ? n : old);
  if (pool == nullptr) {
    dealloc(p);
  } else {  // checked above: only the push is left
    auto* b = static_cast<Block*>(p);
    Heap* h = tl_heap;
    if (owned_by(pool, h)) [[likely]]
      push_local(h, pool, b);
    else
      dealloc_remote(h, pool, b);
  }
  return q;
}

void* alloc_aligned(size_t align, size_t n) noexcept {
  if (align <= kMinAlign) return alloc(n);
  if (n <= kSmallMax && align <= kSmallMax) {
    // Blocks of a class whose size is a multiple of align are aligned to
    // align, because pools start on slot boundaries. Powers of two are
    // classes, so the search ends by kSmallMax.
    unsigned cls = class_of(n < align ? align : n);
    while (kClasses.size[cls] % align != 0) ++cls;
    return alloc_class(cls);
  }
  return alloc_large(n, align);
}

size_t usable_size(const void* p) noexcept {
  if (g_check_full) [[unlikely]]
    return check_full_usable(p);
  if (p == nullptr) return 0;
  if (in_segment(p)) {
    // Only a live block has usable bytes: not a slot no pool covers, a
    // segment's header, an interior pointer or (hardened) a freed block,
    // for which the class size would invite a write past a block.
    const Pool* pool = pool_of(p);
    return shared_block_state(pool, p) == SharedBlockState::kLive ? class_size(pool->cls) : 0;
  }
  return large_owns(p) ? large_usable(p) : 0;
}

bool owns(const void* p) noexcept {
  if (g_check_full) [[unlikely]]
    return check_full_owns(p);
  if (p == nullptr) return false;
  // Any thread may ask: the pool's shared keys, as a remote free reads them.
  if (in_segment(p)) return shared_block_state(pool_of(p), p) == SharedBlockState::kLive;
  return large_owns(p);
}

size_t trim() noexcept {
  heap_collect(true);
  if (tl_heap != &g_empty_heap) (void)large_tcache_flush(&tl_heap->large);
  heaps_drain_large(true);
  return arena_drop_freed_pools(true) + arena_purge(true) + large_purge(true);
}

bool release_for_retry() noexcept {
  // What a trim unmaps: cached large mappings and segments left empty.
  // Free slots of a segment that still holds a pool stay mapped. Even less
  // than the request needs may be what it lacks besides address space the
  // program gave back itself; once trimmed, a request that fails again
  // finds nothing held and fails at once.
  if (large_stats().cached_bytes + arena_stats().free_segment_bytes == 0) return false;
  (void)trim();
  return true;
}

}  // namespace pm
