// Two levels of assertion, and the one way the allocator reports a fatal
// misuse: a message written to stderr without allocating, then abort().
#pragma once

#include "config.h"

namespace pm {

// Writes "poolmalloc: <what> 0x<ptr>" and, when size is non-zero,
// " (<size_name> <size> bytes)", then aborts.
[[noreturn, gnu::cold, gnu::noinline]] void fatal(const char* what, const void* ptr = nullptr, size_t size = 0,
                                                   const char* size_name = "size class") noexcept;

// One line on stderr, never allocating.
[[gnu::cold]] void warn(const char* msg, const char* detail = nullptr) noexcept;

}  // namespace pm

// Always on: conditions whose failure means memory would be corrupted.
#define PM_CHECK(cond, msg)              \
  do {                                   \
    if (!(cond)) [[unlikely]]            \
      ::pm::fatal(msg);                  \
  } while (0)

// Debug builds and tests only: internal consistency.
#define PM_ASSERT(cond)                                                   \
  do {                                                                    \
    if constexpr (::pm::kDebug) {                                         \
      if (!(cond)) [[unlikely]]                                           \
        ::pm::fatal("internal assertion failed: " #cond " at " __FILE__); \
    }                                                                     \
  } while (0)
