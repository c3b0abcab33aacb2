// Large blocks: requests above kSmallMax (or with alignment beyond what a
// pool gives) map their own memory from the OS. A registry of live user
// pointers tells a large block from a pointer no allocator handed out (or one
// already freed); a 16-byte header just below the user pointer records the
// mapping and a keyed check word that catches an overwritten header.
// Recently freed mappings are kept in a small cache and reused without
// system calls.
//
// Each thread heap also keeps a few freed blocks of up to 1 MiB in its own
// cache (LargeTcache), so that a thread that frees and asks again for such
// blocks takes no shared lock: a block in a thread cache stays in the
// registry, and its header is rewritten with a "cached" check word, which
// tells a second free of it from a free of a live block. Finding a block in
// the registry needs no lock either (see addr_set.h).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pm {

// Blocks a thread cache holds: at most this many, each mapping at most
// kTcacheMaxBlock bytes, together at most POOLMALLOC_LARGE_THREAD_CACHE.
inline constexpr unsigned kTcacheEntries = 16;
inline constexpr size_t kTcacheMaxBlock = (size_t{1} << 20) + 4096;
// Requests served by thread caches, by power of two from 512 KiB (the
// large histogram's buckets 19 to 21).
inline constexpr unsigned kTcacheFirstBucket = 19;
inline constexpr unsigned kTcacheBuckets = 3;

// Counters and holdings of thread caches, summed.
struct TcacheTotals {
  uint64_t allocs = 0;       // requests served from a thread cache
  uint64_t frees = 0;        // frees that went into one
  size_t held_usable = 0;    // usable bytes of the blocks held (counted live by the shared counters)
  size_t held_bytes = 0;     // their mappings
  uint64_t hist[kTcacheBuckets] = {};
};

// One thread's cache, inside its heap. Only the owner uses it, with plain
// loads and stores, except when another thread (the purger, for a thread
// gone idle, or malloc_trim) empties it: that thread raises `drain`, makes
// every thread execute a memory barrier (os::barrier_all_threads), and
// takes the blocks only if the owner is not `busy`; the owner, which
// raises `busy` before it looks at `drain`, waits while `drain` is up. One
// of the two always sees the other's flag, and the owner pays no atomic
// read-modify-write (which would wait for all its pending stores). The
// counters have one writer at a time and are read by statistics.
struct LargeTcache {
  struct Entry {
    char* user;
    size_t map_size;
  };
  std::atomic<bool> busy{false};
  std::atomic<bool> drain{false};
  unsigned count = 0;
  Entry entries[kTcacheEntries] = {};
  std::atomic<uint64_t> allocs{0};
  std::atomic<uint64_t> frees{0};
  std::atomic<size_t> held_usable{0};
  std::atomic<size_t> held_bytes{0};   // their mappings: the budget is checked against it
  std::atomic<uint64_t> hist[kTcacheBuckets] = {};
  uint64_t purger_seen = 0;  // allocs + frees at the purger's last look (the purger's own)
};

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
// registers it, counted as a request of n bytes; nullptr when the registry
// cannot grow.
[[nodiscard]] void* large_place(char* base, size_t map_size, char* user, size_t n) noexcept;
// True when p is a live large block. Only the registry of live blocks is
// consulted before the header is read, so any pointer may be asked about;
// aborts when the header of a live block was overwritten.
[[nodiscard]] bool large_owns(const void* p) noexcept;
// Unregisters a live block that its maker releases itself (guarded blocks),
// counted as freed; aborts when p is not one.
void large_forget(const void* p) noexcept;
// Unmap cached blocks older than the purge delay (all when force).
size_t large_purge(bool force) noexcept;
// For the waits of preload/waits.cpp: large_purge(false), of `budget`
// bytes at most (rounded up to pages), unless the cache's lock is held (by
// another thread, or by the large-block call a signal handler's wait
// interrupted): then false. *left is set to the bytes still cached.
[[nodiscard]] bool large_idle_purge(size_t budget, size_t* left) noexcept;
// The owner moves every block of its cache to the shared cache (thread
// exit, malloc_trim). Bytes moved.
size_t large_tcache_flush(LargeTcache* tc) noexcept;
// Another thread empties a cache, in two steps around one
// os::barrier_all_threads() (heap registry lock held): request raises
// `drain` on a cache that holds blocks and, unless force, has not been used
// since the last request (true when raised); take, after the barrier,
// moves the blocks to the shared cache unless the owner is busy, and
// lowers `drain` (cancel only lowers it). Bytes moved.
[[nodiscard]] bool large_tcache_request(LargeTcache* tc, bool force) noexcept;
size_t large_tcache_take(LargeTcache* tc) noexcept;
void large_tcache_cancel(LargeTcache* tc) noexcept;
// Adds a cache's counters and holdings to `out`.
void large_tcache_add(const LargeTcache& tc, TcacheTotals* out) noexcept;

// Requests by power of two: bucket i counts sizes in (2^(i-1), 2^i].
inline constexpr unsigned kLargeBuckets = 48;

struct LargeStats {
  uint64_t allocs;
  uint64_t frees;
  size_t live_blocks;
  size_t live_bytes;       // usable bytes of live blocks
  size_t peak_live_bytes;  // the most live_bytes ever reached, blocks in thread caches counted as live
  size_t mapped_bytes;     // live + cached mappings
  size_t cached_bytes;     // shared and thread caches
  size_t thread_cached_bytes;  // of which in thread caches
  uint64_t thread_cache_allocs;  // requests served from a thread cache
  uint64_t hist[kLargeBuckets];
};
LargeStats large_stats() noexcept;
// Usable bytes of live large blocks (not those held in thread caches,
// which are free): read under the heap registry's lock, so not with the
// large lock held.
[[nodiscard]] size_t large_live_bytes() noexcept;
void large_lock_for_fork() noexcept;
void large_unlock_for_fork(bool child) noexcept;

}  // namespace pm
