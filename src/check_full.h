// POOLMALLOC_CHECK=full: a slow, strict mode for finding heap bugs.
//
// It costs nothing in the default mode because it lives on paths the fast
// paths already leave through: in full mode no thread heap ever gets a pool,
// so every malloc falls into heap_alloc_slow, and every pool is owned by
// g_check_heap, which is no thread's heap, so every free takes
// dealloc_remote. Both call in here at one flag test.
//
// A small request of class c is served from a larger class c' (same
// alignment), laid out as
//   [0, S)          the caller's bytes, S = size of class c (usable size)
//   [S, S' - 8)     canary bytes, checked on free       (overflow)
//   [S' - 8, S')    S, keyed with the block's address   (size record)
// A freed block is filled with a pattern and kept in a FIFO quarantine; the
// pattern is verified when it leaves the quarantine and again on reuse
// (write after free). Large blocks sit between two PROT_NONE guard pages,
// the gap after the caller's bytes holds canary bytes, and freed ones stay
// mapped PROT_NONE in a quarantine for a while (use after free faults).
#pragma once

#include <cstddef>
#include <cstdint>

namespace pm {

struct Heap;

extern constinit bool g_check_full;  // set once by process_init
extern Heap g_check_heap;            // owner of every pool in full mode

void check_full_init() noexcept;
[[gnu::cold]] void* check_full_alloc(unsigned cls) noexcept;
[[gnu::cold]] void* check_full_alloc_large(size_t n, size_t align) noexcept;
[[gnu::cold]] void check_full_free(void* p) noexcept;
[[gnu::cold]] void* check_full_resize(void* p, size_t n) noexcept;
[[gnu::cold]] size_t check_full_usable(const void* p) noexcept;
[[gnu::cold]] bool check_full_owns(const void* p) noexcept;
// Adds the program's small requests and frees of each class (a free
// counts when the program makes it, not when its block leaves quarantine).
void check_full_counts(uint64_t* requests, uint64_t* frees) noexcept;
void check_full_lock_for_fork() noexcept;
void check_full_unlock_for_fork(bool child) noexcept;

}  // namespace pm
