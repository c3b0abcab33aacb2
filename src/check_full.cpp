#include "check_full.h"

#include <errno.h>
#include <string.h>

#include <atomic>
#include <cstdint>

#include "alloc.h"
#include "check.h"
#include "large.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "purger.h"

namespace pm {

constinit bool g_check_full = false;
constinit Heap g_check_heap{&g_empty_pool};

namespace {

constexpr unsigned char kAllocFill = 0xA1;  // fresh blocks: shows reads of uninitialised memory
constexpr unsigned char kFreeFill = 0xDF;   // freed blocks
constexpr unsigned char kCanary = 0xCA;     // after the caller's bytes
constexpr uint64_t kFreedBit = uint64_t{1} << 63;
constexpr unsigned kNoClass = 0xff;

// The class that serves class c in full mode: room for 16 more bytes, and a
// size with at least the alignment of class c's size. kNoClass: none, the
// request becomes a guarded large block; so do the classes of a slot and
// more, so that an overflow of a block that big faults at once.
struct Upgrade {
  uint8_t to[kNumClasses];
};
consteval Upgrade make_upgrade() {
  Upgrade u{};
  for (unsigned c = 0; c < kNumClasses; ++c) {
    uint32_t s = kClasses.size[c];
    uint32_t align = s & -s;
    u.to[c] = kNoClass;
    if (s >= kSlotSize) continue;
    for (unsigned d = c + 1; d < kNumClasses; ++d)
      if (kClasses.size[d] >= s + 16 && kClasses.size[d] % align == 0) {
        u.to[c] = static_cast<uint8_t>(d);
        break;
      }
  }
  return u;
}
constexpr Upgrade kUpgrade = make_upgrade();
static_assert(kUpgrade.to[0] != kNoClass && kUpgrade.to[kNumClasses - 1] == kNoClass);

constinit SpinLock g_lock;  // everything below, and g_check_heap

// The program's small requests and frees, by the class it asked for. The
// pools' own counts (g_check_heap's) are of the larger classes that serve
// them, and count a free only when the block leaves the quarantine. One
// writer at a time (g_lock), as a heap's counters: heap.h's bump.
constinit std::atomic<uint64_t> g_requests[kNumClasses] = {};
constinit std::atomic<uint64_t> g_frees[kNumClasses] = {};

uint64_t key_of(const void* p) noexcept {
  return g_tag_secret ^ (reinterpret_cast<uintptr_t>(p) * 0x9E3779B97F4A7C15ull);
}
uint64_t* tail_of(void* b, size_t block) noexcept {
  return reinterpret_cast<uint64_t*>(static_cast<char*>(b) + block - 8);
}
// Offset of the first byte in [from, to) that is not `v`, or `to` if none.
size_t first_not(const void* p, size_t from, size_t to, unsigned char v) noexcept {
  const auto* c = static_cast<const unsigned char*>(p);
  for (size_t i = from; i < to; ++i)
    if (c[i] != v) return i;
  return to;
}

// The recorded size of a small block (its freed bit included); 0 when the
// record does not decode to a size that fits the block. Keyed with the
// pool's key too, which changes each time a pool is set up: a record left
// by an earlier pool in the same slot does not decode.
uint64_t small_key(const void* b) noexcept { return key_of(b) ^ pool_of(b)->key; }
uint64_t small_record(void* b, size_t block) noexcept {
  uint64_t r = *tail_of(b, block) ^ small_key(b);
  uint64_t s = r & ~kFreedBit;
  return s != 0 && s + 16 <= block && s % kMinAlign == 0 ? r : 0;
}

// Freed blocks wait here before they go back to their pool.
constexpr unsigned kQuarantine = 4096;
constexpr size_t kQuarantineBytes = 16u << 20;
constinit void* g_quarantine[kQuarantine] = {};
constinit unsigned g_q_head = 0, g_q_count = 0;
constinit size_t g_q_bytes = 0;

void release_small(void* b) noexcept {
  Pool* p = pool_of(b);
  size_t block = p->block_size;
  uint64_t r = small_record(b, block);
  size_t at = first_not(b, 0, block - 8, kFreeFill);
  if (r == 0 || (r & kFreedBit) == 0 || at != block - 8)
    fatal("write after free (found when the block left quarantine) in block", b, r & ~kFreedBit);
  // Hand the block back to the core as its owner would.
  Heap* saved = tl_heap;
  tl_heap = &g_check_heap;
  dealloc(b);
  tl_heap = saved;
}

void quarantine_small(void* b, size_t block) noexcept {
  while (g_q_count == kQuarantine || (g_q_count > 0 && g_q_bytes + block > kQuarantineBytes)) {
    void* old = g_quarantine[g_q_head];
    g_q_head = (g_q_head + 1) % kQuarantine;
    --g_q_count;
    g_q_bytes -= pool_of(old)->block_size;
    release_small(old);
  }
  g_quarantine[(g_q_head + g_q_count) % kQuarantine] = b;
  ++g_q_count;
  g_q_bytes += block;
}

void free_small(void* b) noexcept {
  Pool* p = pool_of(b);
  // The pool's class is the larger one that serves the block: no size.
  if (p->state.load(std::memory_order_relaxed) == PoolState::kFree || not_block_start(p, reinterpret_cast<uintptr_t>(b)))
    fatal("free of a pointer that was not allocated (interior or foreign):", b);
  size_t block = p->block_size;
  uint64_t r = small_record(b, block);
  // The size the block was asked for went with its record: name the block alone.
  if (r == 0) fatal("heap overflow: the size record after the block was overwritten, block", b);
  size_t size = r & ~kFreedBit;
  if ((r & kFreedBit) != 0) fatal("double free of", b, size);
  if (first_not(b, size, block - 8, kCanary) != block - 8)
    fatal("heap overflow: canary after the block was overwritten, block", b, size);
  memset(b, kFreeFill, block - 8);
  *tail_of(b, block) = (size | kFreedBit) ^ small_key(b);
  bump(g_frees[class_of(size)]);
  quarantine_small(b, block);
}

// --- large blocks -------------------------------------------------------
//   [guard page][meta page: n, read-only][... header | n caller bytes | canary][guard page]
// The meta page is made read-only once written: a write below the header
// page faults there, as past the block it faults in the rear guard.
// The caller's block ends less than a page before the rear guard (at most
// 15 bytes before it unless aligned beyond 16); those bytes are canary.
struct LargeMeta {
  uint64_t n_keyed;  // n ^ key_of(user)
  uint64_t front;    // start of the front guard page
  uint64_t span;     // bytes from the front guard to the end of the rear guard
};

size_t round_page(size_t n) noexcept { return (n + kPageSize - 1) & ~(kPageSize - 1); }

LargeMeta* meta_of(const void* user) noexcept {
  uintptr_t header_page = (reinterpret_cast<uintptr_t>(user) - 16) & ~(kPageSize - 1);
  return reinterpret_cast<LargeMeta*>(header_page - kPageSize);
}

// Freed large blocks stay mapped, inaccessible, so that a use after free
// faults: the last 64, and no more address space than 256 MiB unless the
// newest alone takes more. A mapping that fails gives them all back first
// (an address-space limit would otherwise fail requests that a program
// holding one block at a time makes).
constexpr unsigned kLargeQuarantine = 64;
constexpr size_t kLargeQuarantineBytes = size_t{256} << 20;
struct Mapping {
  void* user;
  char* front;
  size_t span;
};
constinit Mapping g_large_q[kLargeQuarantine] = {};
constinit unsigned g_lq_first = 0;  // the oldest
constinit unsigned g_lq_count = 0;
constinit size_t g_lq_bytes = 0;

// g_lock held.
void large_release_oldest() noexcept {
  Mapping& m = g_large_q[g_lq_first];
  os::give_back(m.front, m.span);
  g_lq_bytes -= m.span;
  m = Mapping{};
  g_lq_first = (g_lq_first + 1) % kLargeQuarantine;
  --g_lq_count;
}

// Gives back every quarantined mapping; false when there was none. g_lock
// held.
bool large_release_all() noexcept {
  if (g_lq_count == 0) return false;
  while (g_lq_count > 0) large_release_oldest();
  return true;
}

// The same, g_lock not held.
bool large_release_quarantine() noexcept {
  LockGuard g(g_lock);
  return large_release_all();
}

bool large_quarantined(const void* user) noexcept {
  for (const Mapping& m : g_large_q)
    if (m.user == user) return true;
  return false;
}

// n of a live guarded large block; fatal when p is not one.
size_t large_size(const void* p, const char* freed, const char* invalid) noexcept {
  if (large_quarantined(p)) fatal(freed, p);
  if (!large_owns(p)) fatal(invalid, p);
  const LargeMeta* m = meta_of(p);
  return m->n_keyed ^ key_of(p);
}

void free_large(void* p) noexcept {
  size_t n = large_size(p, "double free of", "free of a pointer that was not allocated (invalid or double free):");
  LargeMeta* m = meta_of(p);
  char* end = reinterpret_cast<char*>(m->front + m->span - kPageSize);
  size_t gap = static_cast<size_t>(end - static_cast<char*>(p)) - n;
  if (first_not(static_cast<char*>(p) + n, 0, gap, kCanary) != gap)
    fatal("heap overflow: canary after the block was overwritten, block", p, n);
  large_forget(p);
  char* front = reinterpret_cast<char*>(m->front);
  size_t span = m->span;
  while (g_lq_count == kLargeQuarantine || (g_lq_count > 0 && g_lq_bytes + span > kLargeQuarantineBytes))
    large_release_oldest();
  g_large_q[(g_lq_first + g_lq_count) % kLargeQuarantine] = Mapping{p, front, span};
  ++g_lq_count;
  g_lq_bytes += span;
  os::purge(front + kPageSize, span - 2 * kPageSize);
  os::protect_none(front + kPageSize, span - 2 * kPageSize);
}

void* full_realloc_copy(void* p, size_t old, size_t n) noexcept {
  const int saved = errno;
  void* q = alloc(n);
  if (q == nullptr) {
    // As in the default mode: a block that shrinks and finds no room to
    // move stays where it is (its canary still after its old size).
    if (n > old) return nullptr;
    errno = saved;
    return p;
  }
  memcpy(q, p, n < old ? n : old);
  dealloc(p);
  return q;
}

}  // namespace

void check_full_init() noexcept { g_check_full = options().check == CheckLevel::kFull; }

void* check_full_alloc(unsigned cls) noexcept {
  unsigned to = kUpgrade.to[cls];
  size_t size = kClasses.size[cls];
  if (to == kNoClass) return check_full_alloc_large(size, size & -size);
  purger_poll();  // before the lock: starting the thread allocates
  LockGuard g(g_lock);
  const int saved = errno;
  void* b = heap_alloc_slow(&g_check_heap, to);
  if (b == nullptr && large_release_all()) {  // a segment could not be mapped: the quarantine's room first
    b = heap_alloc_slow(&g_check_heap, to);
    if (b != nullptr) errno = saved;
  }
  if (b == nullptr) return nullptr;
  size_t block = kClasses.size[to];
  uint64_t r = small_record(b, block);
  if (r != 0 && (r & kFreedBit) != 0 && first_not(b, 16, block - 8, kFreeFill) != block - 8)
    fatal("write after free (found when the block was reused) in block", b, r & ~kFreedBit);
  memset(b, kAllocFill, size);
  memset(static_cast<char*>(b) + size, kCanary, block - 8 - size);
  *tail_of(b, block) = size ^ small_key(b);
  bump(g_requests[cls]);
  return b;
}

void* check_full_alloc_large(size_t n, size_t align) noexcept {
  if (align < kMinAlign) align = kMinAlign;
  // As malloc(0) gets a block of the smallest class: a block of 0 bytes
  // would start on its rear guard page and have no usable byte.
  if (n == 0) n = kMinAlign;
  if (n > kMaxRequest / 2 || align > kMaxRequest / 4) {
    errno = ENOMEM;
    return nullptr;
  }
  size_t span = round_page(n) + round_page(align) + 4 * kPageSize;
  const int saved = errno;
  auto* raw = static_cast<char*>(os::map(span));
  if (raw == nullptr && large_release_quarantine()) raw = static_cast<char*>(os::map(span));
  if (raw != nullptr) errno = saved;
  if (raw == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  char* const end = raw + span;
  auto user = (reinterpret_cast<uintptr_t>(end - kPageSize) - n) & ~(uintptr_t{align} - 1);
  // The rear guard goes on the page after the block's last byte: rounding
  // the block down to a large alignment leaves up to `align` bytes below
  // the mapping's last page, which would otherwise all be canary, written
  // and so resident (a 16-byte block aligned to 1 GiB wrote 1 GiB).
  char* rear = reinterpret_cast<char*>(round_page(user + n));
  if (rear + kPageSize < end) os::unmap(rear + kPageSize, static_cast<size_t>(end - rear - kPageSize));
  auto* meta = meta_of(reinterpret_cast<void*>(user));
  char* base = reinterpret_cast<char*>(meta) + kPageSize;  // the page holding the header
  char* front = reinterpret_cast<char*>(meta) - kPageSize;
  if (front > raw) os::unmap(raw, static_cast<size_t>(front - raw));
  span = static_cast<size_t>(rear + kPageSize - front);
  os::protect_none(front, kPageSize);
  os::protect_none(rear, kPageSize);
  *meta = LargeMeta{n ^ key_of(reinterpret_cast<void*>(user)), reinterpret_cast<uintptr_t>(front), span};
  os::protect_read(meta, kPageSize);
  void* p = large_place(base, static_cast<size_t>(rear - base), reinterpret_cast<char*>(user), n);
  if (p == nullptr) {
    os::give_back(front, span);
    errno = ENOMEM;
    return nullptr;
  }
  memset(p, kAllocFill, n);
  memset(static_cast<char*>(p) + n, kCanary, static_cast<size_t>(rear - static_cast<char*>(p)) - n);
  return p;
}

void check_full_free(void* p) noexcept {
  if (p == nullptr) return;
  LockGuard g(g_lock);
  if (in_segment(p)) free_small(p);
  else free_large(p);
}

namespace {

// The size record of p, a pointer into a segment: 0 when p is no block of
// a pool in use, kFreedBit set when the block was freed. g_lock held.
uint64_t segment_record(const void* p) noexcept {
  const Pool* pool = pool_of(p);
  if (pool->state.load(std::memory_order_relaxed) == PoolState::kFree ||
      not_block_start(pool, reinterpret_cast<uintptr_t>(p)))
    return 0;
  return small_record(const_cast<void*>(p), pool->block_size);
}

}  // namespace

size_t check_full_usable(const void* p) noexcept {
  if (p == nullptr) return 0;
  LockGuard g(g_lock);
  if (in_segment(p)) {
    uint64_t r = segment_record(p);
    return (r & kFreedBit) != 0 ? 0 : r;
  }
  if (large_quarantined(p) || !large_owns(p)) return 0;
  return meta_of(p)->n_keyed ^ key_of(p);
}

bool check_full_owns(const void* p) noexcept { return check_full_usable(p) != 0; }

void* check_full_resize(void* p, size_t n) noexcept {
  if (p == nullptr) return alloc(n);
  if (n == 0) {
    dealloc(p);
    return nullptr;
  }
  size_t old = 0;
  if (in_segment(p)) {
    old = check_full_usable(p);
    if (old == 0) {
      bool freed = false;
      {
        LockGuard g(g_lock);
        freed = (segment_record(p) & kFreedBit) != 0;
      }
      // Not a freed block: free's checks name what is wrong (an overwritten
      // size record, a pointer into a block) and abort.
      if (!freed) dealloc(p);
      fatal("realloc of a pointer that was not allocated or already freed:", p);
    }
  } else {
    LockGuard g(g_lock);
    old = large_size(p, "realloc of a freed block:", "realloc of a pointer that was not allocated:");
  }
  return full_realloc_copy(p, old, n);
}

void check_full_counts(uint64_t* requests, uint64_t* frees) noexcept {
  for (unsigned c = 0; c < kNumClasses; ++c) {
    requests[c] += g_requests[c].load(std::memory_order_relaxed);
    frees[c] += g_frees[c].load(std::memory_order_relaxed);
  }
}

void check_full_lock_for_fork() noexcept { g_lock.lock_for_fork(); }
void check_full_unlock_for_fork(bool child) noexcept { g_lock.unlock_after_fork(child); }

}  // namespace pm
