// The allocator's own API: what the preload layer and the pool API forward
// to, and what the unit tests call directly. The fast paths are here, inline:
// malloc is a pop from the thread's current pool of the size class, free a
// push onto the same list of the owning pool. Everything else is out of line.
#pragma once

#include <cstddef>

#include "heap.h"
#include "segment.h"
#include "size_classes.h"

namespace pm {

// Out-of-line halves (api.cpp).
[[nodiscard, gnu::noinline]] void* alloc_large(size_t n, size_t align) noexcept;
// free of a pointer outside the region's segments: null, a block of a
// segment mapped elsewhere, a large block, or an invalid pointer.
[[gnu::noinline]] void dealloc_foreign(void* p) noexcept;
[[gnu::noinline]] void dealloc_remote(Heap* h, Pool* p, Block* b) noexcept;

[[nodiscard, gnu::always_inline]] inline void* alloc_class(unsigned c) noexcept {
  size_t cls = c;  // one zero-extension, then every index uses it as is
  Heap* h = tl_heap;
  Pool* p = h->bins[cls];
  return pool_pop(h, p, cls);  // an empty list fails pool_pop's link check
}

// malloc(n) for n > kDirectMax: by class up to kSmallMax, large above.
// Out of line, so that malloc's own code is the direct path alone.
[[nodiscard, gnu::noinline]] void* alloc_above_direct(size_t n) noexcept;

// The fast path of malloc(n), with its two ways out supplied by the caller:
// checked(h, p, g) when the pop of the granule's pool leaves the fast path,
// above(n) for n > kDirectMax. Both are called as tail calls.
template <class Checked, class Above>
[[nodiscard, gnu::always_inline]] inline void* alloc_with(size_t n, Checked checked, Above above) noexcept {
  if (n <= kDirectMax) [[likely]] {
    size_t g = (n + kMinAlign - 1) / kMinAlign;
    Heap* h = tl_heap;
    Pool* p = h->direct[g];
    return pool_pop_counted(p, [=] { bump(h->direct_allocs[g]); }, [=] { return checked(h, p, g); });
  }
  return above(n);
}

// malloc(n): nullptr with errno = ENOMEM on failure.
[[nodiscard, gnu::always_inline]] inline void* alloc(size_t n) noexcept {
  return alloc_with(
      n, [](Heap* h, Pool* p, size_t g) { return pool_pop_checked_direct(h, p, g); },
      [](size_t m) { return alloc_above_direct(m); });
}

// The second half of a free into a pool of the calling thread's heap h, once
// the block is known to be a live block of p.
[[gnu::always_inline]] inline void push_local(Heap* h, Pool* p, Block* b) noexcept {
  // LIFO: the block just freed is the next one handed out, while it is
  // still in this core's cache.
  if constexpr (kHardened) write_link_and_tag(p, b);
  else b->link = encode_link(p->key, p->free);
  p->free = b;
  bump(h->frees[p->cls]);
  if (release_one(p->used)) [[unlikely]]
    heap_free_slow(h, p);
}

// The free of ptr, a pointer into a segment whose slot p covers: a live
// block of p (or of a pool whose heap exited), or an error that aborts; p
// is g_region_none for memory in the region that no segment of ours holds,
// which dealloc_remote hands on to dealloc_foreign.
[[gnu::always_inline]] inline void dealloc_in_pool(Pool* p, void* ptr) noexcept {
  auto* b = static_cast<Block*>(ptr);
  Heap* h = tl_heap;
  if (!owned_by(p, h)) [[unlikely]] {
    dealloc_remote(h, p, b);
    return;
  }
  if constexpr (kHardened) {
    if (b->tag == free_tag(p)) [[unlikely]]
      return report_double_free(p, b);
    if (not_block_start(p, reinterpret_cast<uintptr_t>(b))) [[unlikely]]
      return report_invalid_free(p, b);
  }
  push_local(h, p, b);
}

// free(p): p may be null, a pool block or a large block; anything else
// aborts. A block of a segment in the region finds its pool in the region's
// table; everything else goes to dealloc_foreign.
[[gnu::always_inline]] inline void dealloc(void* ptr) noexcept {
  uintptr_t off = region_offset(ptr);
  if (off >= region_used()) [[unlikely]] {
    dealloc_foreign(ptr);
    return;
  }
  dealloc_in_pool(region_pool(off), ptr);
}

// calloc: nullptr with ENOMEM on overflow or exhaustion.
[[nodiscard]] void* alloc_zeroed(size_t count, size_t size) noexcept;
// realloc with glibc's semantics (n == 0 frees and returns nullptr).
[[nodiscard]] void* resize(void* p, size_t n) noexcept;
// align must be a power of two; nullptr with ENOMEM on failure.
[[nodiscard]] void* alloc_aligned(size_t align, size_t n) noexcept;
// Usable bytes of a live block; 0 for nullptr or a pointer that is not ours.
[[nodiscard]] size_t usable_size(const void* p) noexcept;
// True when p is a live block of this allocator (pool or large).
[[nodiscard]] bool owns(const void* p) noexcept;
// Return all free memory that can be returned to the OS now. Bytes released.
size_t trim() noexcept;

}  // namespace pm
