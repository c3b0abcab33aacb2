// Pools: runs of equal-size blocks inside a segment, owned by one thread heap.
//
// Invariants of a pool in use (state kActive or kParked):
//   used == blocks handed out by the owner and not yet back on `free` or
//           `local_free` (blocks on `remote` still count as used);
//           a parked pool carries -kParkBias on top of that. The current
//           pool of a heap's bin is the exception: its pops are not
//           counted here but by the heap's requests of the class, and
//           `used` carries a bias on top of the rest (heap.cpp,
//           make_current).
//   carved <= capacity; blocks at index >= carved were never handed out.
//   `free`, `local_free` and `remote` are disjoint lists of blocks of this
//   pool, linked through Block::link encoded with `key`; each free block
//   carries the free tag, an allocated block does not.
//   `free` is never null: a list ends at null or at `&end`, and `free ==
//   &end` means it holds no block. `end.link` decodes to null, so a pop of
//   `end` fails the fast path's link check and goes to the slow path: the
//   fast path needs no separate test for an empty list.
//   Only the owner touches free, local_free, used, carved; other threads only
//   push onto `remote` (the first push into a parked pool replaces its
//   kParkedMark and so takes the pool's report on itself).
//   `shared` holds the values of start, div_mul, div_limit, key, tag_key
//   and cls, for the threads that free into a pool they do not own.
//   div_limit passes the carved blocks alone (see not_block_start); the
//   owner raises it, and its copy in `shared`, as it carves.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "check.h"
#include "config.h"

namespace pm {

struct Heap;

// The first 16 bytes of a free block.
struct Block {
  uintptr_t link;  // next block, encoded
  uintptr_t tag;   // free tag: proves the block is free (double-free detection)
};

// Process-wide secret from which the per-pool link and tag keys are derived.
extern constinit uintptr_t g_tag_secret;

enum class PoolState : uint8_t { kFree, kActive, kParked, kAbandoned };

// What a thread that does not own a pool reads to check a block and push it
// onto the remote list: copies of the owner's fields, made when the pool is
// set up and constant while it is in use, but for div_limit, which grows
// as the owner carves (an atomic store; read with an atomic load).
struct PoolKeys {
  char* start = nullptr;
  uint64_t div_mul = 0;
  uint64_t div_limit = 0;
  uintptr_t key = 0;
  uintptr_t tag_key = 0;
  uint8_t cls = 0;
  uint32_t capacity = 0;
};

inline constexpr int32_t kParkBias = int32_t{1} << 30;

// The remote stack's head word. User-space addresses on x86-64 fit in 47
// bits; a pool holds at most 4,096 blocks, so the count never reaches the
// 16 bits it has.
inline constexpr unsigned kRemoteCountShift = 48;
inline constexpr uintptr_t kRemoteAddrMask = (uintptr_t{1} << kRemoteCountShift) - 1;
[[gnu::always_inline]] inline uintptr_t remote_head(const void* first, uint32_t count) noexcept {
  return reinterpret_cast<uintptr_t>(first) | (uintptr_t{count} << kRemoteCountShift);
}
[[gnu::always_inline]] inline uint32_t remote_count(uintptr_t head) noexcept {
  return static_cast<uint32_t>(head >> kRemoteCountShift);
}
[[gnu::always_inline]] inline void* remote_first(uintptr_t head) noexcept {
  return reinterpret_cast<void*>(head & kRemoteAddrMask & ~uintptr_t{1});
}
// The head word of a parked pool's empty stack while no remote free has
// come yet: its owner waits for the first one to report the pool (heap.cpp,
// park). Blocks are 16-aligned, so no stack of blocks has bit 0 set. The
// remote free whose push replaces the mark has taken the pool's
// notification in the same atomic step, and the owner takes it back by
// replacing the mark with an empty stack: whoever changes the word from
// the mark reports or unparks the pool, and a push never reads the pool
// after its block is published (the owner may then collect the block,
// give the pool back and the segment may be unmapped).
inline constexpr uintptr_t kParkedMark = 1;
// The head word of a parked pool whose every block was on its remote stack
// for a whole purger pass (an idle thread whose blocks other threads
// freed): the purger replaced the stack by this mark under the arena lock
// and returned the pool's pages to the OS (arena_drop_freed_pools). Only
// parked pools: their owner pops nothing from them before it unparks them,
// which collects the stack, so a block it freed a second time into one is
// found on its list then. A current pool is popped on the fast path with
// no look at the stack: a second free into a dropped one (its free tags
// went with the pages) would be handed out again unreported. The owner that next collects the stack
// finds every block free and carves the pool again (pool_collect_remote);
// a remote free that finds the mark frees a block that was already free.
inline constexpr uintptr_t kDroppedMark = 2;
// Set by the remote free whose push puts a pool's last block on its
// remote stack; the purger looks for such pools while it is set.
extern constinit std::atomic<bool> g_pools_freed_remotely;

struct Pool {
  constexpr Pool() noexcept = default;
  // A pool whose list is empty for good: `free` points at its own end marker
  // (the shared empty pool that the bins of a new heap point at).
  struct Empty {};
  constexpr explicit Pool(Empty) noexcept : free(&end) {}

  // --- owner's fast path (malloc and free): one cache line ---
  Block* free = nullptr;  // the owner pops and pushes here (LIFO); &end when empty
  int32_t used = 0;       // owner only: never read by other threads
  uint8_t cls = 0;
  uint8_t slots = 0;
  // Released whole, and its slots neither taken nor purged since (arena,
  // under its lock, while no heap owns the pool): the next pool of its class
  // takes it back with its set-up (arena_acquire_pool, pool_recycle). Slow
  // path only; it fills what would be padding before the keys.
  bool intact = false;
  // The two secrets side by side on a 16-byte boundary: a local free
  // writes a block's link and tag with one 16-byte store (push_local).
  alignas(16) uintptr_t key = 0;  // link encoding secret
  uintptr_t tag_key = 0;          // free tag secret
  char* start = nullptr;
  // Block-start test by one multiplication (see not_block_start).
  uint64_t div_mul = 0;
  uint64_t div_limit = 0;

  // --- slow paths ---
  Block end = {};  // the empty list's marker (see above); in the segment's header, like the pool
  Block* local_free = nullptr;  // remote frees taken over by the owner, swapped into `free` when it runs dry
  uint32_t block_size = 0;
  uint32_t capacity = 0;
  uint32_t carved = 0;
  uint32_t first_slot = 0;
  uint64_t freed_at_ms = 0;  // when the slots became free (purge delay)
  uint64_t allocs_mark = 0;  // current pool: its heap's requests of the class when it became current

  Pool* next = nullptr;  // heap class list, heap full list or abandoned list
  Pool* prev = nullptr;

  // --- written by other threads: own cache line ---
  // Treiber stack of remote frees: the first block's address in the low
  // bits, the number of blocks on the stack above kRemoteCountShift (see
  // remote_head), so that the owner takes the whole stack over without
  // walking it; kParkedMark while parked and waiting for the first one.
  alignas(64) std::atomic<uintptr_t> remote{0};
  Pool* pending_next = nullptr;  // link in the owner heap's pending list

  // --- read by every thread that frees a block of the pool; written only
  // when the pool changes hands or state. A free by another thread reads
  // this line and writes `remote`, never the owner's line above, so that
  // line stays in the owner's cache while other threads free into the pool
  // (the prodcons figures in docs/RESULTS.md). ---
  alignas(64) std::atomic<Heap*> owner{nullptr};  // nullptr unless kActive/kParked
  std::atomic<PoolState> state{PoolState::kFree};
  PoolKeys shared;
};
// Four cache lines: the owner's, the slow paths', the remote frees' and the
// shared one. A field more on the slow paths' line would push the other two
// down and make every descriptor in a segment's header one line longer.
static_assert(sizeof(Pool) == 256);

[[gnu::always_inline]] inline Block* end_marker(Pool* p) noexcept { return &p->end; }
[[gnu::always_inline]] inline bool has_free_block(const Pool* p) noexcept { return p->free != &p->end; }

// A link as stored in a free block: the next block's address under a key
// (the pool's own, or the copy in `shared` for a free by another thread).
[[gnu::always_inline]] inline uintptr_t encode_link(uintptr_t key, const void* next) noexcept {
  return reinterpret_cast<uintptr_t>(next) ^ key;
}
[[gnu::always_inline]] inline Block* decode_link(const Pool* p, const Block* b) noexcept {
  return reinterpret_cast<Block*>(b->link ^ p->key);
}
// The free tag every free block of p carries: the pool's secret itself
// (mixing in the block's address would tell a reader of a freed block
// nothing it could not work out anyway).
[[gnu::always_inline]] inline uintptr_t free_tag(const Pool* p) noexcept { return p->tag_key; }
// Makes b the head of p's list as the owner's local free does: its link to
// the current head and its free tag, written by one 16-byte store on
// x86-64, where (free, 0) ^ (key, tag_key) is (link, tag). One store fewer
// per free keeps the store buffer shorter while a freed block's line is
// still on its way from memory (docs/RESULTS.md, "what each optimisation
// changed").
[[gnu::always_inline]] inline void write_link_and_tag(const Pool* p, Block* b) noexcept {
#if defined(__SSE2__)
  static_assert(offsetof(Block, tag) == sizeof(uintptr_t));
  static_assert(offsetof(Pool, key) % 16 == 0 && offsetof(Pool, tag_key) == offsetof(Pool, key) + sizeof(uintptr_t));
  __m128i head = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(&p->free));
  __m128i keys = _mm_load_si128(reinterpret_cast<const __m128i*>(&p->key));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(b), _mm_xor_si128(head, keys));
#else
  b->tag = free_tag(p);
  b->link = encode_link(p->key, p->free);
#endif
}
// True when heap h owns p. Other threads may change `owner`; on x86-64 an
// aligned pointer load is atomic, and the plain read compares in memory.
[[gnu::always_inline]] inline bool owned_by(const Pool* p, const Heap* h) noexcept {
#if defined(__x86_64__) && !defined(PM_SANITIZER_BUILD)
  return *reinterpret_cast<Heap* const*>(&p->owner) == h;
#else
  return p->owner.load(std::memory_order_relaxed) == h;
#endif
}
// True when `addr` (inside the pool's slots) is not the start of one of its
// blocks handed out so far (the carved ones). With d the block size,
// M = floor((2^64 - 1) / d) + 1 and e = d * M - 2^64, an offset n < 2^32 is
// a multiple of d exactly when n * M mod 2^64 < M, and then
// n * M mod 2^64 = (n / d) * e. So n * M <= (carved - 1) * e holds exactly
// for the offsets of the blocks 0 .. carved - 1, because
// (capacity - 1) * e < M for every class. For a power of two d = 2^k,
// e would be 0 and every multiple would pass: M is one more instead,
// 2^(64-k) + 1, so that e = d, a multiple i * d maps to itself and any
// other offset to at least 2^(64-k). Offsets are below 2^21 (at most 32
// slots of 64 KiB). Block 0 always passes (a pool with nothing carved has
// handed nothing out, and no block to free into it either).
[[gnu::always_inline]] inline bool not_block_start(const char* start, uint64_t div_mul, uint64_t div_limit,
                                                   uintptr_t addr) noexcept {
  uint64_t off = addr - reinterpret_cast<uintptr_t>(start);
  return off * div_mul > div_limit;
}
[[gnu::always_inline]] inline bool not_block_start(const Pool* p, uintptr_t addr) noexcept {
  return not_block_start(p->start, p->div_mul, p->div_limit, addr);
}
// The limit of not_block_start that passes the blocks 0 .. count - 1.
constexpr uint64_t block_start_limit(uint64_t size, uint64_t mul, uint64_t count) noexcept {
  return count == 0 ? 0 : (count - 1) * (size * mul);  // size * mul wraps to e
}
// The two constants of not_block_start for a block size, passing the
// blocks 0 .. count - 1.
constexpr void block_start_constants(uint64_t size, uint64_t count, uint64_t* mul, uint64_t* limit) noexcept {
  uint64_t m = ~uint64_t{0} / size + 1;
  if (size * m == 0) ++m;  // a power of two (see not_block_start)
  *mul = m;
  *limit = block_start_limit(size, m, count);
}

// What a thread that may not own p finds at b, reading only p's shared
// line: a live block of p, an address that is no block start of a pool in
// use (interior, foreign, or in a free slot), or a freed block (when the
// hardening is built in). A remote free and realloc check a block so.
enum class SharedBlockState { kLive, kNotABlock, kFreed };
[[gnu::always_inline]] inline SharedBlockState shared_block_state(const Pool* p, const void* b) noexcept {
  const PoolKeys& k = p->shared;
  // The limit grows as the owner carves: a block handed out to the caller
  // was carved before, and its carve's store is visible to whoever got the
  // block from the thread that allocated it.
  if (p->state.load(std::memory_order_acquire) == PoolState::kFree ||
      not_block_start(k.start, k.div_mul, __atomic_load_n(&k.div_limit, __ATOMIC_RELAXED),
                      reinterpret_cast<uintptr_t>(b))) [[unlikely]]
    return SharedBlockState::kNotABlock;
  if constexpr (kHardened) {
    if (static_cast<const Block*>(b)->tag == k.tag_key) [[unlikely]]
      return SharedBlockState::kFreed;
  }
  return SharedBlockState::kLive;
}

// Lists of pools through next/prev (a heap's class and full lists, the
// abandoned pools, the arena's intact pools). Heads are written
// atomically: adopt() peeks at g_abandoned without the lock (a relaxed load
// of a word written under it).
inline void pool_list_push(Pool** head, Pool* p) noexcept {
  p->prev = nullptr;
  p->next = *head;
  if (*head != nullptr) (*head)->prev = p;
  __atomic_store_n(head, p, __ATOMIC_RELAXED);
}
inline void pool_list_remove(Pool** head, Pool* p) noexcept {
  if (p->prev != nullptr) p->prev->next = p->next;
  else __atomic_store_n(head, p->next, __ATOMIC_RELAXED);
  if (p->next != nullptr) p->next->prev = p->prev;
  p->next = p->prev = nullptr;
}

// Slow-path pool operations (pool.cpp).
void pool_init(Pool* p, unsigned cls) noexcept;
// A pool the arena handed back intact to its class: its keys and constants
// stay, its blocks are carved again. Carving hands them out in address
// order; the free list left in the blocks holds them in the order they
// were freed, scattered over the pool (taken as it was, it made python's
// mallocs miss the cache, docs/RESULTS.md).
void pool_recycle(Pool* p) noexcept;
// Refill `free` from local_free, remote frees, or fresh blocks. False when full.
bool pool_refill(Pool* p) noexcept;
// The blocks on `free` and `local_free` (owner only, for checks); aborts
// when a list is corrupted (a link out of the pool or more blocks than it
// has).
uint32_t pool_listed_blocks(const Pool* p) noexcept;
// Take the remote list into local_free; returns how many blocks it held.
uint32_t pool_collect_remote(Pool* p) noexcept;
// Verify a decoded link that left the segment; aborts on corruption.
[[gnu::cold]] void pool_check_link(const Pool* p, const Block* b, const Block* next) noexcept;
// A listed block without its free tag, or not a block of p, was about to
// be handed out: the block was written after its free (and maybe freed
// again), or a link was bent to a live block or to metadata. Aborts.
[[noreturn, gnu::cold, gnu::noinline]] void report_untagged_free_block(const Pool* p, const Block* b) noexcept;
// Both abort; they are not declared noreturn so that the fast path can reach
// them by a tail call and keep no stack frame.
[[gnu::cold, gnu::noinline]] void report_double_free(const Pool* p, const void* b) noexcept;
[[gnu::cold, gnu::noinline]] void report_invalid_free(const Pool* p, const void* b) noexcept;
// True when `head`, a remote stack's head word of p, holds every block of
// the pool (none live, none on the owner's lists). p must be in use and
// stay so (the arena lock held).
[[nodiscard]] bool pool_all_remote(const Pool* p, uintptr_t head) noexcept;
// Push a block freed by a thread that does not own the pool.
void pool_free_remote(Pool* p, Block* b) noexcept;
// Its two steps: the push, true when it was the first into a parked pool
// and took the pool's notification; then the report that puts the pool on
// its owner's pending list.
[[nodiscard]] bool pool_push_remote(Pool* p, Block* b) noexcept;
void pool_report_parked(Pool* p) noexcept;
// Debug/test: full check of a pool's lists (owner thread only).
bool pool_check_invariants(const Pool* p) noexcept;

}  // namespace pm
