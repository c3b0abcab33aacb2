#include "pool.h"

#include "heap.h"
#include "purger.h"
#include "segment.h"

namespace pm {

constinit uintptr_t g_tag_secret = 0;
constinit std::atomic<bool> g_pools_freed_remotely{false};

namespace {

// The order in which a carve links its blocks. Blocks smaller than a cache
// line are linked in groups of two or three lines (8 blocks of 16 bytes, 4
// of 32, 4 of 48), in an order where each block handed out shares no line
// with the one handed out just before it, within a group and from one group
// to the next: for 16 bytes blocks 0, 4, 1, 5, 2, 6, 3, 7 of the group,
// alternating between its two lines; for 48 bytes 2, 0, 3, 1 (bytes 96-143,
// 0-47, 144-191, 48-95). The blocks one thread allocates back to back and
// gives to other threads then do not make those threads fight over a line
// they all write (the falseshare workload in docs/RESULTS.md), and the
// blocks allocated together still lie as close as in address order, within
// the same 128 or 192 bytes. Larger blocks go in
// address order (a group of one).
struct CarveOrder {
  uint32_t blocks;         // per group
  uint16_t offset[8];      // of the group's i-th block, in bytes from the group's start
};
constexpr CarveOrder carve_order(uint32_t size) noexcept {
  if (size == 16) return {8, {0, 64, 16, 80, 32, 96, 48, 112}};
  if (size == 32) return {4, {0, 64, 32, 96}};
  if (size == 48) return {4, {96, 0, 144, 48}};
  return {1, {0}};
}
consteval bool carve_orders_are_sound() {
  for (uint32_t size = kMinAlign; size < kCacheLine; size += kMinAlign) {
    CarveOrder o = carve_order(size);
    uint32_t span = o.blocks * size;
    bool seen[8] = {};
    for (uint32_t i = 0; i < o.blocks; ++i) {
      if (o.offset[i] % size != 0 || o.offset[i] >= span || seen[o.offset[i] / size]) return false;
      seen[o.offset[i] / size] = true;
      // The next block handed out: the group's next, or the next group's first.
      uint32_t next = i + 1 < o.blocks ? o.offset[i + 1] : span + o.offset[0];
      uint32_t a = o.offset[i], b = next;
      if (a / kCacheLine <= (b + size - 1) / kCacheLine && b / kCacheLine <= (a + size - 1) / kCacheLine) return false;
    }
  }
  return true;
}
static_assert(carve_orders_are_sound());

// How many fresh blocks one refill carves: about two pages' worth, at least
// one. Carving writes a link into every block it carves, so carving more
// would fault in a page of each block of a big class before it is asked for.
uint32_t carve_count(const Pool* p) noexcept {
  uint32_t want = static_cast<uint32_t>(kPageSize * 2 / p->block_size);
  if (want < 1) want = 1;
  uint32_t left = p->capacity - p->carved;
  if (want >= left) return left;
  return want - want % carve_order(p->block_size).blocks;  // whole groups (see CarveOrder)
}

uint64_t mix(uint64_t x) noexcept {
  x ^= x >> 31;
  x *= 0x7FB5D329728EA185ull;
  x ^= x >> 27;
  x *= 0x81DADEF4BC2DD44Dull;
  return x ^ (x >> 33);
}

constinit std::atomic<uint64_t> g_pool_generation{0};

// The blocks 0 .. n - 1 are carved: frees pass the block-start test for
// them alone, the owner's and other threads' alike.
void set_carved(Pool* p, uint32_t n) noexcept {
  p->carved = n;
  p->div_limit = block_start_limit(p->block_size, p->div_mul, n);
  __atomic_store_n(&p->shared.div_limit, p->div_limit, __ATOMIC_RELAXED);
}

}  // namespace

void pool_init(Pool* p, unsigned cls) noexcept {
  uint32_t size = kClasses.size[cls];
  p->cls = static_cast<uint8_t>(cls);
  p->block_size = size;
  p->capacity = kClasses.capacity[cls];
  p->used = 0;
  p->remote.store(0, std::memory_order_relaxed);
  uint64_t gen = g_pool_generation.fetch_add(1, std::memory_order_relaxed);
  p->key = mix(g_tag_secret ^ reinterpret_cast<uintptr_t>(p->start) ^ (gen << 40)) | 1;
  p->tag_key = mix(p->key ^ g_tag_secret) | 1;  // never 0, the tag of an allocated block
  p->end = Block{encode_link(p->key, nullptr), 0};
  block_start_constants(size, 0, &p->div_mul, &p->div_limit);
  p->shared = PoolKeys{p->start, p->div_mul, p->div_limit, p->key, p->tag_key, p->cls, p->capacity};
  pool_recycle(p);  // empty lists, nothing carved
}

void pool_recycle(Pool* p) noexcept {
  PM_ASSERT(p->used == 0 && p->remote.load(std::memory_order_relaxed) == 0);
  set_carved(p, 0);
  p->local_free = nullptr;
  p->free = end_marker(p);
  p->next = p->prev = nullptr;
  p->pending_next = nullptr;
}

namespace {

[[noreturn, gnu::cold, gnu::noinline]] void report_corrupt_remote(const Pool* p) noexcept {
  fatal("corrupted remote free list in pool of", p->start, p->block_size);
}

consteval bool remote_counts_fit() {
  for (unsigned k = 0; k < kNumClasses; ++k)
    if (kClasses.capacity[k] >= (uint32_t{1} << (64 - kRemoteCountShift))) return false;
  return true;
}
static_assert(remote_counts_fit(), "a remote stack's count must fit its head word");

// The stack was kDroppedMark: every block of p is free and its pages went
// back to the OS. Once the purger has finished with them (it holds the
// arena lock from its exchange to the end of its purge), the pool starts
// over: nothing carved, nothing listed, every block back.
[[gnu::cold, gnu::noinline]] uint32_t take_dropped(Pool* p) noexcept {
  // The mark goes back onto the stack while this thread waits for the
  // lock: a fork meanwhile (its prepare handler holds the arena lock) then
  // leaves the child a pool marked dropped, which the child's abandonment
  // of this heap takes back, instead of a pool with every block counted
  // out and none listed, kept for good. Only a remote free of a block
  // already free can have pushed onto the stack since the exchange.
  uintptr_t empty = 0;
  if (!p->remote.compare_exchange_strong(empty, kDroppedMark, std::memory_order_relaxed, std::memory_order_relaxed))
    [[unlikely]]
    fatal("double free into a pool whose blocks were all free; pool of", p->start, p->block_size);
  arena_sync();
  p->remote.store(0, std::memory_order_relaxed);  // a push that finds the mark reports, and changes nothing
  // Every block was on the stack, so the owner's lists were empty: a block
  // on them now was freed by the owner after it was already free.
  if (has_free_block(p) || p->local_free != nullptr || p->carved != p->capacity) [[unlikely]]
    fatal("double free into a pool whose blocks were all free; pool of", p->start, p->block_size);
  p->free = end_marker(p);
  set_carved(p, 0);
  p->used = p->used - static_cast<int32_t>(p->capacity);
  return p->capacity;
}

}  // namespace

bool pool_all_remote(const Pool* p, uintptr_t head) noexcept {
  return (head & (kParkedMark | kDroppedMark)) == 0 && head != 0 && remote_count(head) == p->capacity;
}

uint32_t pool_collect_remote(Pool* p) noexcept {
  uintptr_t head = p->remote.exchange(0, std::memory_order_acquire);
  PM_ASSERT(head != kParkedMark);  // a parked pool is collected once unparked
  if (head == 0) return 0;
  if (head == kDroppedMark) [[unlikely]]
    return take_dropped(p);
  auto* first = static_cast<Block*>(remote_first(head));
  const uint32_t n = remote_count(head);
  if (n == 0 || n > p->capacity) [[unlikely]]
    report_corrupt_remote(p);
  // The usual case, a refill, finds local_free empty: the stack becomes
  // local_free as it is, ending at null, and its blocks are first read
  // when they are handed out (the pops check every link as they go). A walk
  // here would chase a chain of lines last written by other cores.
  if (p->local_free != nullptr) {
    Block* b = first;
    for (uint32_t seen = 1; seen < n; ++seen) {  // to the last block, as counted
      Block* next = decode_link(p, b);
      if (next == nullptr || segment_of(next) != segment_of(b)) [[unlikely]]
        report_corrupt_remote(p);
      b = next;
    }
    if (decode_link(p, b) != nullptr) [[unlikely]]  // more blocks than counted
      report_corrupt_remote(p);
    b->link = encode_link(p->key, p->local_free);
  }
  p->local_free = first;
  p->used = p->used - static_cast<int32_t>(n);
  return n;
}

uint32_t pool_listed_blocks(const Pool* p) noexcept {
  uint32_t n = 0;
  for (const Block* list : {static_cast<const Block*>(p->free), static_cast<const Block*>(p->local_free)}) {
    for (const Block* b = list; b != nullptr && b != &p->end; b = decode_link(p, b)) {
      uintptr_t off = reinterpret_cast<uintptr_t>(b) - reinterpret_cast<uintptr_t>(p->start);
      if (off >= size_t{p->carved} * p->block_size || ++n > p->carved) [[unlikely]]
        fatal("corrupted free list in pool of", p->start, p->block_size);
    }
  }
  return n;
}

bool pool_refill(Pool* p) noexcept {
  PM_ASSERT(!has_free_block(p));
  if (p->local_free == nullptr && p->remote.load(std::memory_order_relaxed) != 0) pool_collect_remote(p);
  if (p->local_free != nullptr) {
    p->free = p->local_free;
    p->local_free = nullptr;
    return true;
  }
  uint32_t n = carve_count(p);
  if (n == 0) return false;
  const uint32_t size = p->block_size;
  const CarveOrder order = carve_order(size);
  char* first = p->start + size_t{p->carved} * size;
  // Linked front to back, each block's link written once the next is known;
  // `before` stands in for the block before the first.
  Block before{};
  Block* prev = &before;
  auto append = [&](char* at) {
    auto* blk = reinterpret_cast<Block*>(at);
    prev->link = encode_link(p->key, blk);
    if constexpr (kHardened) blk->tag = free_tag(p);
    prev = blk;
  };
  char* const end = first + size_t{n} * size;
  char* at = first;
  if (order.blocks > 1) {
    const size_t span = size_t{order.blocks} * size;
    for (; end - at >= static_cast<ptrdiff_t>(span); at += span)
      for (uint32_t k = 0; k < order.blocks; ++k) append(at + order.offset[k]);
  }
  for (; at != end; at += size) append(at);  // address order, or a pool's last partial group
  prev->link = encode_link(p->key, end_marker(p));  // the last block's pop stays on the fast path
  set_carved(p, p->carved + n);
  p->free = decode_link(p, &before);
  return true;
}

void pool_check_link(const Pool* p, const Block* b, const Block* next) noexcept {
  if (next == nullptr) return;
  (void)b;
  fatal("corrupted free list (use after free?) in pool of", p->start, p->block_size);
}

void report_untagged_free_block(const Pool* p, const Block* b) noexcept {
  fatal("corrupted free list: a listed block lost its free tag (written after free, or freed twice?):", b,
        p->block_size);
}

void report_double_free(const Pool* p, const void* b) noexcept { fatal("double free of", b, p->block_size); }

void report_invalid_free(const Pool* p, const void* b) noexcept {
  fatal("free of a pointer that was not allocated (interior or foreign):", b,
        p->state.load(std::memory_order_relaxed) == PoolState::kFree ? 0 : p->block_size);
}

// The last block of a pool went onto its remote stack: the purger looks
// for pools that stay so (its owner idle), once per flag set (see
// kDroppedMark). A set flag is left alone, so that a program whose threads
// free each other's pools all the time writes the flag's line once per
// purger pass.
namespace {
[[gnu::cold, gnu::noinline]] void note_pool_freed_remotely() noexcept {
  if (g_pools_freed_remotely.load(std::memory_order_relaxed)) return;
  g_pools_freed_remotely.store(true, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);  // before the purger's state is read (purger_note)
  purger_note();
}
}  // namespace

void pool_free_remote(Pool* p, Block* b) noexcept {
  if (pool_push_remote(p, b)) pool_report_parked(p);
}

bool pool_push_remote(Pool* p, Block* b) noexcept {
  // Only the shared line and `remote` are read here (see Pool).
  const PoolKeys& k = p->shared;
  switch (shared_block_state(p, b)) {
    case SharedBlockState::kNotABlock:
      report_invalid_free(p, b);
      return false;
    case SharedBlockState::kFreed:
      report_double_free(p, b);
      return false;
    case SharedBlockState::kLive:
      break;
  }
  if constexpr (kHardened) b->tag = k.tag_key;
  const uint32_t capacity = k.capacity;
  uintptr_t head = p->remote.load(std::memory_order_relaxed);
  uintptr_t mine;
  do {
    if (head == kDroppedMark) [[unlikely]] {  // every block of the pool was free
      report_double_free(p, b);
      return false;
    }
    // Two threads that free the same block at the same moment may both
    // find it untagged. The second push then usually finds the block on
    // top of the stack (unless a free of another block of the pool came
    // between them), and must not push it again: the stack would loop.
    // Tagging by an atomic exchange would catch every such race, but it
    // cost a quarter of the producer/consumer throughput.
    if (remote_first(head) == b) [[unlikely]] {
      report_double_free(p, b);
      return false;
    }
    b->link = encode_link(k.key, remote_first(head));
    mine = remote_head(b, remote_count(head) + 1);
  } while (!p->remote.compare_exchange_weak(head, mine, std::memory_order_acq_rel, std::memory_order_relaxed));
  // Nothing of the pool is read from here on: once the block is published,
  // its owner may collect it and give the pool back. Replacing a parked
  // pool's mark took its report (see kParkedMark).
  if (remote_count(mine) == capacity) [[unlikely]]
    note_pool_freed_remotely();
  return head == kParkedMark;
}

void pool_report_parked(Pool* p) noexcept {
  Heap* h = p->owner.load(std::memory_order_acquire);
  Pool* top = h->pending.load(std::memory_order_relaxed);
  do {
    p->pending_next = top;
  } while (!h->pending.compare_exchange_weak(top, p, std::memory_order_release, std::memory_order_relaxed));
}

bool pool_check_invariants(const Pool* p) noexcept {
  PoolState s = p->state.load(std::memory_order_relaxed);
  if (s == PoolState::kFree) return true;
  if (p->carved > p->capacity) return false;
  const PoolKeys& k = p->shared;
  if (k.start != p->start || k.div_mul != p->div_mul || k.div_limit != p->div_limit || k.key != p->key ||
      k.tag_key != p->tag_key || k.cls != p->cls)
    return false;
  uint32_t listed = 0;
  for (const Block* list : {p->free, p->local_free}) {
    for (const Block* b = list; b != nullptr && b != &p->end; b = decode_link(p, b)) {
      if (not_block_start(p, reinterpret_cast<uintptr_t>(b))) return false;
      uint64_t idx = (reinterpret_cast<const char*>(b) - p->start) / p->block_size;
      if (idx >= p->carved) return false;
      if (kHardened && b->tag != free_tag(p)) return false;
      if (++listed > p->capacity) return false;
    }
  }
  int32_t used = p->used;
  if (s == PoolState::kParked) used += kParkBias;
  return used >= 0 && static_cast<uint32_t>(used) + listed == p->carved;
}

}  // namespace pm
