// Fixed-size pools (poolmalloc_fixed_*): blocks of one size carved from
// chunks the pool maps itself, so destroying a pool gives all its memory back
// at once, and its figures are its own.
//
// Invariants (under `lock` for a thread-safe pool):
//   every block is in exactly one of: handed out (in_use counts it), on the
//   `free` list, or past `bump` in the newest chunk (never handed out);
//   capacity == blocks that fit in all chunks == in_use + |free| + (bump_end - bump) / stride;
//   in_use <= max_blocks when max_blocks != 0; peak >= in_use;
//   `chunks` holds every chunk, sorted by address, so that a free can tell
//   a block of the pool from anything else without a walk.
#include <errno.h>
#include <string.h>

#include <new>

#include "alloc.h"
#include "fixed_pool.h"
#include "lock.h"
#include "os.h"
#include "poolmalloc.h"

namespace {

using pm::kPageSize;

// One mapping of the pool. Blocks start at the mapping's first byte (it is
// page-aligned, so every alignment the pool accepts holds there) and run to
// `end`; the cap may leave the rest of the mapping unused.
struct Chunk {
  char* base;
  char* end;
  size_t bytes;  // of the mapping
};

// A free block: its link and, in blocks of 16 bytes or more, the pool's
// free tag, which a second free of the same block finds.
struct FreeBlock {
  FreeBlock* next;
  uintptr_t tag;
};

constexpr size_t kMaxChunkBytes = size_t{16} << 20;  // growth doubles up to this

size_t round_up(size_t n, size_t to) noexcept { return (n + to - 1) & ~(to - 1); }

}  // namespace

struct poolmalloc_fixed_pool {
  // g_tag_secret ^ the pool's address while it lives, 0 once destroyed: a
  // call on a destroyed pool (or on something that never was one) stops
  // with a message instead of working on freed memory.
  uintptr_t cookie = 0;
  pm::SpinLock lock;
  bool thread_safe = false;
  // The registry of thread-safe pools (for the fork handlers).
  poolmalloc_fixed_pool* registry_next = nullptr;
  poolmalloc_fixed_pool* registry_prev = nullptr;
  size_t stride = 0;  // block size rounded to the alignment
  // stride == odd << shift; off is a multiple of stride when its low `shift`
  // bits are clear and (off >> shift) * odd_inverse <= odd_limit: a free
  // checks its pointer with a multiplication rather than a division.
  unsigned shift = 0;
  size_t odd_inverse = 0;
  size_t odd_limit = 0;
  size_t align = 0;
  size_t max_blocks = 0;
  uintptr_t tag = 0;          // free tag (blocks of 16 bytes or more): a secret of this pool
  FreeBlock* free = nullptr;  // freed blocks, reused first (LIFO: warm in cache)
  char* bump = nullptr;       // fresh blocks of the newest chunk
  char* bump_end = nullptr;
  char* newest = nullptr;     // first block of the newest chunk
  Chunk* chunks = nullptr;    // sorted by base; from the core's allocator
  size_t num_chunks = 0;
  size_t chunks_room = 0;
  size_t next_blocks = 0;  // blocks the next chunk should hold
  size_t min_blocks = 0;   // blocks of the smallest chunk worth mapping (a page's worth)
  poolmalloc_fixed_stats st{};
};

namespace {

// Every thread-safe pool, linked through registry_next/prev.
constinit pm::SpinLock g_registry_lock;
constinit poolmalloc_fixed_pool* g_registry = nullptr;

void registry_add(poolmalloc_fixed_pool* fp) noexcept {
  pm::LockGuard g(g_registry_lock);
  fp->registry_next = g_registry;
  if (g_registry != nullptr) g_registry->registry_prev = fp;
  g_registry = fp;
}

void registry_remove(poolmalloc_fixed_pool* fp) noexcept {
  pm::LockGuard g(g_registry_lock);
  if (fp->registry_prev != nullptr) fp->registry_prev->registry_next = fp->registry_next;
  else g_registry = fp->registry_next;
  if (fp->registry_next != nullptr) fp->registry_next->registry_prev = fp->registry_prev;
}

uintptr_t cookie_of(const poolmalloc_fixed_pool* fp) noexcept {
  return reinterpret_cast<uintptr_t>(fp) ^ pm::g_tag_secret;
}

// Every entry point but create starts here: a destroyed pool's memory may
// already hold something else.
void check_live(const poolmalloc_fixed_pool* fp, const char* what) noexcept {
  if (fp->cookie != cookie_of(fp)) [[unlikely]]
    pm::fatal(what, fp);
}

bool is_block_offset(const poolmalloc_fixed_pool* fp, size_t off) noexcept {
  if ((off & ((size_t{1} << fp->shift) - 1)) != 0) return false;
  return (off >> fp->shift) * fp->odd_inverse <= fp->odd_limit;
}

// The chunk holding address a, or nullptr: a binary search of the sorted table.
const Chunk* chunk_of(const poolmalloc_fixed_pool* fp, uintptr_t a) noexcept {
  size_t lo = 0, hi = fp->num_chunks;  // the answer is the last chunk with base <= a
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (reinterpret_cast<uintptr_t>(fp->chunks[mid].base) <= a) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return nullptr;
  const Chunk* c = &fp->chunks[lo - 1];
  return a < reinterpret_cast<uintptr_t>(c->end) ? c : nullptr;
}

// Room in the chunk table for one more entry (from the core's allocator,
// like the pool's descriptor: the chunks hold blocks only).
bool reserve_chunk_entry(poolmalloc_fixed_pool* fp) noexcept {
  if (fp->num_chunks < fp->chunks_room) return true;
  size_t room = fp->chunks_room == 0 ? 8 : fp->chunks_room * 2;
  auto* t = static_cast<Chunk*>(pm::alloc(room * sizeof(Chunk)));
  if (t == nullptr) return false;
  if (fp->num_chunks != 0) memcpy(t, fp->chunks, fp->num_chunks * sizeof(Chunk));
  pm::dealloc(fp->chunks);
  fp->chunks = t;
  fp->chunks_room = room;
  return true;
}

// Maps a chunk for at least `blocks` blocks (fewer if the cap says so) and
// makes it the bump area; the previous bump area must be empty. False when
// the cap is reached or memory is short.
bool add_chunk(poolmalloc_fixed_pool* fp, size_t blocks) noexcept {
  if (fp->max_blocks != 0) {
    if (fp->st.capacity >= fp->max_blocks) return false;
    if (blocks > fp->max_blocks - fp->st.capacity) blocks = fp->max_blocks - fp->st.capacity;
  }
  if (blocks > (SIZE_MAX / 2) / fp->stride) return false;
  if (!reserve_chunk_entry(fp)) return false;
  size_t bytes = round_up(blocks * fp->stride, kPageSize);
  auto* mem = static_cast<char*>(pm::os::map(bytes));
  if (mem == nullptr) return false;
  // Use the whole mapping: the page rounding often leaves room for more blocks.
  size_t fit = bytes / fp->stride;
  if (fp->max_blocks != 0 && fit > fp->max_blocks - fp->st.capacity) fit = fp->max_blocks - fp->st.capacity;
  Chunk c{mem, mem + fit * fp->stride, bytes};
  size_t i = fp->num_chunks;
  while (i > 0 && fp->chunks[i - 1].base > mem) {
    fp->chunks[i] = fp->chunks[i - 1];
    --i;
  }
  fp->chunks[i] = c;
  ++fp->num_chunks;
  fp->newest = fp->bump = mem;
  fp->bump_end = c.end;
  fp->st.capacity += fit;
  fp->st.reserved_bytes += bytes;
  size_t next = fit * 2;
  if (next * fp->stride > kMaxChunkBytes) next = kMaxChunkBytes / fp->stride;
  fp->next_blocks = next > fp->next_blocks ? next : fp->next_blocks;
  return true;
}

void* take(poolmalloc_fixed_pool* fp) noexcept {
  void* p = nullptr;
  if (fp->free != nullptr) {
    FreeBlock* b = fp->free;
    if (fp->stride >= sizeof(FreeBlock)) {
      // Only a block with the free tag goes out, so none goes out twice
      // without a give in between: a write after the first give can hide a
      // second one from give's test, which would leave a cycle here.
      if (b->tag != fp->tag) [[unlikely]]
        pm::fatal("poolmalloc_fixed_alloc: free list corrupted (a block written after it was freed, or freed twice?):",
                  b, fp->stride, "block size");
      b->tag = 0;
    }
    fp->free = b->next;
    p = b;
  } else {
    if (fp->bump == fp->bump_end) {
      // When the OS refuses a chunk of the planned size, a page's worth may
      // still be had: the pool goes on serving while memory is tight.
      if (!add_chunk(fp, fp->next_blocks) && (fp->next_blocks <= fp->min_blocks || !add_chunk(fp, fp->min_blocks))) {
        ++fp->st.failures;
        errno = ENOMEM;
        return nullptr;
      }
      ++fp->st.grows;
    }
    p = fp->bump;
    fp->bump += fp->stride;
  }
  if (++fp->st.in_use > fp->st.peak_in_use) fp->st.peak_in_use = fp->st.in_use;
  return p;
}

void give(poolmalloc_fixed_pool* fp, void* p) noexcept {
  auto* b = static_cast<FreeBlock*>(p);
  auto a = reinterpret_cast<uintptr_t>(p);
  // Anything but a block this pool handed out would go onto the free list
  // and be handed out again: a block of another pool or of malloc (used by
  // two owners), an interior pointer (blocks that overlap), a block never
  // handed out (given twice). The newest chunk, where most blocks live,
  // is tried before the search.
  const char* first;
  if (a >= reinterpret_cast<uintptr_t>(fp->newest) && a < reinterpret_cast<uintptr_t>(fp->bump_end)) {
    first = fp->newest;
  } else {
    const Chunk* c = chunk_of(fp, a);
    if (c == nullptr) [[unlikely]]
      pm::fatal("poolmalloc_fixed_free: not a block of this pool (of another pool, or not from a pool):", p,
                fp->stride, "block size");
    first = c->base;
  }
  if (!is_block_offset(fp, a - reinterpret_cast<uintptr_t>(first))) [[unlikely]]
    pm::fatal("poolmalloc_fixed_free: not the start of a block of this pool:", p, fp->stride, "block size");
  if (a >= reinterpret_cast<uintptr_t>(fp->bump) && a < reinterpret_cast<uintptr_t>(fp->bump_end)) [[unlikely]]
    pm::fatal("poolmalloc_fixed_free: a block this pool never handed out:", p, fp->stride, "block size");
  // A block of the pool with none in use was freed twice (the one check
  // blocks under 16 bytes, which have no room for the tag, get).
  if (fp->st.in_use == 0) [[unlikely]]
    pm::fatal("poolmalloc_fixed_free: double free (no block of this pool is in use) of", p, fp->stride, "block size");
  if (fp->stride >= sizeof(FreeBlock)) {
    if (b->tag == fp->tag) [[unlikely]]
      pm::fatal("poolmalloc_fixed_free: double free of", p, fp->stride, "block size");
    b->tag = fp->tag;
  }
  b->next = fp->free;
  fp->free = b;
  --fp->st.in_use;
}

// Takes the lock only for a thread-safe pool.
class MaybeLock {
 public:
  explicit MaybeLock(const poolmalloc_fixed_pool* fp) noexcept
      : lock_(fp->thread_safe ? &const_cast<poolmalloc_fixed_pool*>(fp)->lock : nullptr) {
    if (lock_ != nullptr) lock_->lock();
  }
  ~MaybeLock() {
    if (lock_ != nullptr) lock_->unlock();
  }
  MaybeLock(const MaybeLock&) = delete;
  MaybeLock& operator=(const MaybeLock&) = delete;

 private:
  pm::SpinLock* lock_;
};

void release(poolmalloc_fixed_pool* fp) noexcept {
  for (size_t i = 0; i < fp->num_chunks; ++i) pm::os::give_back(fp->chunks[i].base, fp->chunks[i].bytes);
  pm::dealloc(fp->chunks);
  fp->cookie = 0;
  fp->~poolmalloc_fixed_pool();
  pm::dealloc(fp);
}

}  // namespace

extern "C" {

poolmalloc_fixed_pool* poolmalloc_fixed_create(const poolmalloc_fixed_options* o) noexcept {
  if (o == nullptr || o->block_size == 0 || o->block_size > SIZE_MAX / 4) {
    errno = EINVAL;
    return nullptr;
  }
  size_t align = o->align == 0 ? 16 : o->align;
  if ((align & (align - 1)) != 0 || align > kPageSize || (o->max_blocks != 0 && o->initial_blocks > o->max_blocks)) {
    errno = EINVAL;
    return nullptr;
  }
  void* mem = pm::alloc(sizeof(poolmalloc_fixed_pool));
  if (mem == nullptr) return nullptr;  // errno is ENOMEM
  auto* fp = new (mem) poolmalloc_fixed_pool;
  fp->cookie = cookie_of(fp);
  fp->thread_safe = o->thread_safe != 0;
  fp->tag = reinterpret_cast<uintptr_t>(fp) * 0x9E3779B97F4A7C15u ^ pm::g_tag_secret;
  fp->align = align < alignof(FreeBlock*) ? alignof(FreeBlock*) : align;
  fp->stride = round_up(o->block_size < sizeof(FreeBlock*) ? sizeof(FreeBlock*) : o->block_size, fp->align);
  fp->max_blocks = o->max_blocks;
  fp->st.block_size = fp->stride;
  fp->shift = static_cast<unsigned>(__builtin_ctzll(fp->stride));
  size_t odd = fp->stride >> fp->shift;
  size_t inv = odd;  // Newton's iteration: each step doubles the correct low bits (3, 6, ... 96)
  for (int i = 0; i < 5; ++i) inv *= 2 - odd * inv;
  fp->odd_inverse = inv;
  fp->odd_limit = SIZE_MAX / odd;
  fp->st.max_blocks = o->max_blocks;
  // A first chunk of about a page unless more was asked for up front.
  size_t page_blocks = kPageSize / fp->stride;
  fp->min_blocks = fp->next_blocks = page_blocks == 0 ? 1 : page_blocks;
  if (o->initial_blocks != 0 && !add_chunk(fp, o->initial_blocks)) {
    release(fp);
    errno = ENOMEM;
    return nullptr;
  }
  if (fp->thread_safe) registry_add(fp);
  return fp;
}

void poolmalloc_fixed_destroy(poolmalloc_fixed_pool* fp) noexcept {
  if (fp == nullptr) return;
  check_live(fp, "poolmalloc_fixed_destroy: not a live fixed pool (destroyed twice?):");
  if (fp->thread_safe) registry_remove(fp);
  release(fp);
}

void* poolmalloc_fixed_alloc(poolmalloc_fixed_pool* fp) noexcept {
  if (fp == nullptr) {
    errno = EINVAL;
    return nullptr;
  }
  check_live(fp, "poolmalloc_fixed_alloc: not a live fixed pool (used after destroy?):");
  MaybeLock g(fp);
  return take(fp);
}

void poolmalloc_fixed_free(poolmalloc_fixed_pool* fp, void* p) noexcept {
  if (p == nullptr) return;
  // No pool can have handed p out (a moved-from C++ pool, say): dropping
  // it quietly would lose the block with no word.
  if (fp == nullptr) [[unlikely]]
    pm::fatal("poolmalloc_fixed_free: a block given to a null pool:", p);
  check_live(fp, "poolmalloc_fixed_free: not a live fixed pool (used after destroy?):");
  MaybeLock g(fp);
  give(fp, p);
}

int poolmalloc_fixed_owns(const poolmalloc_fixed_pool* fp, const void* p) noexcept {
  if (fp == nullptr || p == nullptr) return 0;
  check_live(fp, "poolmalloc_fixed_owns: not a live fixed pool (used after destroy?):");
  MaybeLock g(fp);
  auto a = reinterpret_cast<uintptr_t>(p);
  const Chunk* c = chunk_of(fp, a);
  return c != nullptr && is_block_offset(fp, a - reinterpret_cast<uintptr_t>(c->base));
}

void poolmalloc_fixed_get_stats(const poolmalloc_fixed_pool* fp, poolmalloc_fixed_stats* out) noexcept {
  if (fp == nullptr || out == nullptr) return;
  check_live(fp, "poolmalloc_fixed_get_stats: not a live fixed pool (used after destroy?):");
  MaybeLock g(fp);
  *out = fp->st;
}

}  // extern "C"

namespace pm {

void fixed_pools_lock_for_fork() noexcept {
  g_registry_lock.lock_for_fork();
  for (poolmalloc_fixed_pool* fp = g_registry; fp != nullptr; fp = fp->registry_next) fp->lock.lock_for_fork();
}

void fixed_pools_unlock_for_fork(bool child) noexcept {
  for (poolmalloc_fixed_pool* fp = g_registry; fp != nullptr; fp = fp->registry_next) fp->lock.unlock_after_fork(child);
  g_registry_lock.unlock_after_fork(child);
}

}  // namespace pm
