// Fixed-size pools (poolmalloc_fixed_*): blocks of one size carved from
// chunks the pool maps itself, so destroying a pool gives all its memory back
// at once, and its figures are its own.
//
// Invariants (under `lock` for a thread-safe pool):
//   every block is in exactly one of: handed out (in_use counts it), on the
//   `free` list, or past `bump` in the newest chunk (never handed out);
//   capacity == blocks that fit in all chunks == in_use + |free| + (bump_end - bump) / stride;
//   in_use <= max_blocks when max_blocks != 0; peak >= in_use.
#include <new>

#include "alloc.h"
#include "lock.h"
#include "os.h"
#include "poolmalloc.h"

namespace {

using pm::kPageSize;

// At the start of each chunk's mapping; blocks follow at an aligned offset.
struct Chunk {
  Chunk* next;
  size_t bytes;  // of the mapping
  char* end;     // past its last block (the cap may leave part of the mapping unused)
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
  pm::SpinLock lock;
  bool thread_safe = false;
  size_t stride = 0;  // block size rounded to the alignment
  size_t align = 0;
  size_t max_blocks = 0;
  uintptr_t tag = 0;          // free tag (blocks of 16 bytes or more): a secret of this pool
  FreeBlock* free = nullptr;  // freed blocks, reused first (LIFO: warm in cache)
  char* bump = nullptr;       // fresh blocks of the newest chunk
  char* bump_end = nullptr;
  Chunk* chunks = nullptr;
  size_t next_blocks = 0;  // blocks the next chunk should hold
  poolmalloc_fixed_stats st{};
};

namespace {

// Maps a chunk for at least `blocks` blocks (fewer if the cap says so) and
// makes it the bump area; the previous bump area must be empty. False when
// the cap is reached or the OS refuses.
bool add_chunk(poolmalloc_fixed_pool* fp, size_t blocks) noexcept {
  if (fp->max_blocks != 0) {
    if (fp->st.capacity >= fp->max_blocks) return false;
    if (blocks > fp->max_blocks - fp->st.capacity) blocks = fp->max_blocks - fp->st.capacity;
  }
  size_t offset = round_up(sizeof(Chunk), fp->align);
  if (blocks > (SIZE_MAX / 2 - offset) / fp->stride) return false;
  size_t bytes = round_up(offset + blocks * fp->stride, kPageSize);
  void* mem = pm::os::map(bytes);
  if (mem == nullptr) return false;
  auto* c = static_cast<Chunk*>(mem);
  c->next = fp->chunks;
  c->bytes = bytes;
  fp->chunks = c;
  // Use the whole mapping: the page rounding often leaves room for more blocks.
  size_t fit = (bytes - offset) / fp->stride;
  if (fp->max_blocks != 0 && fit > fp->max_blocks - fp->st.capacity) fit = fp->max_blocks - fp->st.capacity;
  fp->bump = static_cast<char*>(mem) + offset;
  fp->bump_end = fp->bump + fit * fp->stride;
  c->end = fp->bump_end;
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
    fp->free = b->next;
    if (fp->stride >= sizeof(FreeBlock)) b->tag = 0;
    p = b;
  } else {
    if (fp->bump == fp->bump_end) {
      if (!add_chunk(fp, fp->next_blocks)) {
        ++fp->st.failures;
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
  // What can be told without a walk of the chunks: a free with no block out
  // (of another pool, or freed twice), and a block that carries this pool's
  // free tag (freed twice). Either would make the free list hand one block
  // out twice.
  if (fp->st.in_use == 0) [[unlikely]]
    pm::fatal("poolmalloc_fixed_free: no block of this pool is in use; pointer", p, fp->stride);
  if (fp->stride >= sizeof(FreeBlock)) {
    if (b->tag == fp->tag) [[unlikely]]
      pm::fatal("poolmalloc_fixed_free: double free of", p, fp->stride);
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

}  // namespace

extern "C" {

poolmalloc_fixed_pool* poolmalloc_fixed_create(const poolmalloc_fixed_options* o) noexcept {
  if (o == nullptr || o->block_size == 0 || o->block_size > SIZE_MAX / 4) return nullptr;
  size_t align = o->align == 0 ? 16 : o->align;
  if ((align & (align - 1)) != 0 || align > kPageSize) return nullptr;
  if (o->max_blocks != 0 && o->initial_blocks > o->max_blocks) return nullptr;
  void* mem = pm::alloc(sizeof(poolmalloc_fixed_pool));
  if (mem == nullptr) return nullptr;
  auto* fp = new (mem) poolmalloc_fixed_pool;
  fp->thread_safe = o->thread_safe != 0;
  fp->tag = reinterpret_cast<uintptr_t>(fp) * 0x9E3779B97F4A7C15u ^ pm::g_tag_secret;
  fp->align = align < alignof(FreeBlock*) ? alignof(FreeBlock*) : align;
  fp->stride = round_up(o->block_size < sizeof(FreeBlock*) ? sizeof(FreeBlock*) : o->block_size, fp->align);
  fp->max_blocks = o->max_blocks;
  fp->st.block_size = fp->stride;
  fp->st.max_blocks = o->max_blocks;
  // A first chunk of about a page unless more was asked for up front.
  size_t page_blocks = kPageSize / fp->stride;
  fp->next_blocks = page_blocks == 0 ? 1 : page_blocks;
  if (o->initial_blocks != 0 && !add_chunk(fp, o->initial_blocks)) {
    poolmalloc_fixed_destroy(fp);
    return nullptr;
  }
  return fp;
}

void poolmalloc_fixed_destroy(poolmalloc_fixed_pool* fp) noexcept {
  if (fp == nullptr) return;
  for (Chunk* c = fp->chunks; c != nullptr;) {
    Chunk* next = c->next;
    pm::os::unmap(c, c->bytes);
    c = next;
  }
  fp->~poolmalloc_fixed_pool();
  pm::dealloc(fp);
}

void* poolmalloc_fixed_alloc(poolmalloc_fixed_pool* fp) noexcept {
  if (fp == nullptr) return nullptr;
  MaybeLock g(fp);
  return take(fp);
}

void poolmalloc_fixed_free(poolmalloc_fixed_pool* fp, void* p) noexcept {
  if (fp == nullptr || p == nullptr) return;
  MaybeLock g(fp);
  give(fp, p);
}

int poolmalloc_fixed_owns(const poolmalloc_fixed_pool* fp, const void* p) noexcept {
  if (fp == nullptr || p == nullptr) return 0;
  MaybeLock g(fp);
  auto a = reinterpret_cast<uintptr_t>(p);
  size_t offset = round_up(sizeof(Chunk), fp->align);
  for (const Chunk* c = fp->chunks; c != nullptr; c = c->next) {
    auto base = reinterpret_cast<uintptr_t>(c) + offset;
    if (a >= base && a < reinterpret_cast<uintptr_t>(c->end)) return (a - base) % fp->stride == 0;
  }
  return 0;
}

void poolmalloc_fixed_get_stats(const poolmalloc_fixed_pool* fp, poolmalloc_fixed_stats* out) noexcept {
  if (fp == nullptr || out == nullptr) return;
  MaybeLock g(fp);
  *out = fp->st;
}

}  // extern "C"
