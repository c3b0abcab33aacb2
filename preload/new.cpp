// operator new and delete, every form. The library does not link the C++
// runtime (C programs should not pay for loading it): the new-handler and
// std::bad_alloc come from it through weak references, present whenever a
// C++ program is the caller.
#include <cstddef>
#include <new>

#include "alloc.h"
#include "check.h"

namespace std {
[[gnu::weak]] new_handler get_new_handler() noexcept;
[[gnu::weak]] void __throw_bad_alloc();  // noreturn, as <new> already declares it
}  // namespace std

namespace {

// Called after an allocation failed: run the new-handler, or throw.
void out_of_memory() {
  std::new_handler handler = &std::get_new_handler != nullptr ? std::get_new_handler() : nullptr;
  if (handler != nullptr) {
    handler();
    return;
  }
  if (&std::__throw_bad_alloc != nullptr) std::__throw_bad_alloc();
  pm::fatal("out of memory in operator new and no C++ runtime to throw std::bad_alloc");
}

[[gnu::noinline]] void* new_slow(size_t n, size_t align) {
  for (;;) {
    void* p = align <= pm::kMinAlign ? pm::alloc(n) : pm::alloc_aligned(align, n);
    if (p != nullptr) return p;
    out_of_memory();
  }
}

// The ways out of operator new's fast path: malloc's, then new_slow when
// they find no memory. Out of line, so that the fast path needs no stack
// frame to keep n across a call.
[[gnu::noinline]] void* new_checked_direct(pm::Heap* h, pm::Pool* pool, size_t g, size_t n) {
  void* p = pm::pool_pop_checked_direct(h, pool, g);
  return p != nullptr ? p : new_slow(n, 0);
}
[[gnu::noinline]] void* new_above_direct(size_t n) {
  void* p = pm::alloc_above_direct(n);
  return p != nullptr ? p : new_slow(n, 0);
}

inline void* new_impl(size_t n) {
  return pm::alloc_with(
      n, [=](pm::Heap* h, pm::Pool* pool, size_t g) { return new_checked_direct(h, pool, g, n); },
      [](size_t m) { return new_above_direct(m); });
}

inline void* new_aligned(size_t n, std::align_val_t a) {
  void* p = pm::alloc_aligned(static_cast<size_t>(a), n);
  if (p == nullptr) [[unlikely]]
    return new_slow(n, static_cast<size_t>(a));
  return p;
}

inline void* new_nothrow(size_t n, size_t align) noexcept {
  void* p = align <= pm::kMinAlign ? pm::alloc(n) : pm::alloc_aligned(align, n);
  if (p != nullptr) [[likely]]
    return p;
  // The nothrow forms still give the new-handler its chance; a handler may throw.
  while (p == nullptr && &std::get_new_handler != nullptr) {
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) return nullptr;
    handler();
    p = align <= pm::kMinAlign ? pm::alloc(n) : pm::alloc_aligned(align, n);
  }
  return p;
}

}  // namespace

#define PM_EXPORT __attribute__((visibility("default")))
// The entry points every C++ program calls most: each starts on its own
// cache line, so that where the linker happens to place them does not move
// their speed from one build to the next.
#define PM_HOT_ENTRY PM_EXPORT __attribute__((aligned(64)))

PM_HOT_ENTRY void* operator new(size_t n) { return new_impl(n); }
PM_HOT_ENTRY void* operator new[](size_t n) { return new_impl(n); }
PM_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n, 0); }
PM_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept { return new_nothrow(n, 0); }
PM_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_aligned(n, a); }
PM_EXPORT void* operator new[](size_t n, std::align_val_t a) { return new_aligned(n, a); }
PM_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_nothrow(n, static_cast<size_t>(a));
}
PM_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_nothrow(n, static_cast<size_t>(a));
}

PM_HOT_ENTRY void operator delete(void* p) noexcept { pm::dealloc(p); }
PM_HOT_ENTRY void operator delete[](void* p) noexcept { pm::dealloc(p); }
PM_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { pm::dealloc(p); }
PM_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { pm::dealloc(p); }
PM_HOT_ENTRY void operator delete(void* p, size_t) noexcept { pm::dealloc(p); }
PM_HOT_ENTRY void operator delete[](void* p, size_t) noexcept { pm::dealloc(p); }
PM_EXPORT void operator delete(void* p, std::align_val_t) noexcept { pm::dealloc(p); }
PM_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { pm::dealloc(p); }
PM_EXPORT void operator delete(void* p, size_t, std::align_val_t) noexcept { pm::dealloc(p); }
PM_EXPORT void operator delete[](void* p, size_t, std::align_val_t) noexcept { pm::dealloc(p); }
PM_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { pm::dealloc(p); }
PM_EXPORT void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { pm::dealloc(p); }
