// The C allocation surface of glibc, forwarded to the core.
#include <errno.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "alloc.h"

namespace {

bool is_pow2(size_t a) noexcept { return a != 0 && (a & (a - 1)) == 0; }

// glibc's memalign: a non-power-of-two alignment is rounded up, a small one raised to 16.
void* memalign_glibc(size_t align, size_t n) noexcept {
  if (align > SIZE_MAX / 2 + 1) {
    errno = EINVAL;
    return nullptr;
  }
  if (align == 0) align = 1;  // as malloc (and clz of 0 is undefined)
  if (!is_pow2(align)) align = size_t{1} << (64 - __builtin_clzll(align));
  return pm::alloc_aligned(align, n);
}

size_t page_size() noexcept { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

}  // namespace

extern "C" {

#define PM_EXPORT __attribute__((visibility("default")))
// malloc and free each start on their own cache line, so that where the
// linker happens to place them does not move their speed from one build
// to the next (a 16-byte shift of both measured 10 % on frag).
#define PM_HOT_ENTRY PM_EXPORT __attribute__((aligned(64)))

PM_HOT_ENTRY void* malloc(size_t n) noexcept { return pm::alloc(n); }
PM_HOT_ENTRY void free(void* p) noexcept { pm::dealloc(p); }
PM_EXPORT void* calloc(size_t count, size_t size) noexcept { return pm::alloc_zeroed(count, size); }
PM_EXPORT void* realloc(void* p, size_t n) noexcept { return pm::resize(p, n); }

PM_EXPORT void* reallocarray(void* p, size_t count, size_t size) noexcept {
  size_t n = 0;
  if (__builtin_mul_overflow(count, size, &n)) {
    errno = ENOMEM;
    return nullptr;
  }
  return pm::resize(p, n);
}

// A failure leaves errno at ENOMEM as glibc's does (it fails inside its
// memalign), so that a program that reports it with perror says why.
PM_EXPORT int posix_memalign(void** out, size_t align, size_t n) noexcept {
  if (!is_pow2(align) || align % sizeof(void*) != 0) return EINVAL;
  void* p = pm::alloc_aligned(align, n);
  if (p == nullptr) {
    errno = ENOMEM;
    return ENOMEM;
  }
  *out = p;
  return 0;
}

// glibc 2.36's aligned_alloc is its memalign under another name: an
// alignment of 0 or one that is not a power of two is accepted (rounded
// up), not refused with EINVAL as from glibc 2.38, and programs built here
// may rely on that.
PM_EXPORT void* aligned_alloc(size_t align, size_t n) noexcept { return memalign_glibc(align, n); }

PM_EXPORT void* memalign(size_t align, size_t n) noexcept { return memalign_glibc(align, n); }
PM_EXPORT void* valloc(size_t n) noexcept { return pm::alloc_aligned(page_size(), n); }

PM_EXPORT void* pvalloc(size_t n) noexcept {
  size_t page = page_size();
  size_t rounded = 0;
  if (__builtin_add_overflow(n, page - 1, &rounded)) {
    errno = ENOMEM;
    return nullptr;
  }
  return pm::alloc_aligned(page, rounded & ~(page - 1));
}

PM_EXPORT size_t malloc_usable_size(void* p) noexcept { return pm::usable_size(p); }
PM_EXPORT void free_sized(void* p, size_t) noexcept { pm::dealloc(p); }
PM_EXPORT void free_aligned_sized(void* p, size_t, size_t) noexcept { pm::dealloc(p); }
PM_EXPORT void cfree(void* p) noexcept { pm::dealloc(p); }

// glibc's internal names, which some programs and libraries call directly.
PM_EXPORT void* __libc_malloc(size_t n) noexcept { return pm::alloc(n); }
PM_EXPORT void __libc_free(void* p) noexcept { pm::dealloc(p); }
PM_EXPORT void* __libc_calloc(size_t count, size_t size) noexcept { return pm::alloc_zeroed(count, size); }
PM_EXPORT void* __libc_realloc(void* p, size_t n) noexcept { return pm::resize(p, n); }
PM_EXPORT void* __libc_memalign(size_t align, size_t n) noexcept { return memalign_glibc(align, n); }
PM_EXPORT void* __libc_valloc(size_t n) noexcept { return valloc(n); }
PM_EXPORT void* __libc_pvalloc(size_t n) noexcept { return pvalloc(n); }

}  // extern "C"
