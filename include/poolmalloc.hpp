// poolmalloc's C++ API, header-only over poolmalloc.h:
//   poolmalloc::stats(), print_stats(), purge(), version()
//   allocate_at_least(n), allocate_range(min, max)      -> {ptr, size}
//   fixed_pool<Sync>        blocks of one size, optional cap, own metrics
//   resource()              a std::pmr::memory_resource over the size-class pools
//   pool_resource<Sync>     a std::pmr::memory_resource over fixed pools, one
//                           per power of two, releasing everything when destroyed
// Sync is poolmalloc::thread_safe or poolmalloc::single_thread: which one a
// pool is, is part of its type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>

#include "poolmalloc.h"

namespace poolmalloc {

using allocation = poolmalloc_allocation;
using stats_type = poolmalloc_stats;
using fixed_stats = poolmalloc_fixed_stats;

enum class format { text = POOLMALLOC_FORMAT_TEXT, json = POOLMALLOC_FORMAT_JSON };

namespace detail {
[[noreturn]] inline void throw_bad_alloc() {
#if defined(__cpp_exceptions)
  throw std::bad_alloc();
#else
  std::abort();
#endif
}
}  // namespace detail

inline std::string_view version() noexcept { return poolmalloc_version(); }

// Figures summed over all threads now (docs/API.md says what each means).
inline stats_type stats() noexcept {
  stats_type s;
  poolmalloc_stats_get(&s);
  return s;
}

// Writes the statistics to a file descriptor; false if a write failed.
inline bool print_stats(int fd, format f = format::text) noexcept {
  return poolmalloc_stats_print(fd, static_cast<int>(f)) == 0;
}

// Returns free memory to the OS now; bytes released.
inline std::size_t purge() noexcept { return poolmalloc_purge(); }

// At least n bytes; .size is the usable size. Throws std::bad_alloc.
inline allocation allocate_at_least(std::size_t n) {
  allocation a = poolmalloc_alloc_at_least(n);
  if (a.ptr == nullptr) detail::throw_bad_alloc();
  return a;
}

// A block whose usable size is within [min, max]; {nullptr, 0} when no block
// size falls in the range or memory is short.
inline allocation allocate_range(std::size_t min, std::size_t max) noexcept {
  return poolmalloc_alloc_range(min, max);
}

// Frees what allocate_at_least / allocate_range returned.
inline void deallocate(void* p) noexcept { poolmalloc_free(p); }

struct thread_safe {
  static constexpr bool value = true;
};
struct single_thread {
  static constexpr bool value = false;
};

// Blocks of one size. Grows on demand unless capped; freed blocks are reused;
// the pool's memory is released when it is destroyed.
template <class Sync = thread_safe>
class fixed_pool {
 public:
  struct options {
    std::size_t initial_blocks = 0;  // made ready at construction
    std::size_t max_blocks = 0;      // cap on blocks in use; 0: none
    std::size_t align = 0;           // 0: 16
  };

  explicit fixed_pool(std::size_t block_size) : fixed_pool(block_size, options{}) {}
  fixed_pool(std::size_t block_size, options o) {
    poolmalloc_fixed_options c{block_size, o.align, o.initial_blocks, o.max_blocks, Sync::value ? 1 : 0};
    pool_ = poolmalloc_fixed_create(&c);
    if (pool_ == nullptr) detail::throw_bad_alloc();
    block_size_ = stats().block_size;
  }
  ~fixed_pool() { poolmalloc_fixed_destroy(pool_); }
  fixed_pool(fixed_pool&& o) noexcept
      : pool_(std::exchange(o.pool_, nullptr)), block_size_(std::exchange(o.block_size_, 0)) {}
  fixed_pool& operator=(fixed_pool&& o) noexcept {
    std::swap(pool_, o.pool_);
    std::swap(block_size_, o.block_size_);
    return *this;
  }
  fixed_pool(const fixed_pool&) = delete;
  fixed_pool& operator=(const fixed_pool&) = delete;

  // A block; std::bad_alloc at the cap or when memory is short.
  void* allocate() {
    void* p = poolmalloc_fixed_alloc(pool_);
    if (p == nullptr) detail::throw_bad_alloc();
    return p;
  }
  // A block, or nullptr at the cap or when memory is short.
  void* try_allocate() noexcept { return poolmalloc_fixed_alloc(pool_); }
  void deallocate(void* p) noexcept { poolmalloc_fixed_free(pool_, p); }

  // Constructs a T in a block. std::bad_alloc also when a T does not fit in
  // block_size() or needs more alignment than the pool's blocks have.
  template <class T, class... Args>
  T* create(Args&&... args) {
    static_assert(alignof(T) <= 4096);
    if (sizeof(T) > block_size_ || block_size_ % alignof(T) != 0) detail::throw_bad_alloc();
    void* p = allocate();
    // Every block of a pool sits at the same offset from an alignment of
    // up to a page: the first one tells for all.
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(T) != 0) {
      deallocate(p);
      detail::throw_bad_alloc();
    }
    if constexpr (std::is_nothrow_constructible_v<T, Args...>) {
      return new (p) T(std::forward<Args>(args)...);
    } else {
#if defined(__cpp_exceptions)
      try {
        return new (p) T(std::forward<Args>(args)...);
      } catch (...) {
        deallocate(p);
        throw;
      }
#else
      return new (p) T(std::forward<Args>(args)...);
#endif
    }
  }
  // Destroys and frees an object made by create, also through a pointer to
  // one of its polymorphic bases (whose address may differ from the block's).
  template <class T>
  void destroy(T* p) noexcept {
    if (p == nullptr) return;
    void* block = p;
    if constexpr (std::is_polymorphic_v<T>) block = dynamic_cast<void*>(p);
    p->~T();
    deallocate(block);
  }

  [[nodiscard]] bool owns(const void* p) const noexcept { return poolmalloc_fixed_owns(pool_, p) != 0; }
  [[nodiscard]] fixed_stats stats() const noexcept {
    fixed_stats s{};
    poolmalloc_fixed_get_stats(pool_, &s);
    return s;
  }
  [[nodiscard]] std::size_t block_size() const noexcept { return block_size_; }
  [[nodiscard]] poolmalloc_fixed_pool* native_handle() const noexcept { return pool_; }

 private:
  poolmalloc_fixed_pool* pool_ = nullptr;
  std::size_t block_size_ = 0;
};

// A memory resource over poolmalloc's size-class pools: the same memory
// malloc hands out, whichever allocator the rest of the program uses. All
// instances are interchangeable.
class memory_resource final : public std::pmr::memory_resource {
 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    void* p = align <= alignof(std::max_align_t) ? poolmalloc_malloc(bytes) : poolmalloc_aligned_alloc(align, bytes);
    if (p == nullptr) detail::throw_bad_alloc();
    return p;
  }
  void do_deallocate(void* p, std::size_t, std::size_t) override { poolmalloc_free(p); }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
    return this == &other || dynamic_cast<const memory_resource*>(&other) != nullptr;
#else
    // Built with -fno-rtti: another instance is not recognised, which is
    // safe (containers then copy instead of sharing memory); resource()
    // is the one to share.
    return this == &other;
#endif
  }
};

// The process-wide instance.
inline memory_resource* resource() noexcept {
  static memory_resource r;
  return &r;
}

// A memory resource that serves requests up to kMaxPooled bytes from fixed
// pools, one per power of two (blocks aligned to their size), and larger or
// more aligned ones from resource(). Destroying it releases the pools' memory
// at once; large blocks must have been deallocated.
template <class Sync = thread_safe>
class pool_resource final : public std::pmr::memory_resource {
 public:
  static constexpr std::size_t kMinPooled = 16;
  static constexpr std::size_t kMaxPooled = 4096;
  static constexpr unsigned kBins = 9;  // 16, 32, ..., 4096

  pool_resource() = default;
  // A resource is known by its address (containers keep a pointer to it):
  // neither copied nor moved.
  pool_resource(const pool_resource&) = delete;
  pool_resource& operator=(const pool_resource&) = delete;

  // The pool serving blocks of up to `bytes` bytes, or nullptr above kMaxPooled.
  [[nodiscard]] const fixed_pool<Sync>* pool_for(std::size_t bytes, std::size_t align = 1) const noexcept {
    int b = bin(bytes, align);
    return b < 0 ? nullptr : &bins_[b];
  }

 private:
  // Blocks aligned to their size, like the power-of-two classes of malloc.
  static fixed_pool<Sync> make(std::size_t size) { return fixed_pool<Sync>(size, {0, 0, size}); }
  static int bin(std::size_t bytes, std::size_t align) noexcept {
    std::size_t n = bytes > align ? bytes : align;
    if (n > kMaxPooled) return -1;
    int b = 0;
    while ((kMinPooled << b) < n) ++b;
    return b;
  }
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    int b = bin(bytes, align);
    return b < 0 ? resource()->allocate(bytes, align) : bins_[b].allocate();
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    int b = bin(bytes, align);
    if (b < 0) resource()->deallocate(p, bytes, align);
    else bins_[b].deallocate(p);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }

  fixed_pool<Sync> bins_[kBins] = {make(16),  make(32),   make(64),   make(128), make(256),
                                    make(512), make(1024), make(2048), make(4096)};
};

}  // namespace poolmalloc
