// Large blocks: requests above kSmallMax (or with alignment beyond what a
// pool gives) map their own memory from the OS. A 16-byte header just below
// the user pointer records the mapping and a keyed check word, so free() can
// tell a large block from a pointer no allocator handed out. Recently freed
// mappings are kept in a small cache and reused without system calls.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pm {

// nullptr on failure (errno set to ENOMEM by the caller's API layer).
[[nodiscard]] void* large_alloc(size_t n, size_t align) noexcept;
void large_free(void* p) noexcept;
[[nodiscard]] size_t large_usable(const void* p) noexcept;
// Resize in place or by moving the mapping; nullptr (block intact) on failure.
[[nodiscard]] void* large_realloc(void* p, size_t n) noexcept;
// Writes the header of a block at `user` in a mapping [base, base + map_size)
// made by someone else (the guarded blocks of POOLMALLOC_CHECK=full).
void* large_place(char* base, size_t map_size, char* user) noexcept;
// True when p carries a valid large-block header.
[[nodiscard]] bool large_owns(const void* p) noexcept;
// Unmap cached blocks older than the purge delay (all when force).
size_t large_purge(bool force) noexcept;

struct LargeStats {
  uint64_t allocs;
  uint64_t frees;
  size_t live_blocks;
  size_t live_bytes;    // usable bytes of live blocks
  size_t mapped_bytes;  // live + cached mappings
  size_t cached_bytes;
};
LargeStats large_stats() noexcept;
// Usable bytes of live large blocks, without taking the lock.
[[nodiscard]] size_t large_live_bytes() noexcept;
void large_lock_for_fork() noexcept;
void large_unlock_for_fork(bool child) noexcept;

}  // namespace pm
