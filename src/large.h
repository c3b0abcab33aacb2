// Large blocks: requests above kSmallMax (or with alignment beyond what a
// pool gives) map their own memory from the OS. A registry of live user
// pointers tells a large block from a pointer no allocator handed out (or one
// already freed); a 16-byte header just below the user pointer records the
// mapping and a keyed check word that catches an overwritten header.
// Recently freed mappings are kept in a small cache and reused without
// system calls.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pm {

// nullptr on failure (errno set to ENOMEM by the caller's API layer).
// `*dirty` is set to how many bytes from the returned pointer may hold data
// of an earlier block; the rest is zero (fresh pages), so calloc clears only
// that much and leaves untouched pages unfaulted.
[[nodiscard]] void* large_alloc(size_t n, size_t align, size_t* dirty) noexcept;
void large_free(void* p) noexcept;
[[nodiscard]] size_t large_usable(const void* p) noexcept;
// Resize in place or by moving the mapping; nullptr (block intact) on failure.
[[nodiscard]] void* large_realloc(void* p, size_t n) noexcept;
// Writes the header of a block at `user` in a mapping [base, base + map_size)
// made by someone else (the guarded blocks of POOLMALLOC_CHECK=full) and
// registers it; nullptr when the registry cannot grow.
[[nodiscard]] void* large_place(char* base, size_t map_size, char* user) noexcept;
// True when p is a live large block. Only the registry of live blocks is
// consulted before the header is read, so any pointer may be asked about;
// aborts when the header of a live block was overwritten.
[[nodiscard]] bool large_owns(const void* p) noexcept;
// Unregisters a live block that its maker releases itself (guarded blocks);
// aborts when p is not one.
void large_forget(const void* p) noexcept;
// Unmap cached blocks older than the purge delay (all when force).
size_t large_purge(bool force) noexcept;

// Requests by power of two: bucket i counts sizes in (2^(i-1), 2^i].
inline constexpr unsigned kLargeBuckets = 48;

struct LargeStats {
  uint64_t allocs;
  uint64_t frees;
  size_t live_blocks;
  size_t live_bytes;       // usable bytes of live blocks
  size_t peak_live_bytes;  // the most live_bytes ever reached (exact)
  size_t mapped_bytes;     // live + cached mappings
  size_t cached_bytes;
  uint64_t hist[kLargeBuckets];
};
LargeStats large_stats() noexcept;
// Usable bytes of live large blocks, without taking the lock.
[[nodiscard]] size_t large_live_bytes() noexcept;
void large_lock_for_fork() noexcept;
void large_unlock_for_fork(bool child) noexcept;

}  // namespace pm
