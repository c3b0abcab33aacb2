#include "large.h"

#include <sched.h>
#include <string.h>

#include <atomic>

#include "addr_set.h"
#include "check.h"
#include "config.h"
#include "heap.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "pool.h"
#include "purger.h"

namespace pm {
namespace {

// Which kernel mapping (VMA) a block's pages belong to, as far as the cache
// of freed mappings must know: growing a range with mremap works only when
// the range lies in one. Mappings made by mmap get 0: the kernel joins a new
// anonymous mapping with an anonymous neighbour made the same way. A mapping
// that mremap moved keeps its old page offset, so the kernel never joins it
// with a neighbour: it gets an id of its own, which its pieces keep when the
// cache splits it. The cache joins only ranges with the same id. (Ids wrap;
// two moved mappings side by side with the same id only make a later
// mremap fail, which every caller handles.)
using MappingId = uint16_t;
constexpr MappingId kMmapped = 0;
constexpr unsigned kMappingBits = 16;

struct LargeHeader {
  uint64_t map_size : 64 - kMappingBits;  // bytes of the whole mapping
  uint64_t mapping : kMappingBits;        // MappingId
  uint32_t offset;                        // user pointer minus mapping start
  uint32_t check;                         // keyed hash of the values above
};
static_assert(sizeof(LargeHeader) == 16);
// The largest mapping a header records; no address space holds more.
constexpr size_t kMaxMapping = (size_t{1} << (64 - kMappingBits)) - kPageSize;

// A new id for a mapping that mremap moved (any thread, no lock).
constinit std::atomic<uint32_t> g_moves{0};
MappingId moved_mapping_id() noexcept {
  auto id = static_cast<MappingId>(g_moves.fetch_add(1, std::memory_order_relaxed) + 1);
  return id == kMmapped ? MappingId{1} : id;
}

uint32_t header_check(const void* user, uint64_t map_size, MappingId mapping, uint32_t offset) noexcept {
  uint64_t x = g_tag_secret ^ reinterpret_cast<uintptr_t>(user) ^ (map_size * 0x9E3779B97F4A7C15ull) ^
               (uint64_t{mapping} << 32) ^ offset;
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 29;
  return static_cast<uint32_t>(x) | 1;  // never 0, so zeroed memory never passes
}

// The check word of a block held in a thread cache: the live one with bits
// flipped (an even mask, so it stays odd and never 0).
constexpr uint32_t kCachedFlip = 0x6A09E666u;

LargeHeader* header_of(const void* p) noexcept {
  return reinterpret_cast<LargeHeader*>(const_cast<char*>(static_cast<const char*>(p)) - sizeof(LargeHeader));
}

void* finish(char* base, size_t map_size, MappingId mapping, char* user) noexcept {
  auto* h = header_of(user);
  h->map_size = map_size;
  h->mapping = mapping;
  h->offset = static_cast<uint32_t>(user - base);
  h->check = header_check(user, map_size, mapping, h->offset);
  return user;
}

size_t round_page(size_t n) noexcept { return (n + kPageSize - 1) & ~(kPageSize - 1); }

constexpr const char* kNotAllocated = "free of a pointer that was not allocated (invalid or double free):";
constexpr const char* kDoubleFree = "double free of large block:";

// The header of a registered block; a mismatch means something wrote below
// the block (an underflow), which no later operation could undo.
enum class HeaderState { kLive, kCached, kBroken };
HeaderState header_state(const void* p) noexcept {
  const LargeHeader* h = header_of(p);
  if (h->offset < sizeof(LargeHeader)) return HeaderState::kBroken;
  uint32_t check = header_check(p, h->map_size, static_cast<MappingId>(h->mapping), h->offset);
  if (h->check == check) [[likely]]
    return HeaderState::kLive;
  return h->check == (check ^ kCachedFlip) ? HeaderState::kCached : HeaderState::kBroken;
}
[[noreturn, gnu::cold]] void report_broken(const void* p) noexcept {
  fatal("heap corruption: the header below large block was overwritten:", p);
}
// Between the live and the cached check word of a block whose header was
// verified when it was freed: if it was overwritten since, the word it
// gets is wrong and the next free reports it.
void flip_cached(void* p) noexcept { header_of(p)->check ^= kCachedFlip; }

// Guards the registry of live blocks and the cache of freed mappings.
constinit SpinLock g_lock;
// The user pointer of every live block: the only addresses free() accepts
// outside the segments.
constinit AddrSet g_live;

// Counters, written only with g_lock held: a plain load and store updates
// them, with no locked instruction (which would also wait for the
// program's pending stores to reach the cache). Statistics read them
// without the lock.
constinit std::atomic<uint64_t> g_allocs{0};
constinit std::atomic<uint64_t> g_frees{0};
constinit std::atomic<size_t> g_live_bytes{0};
constinit std::atomic<size_t> g_live_map_bytes{0};
constinit std::atomic<size_t> g_peak_live_bytes{0};
constinit std::atomic<uint64_t> g_hist[kLargeBuckets] = {};

template <class T>
void add_locked(std::atomic<T>& a, T delta) noexcept {  // unsigned: a negative delta wraps
  a.store(a.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}

void grow_live_locked(size_t bytes, size_t map_bytes) noexcept {
  add_locked(g_live_bytes, bytes);
  add_locked(g_live_map_bytes, map_bytes);
  size_t live = g_live_bytes.load(std::memory_order_relaxed);
  if (live > g_peak_live_bytes.load(std::memory_order_relaxed)) g_peak_live_bytes.store(live, std::memory_order_relaxed);
}

// A request of n bytes got a block at `offset` in a mapping of map_size.
void count_alloc_locked(size_t n, size_t map_size, size_t offset) noexcept {
  unsigned bucket = n <= 1 ? 0 : 64 - static_cast<unsigned>(__builtin_clzll(n - 1));
  if (bucket >= kLargeBuckets) bucket = kLargeBuckets - 1;
  add_locked(g_allocs, uint64_t{1});
  add_locked(g_hist[bucket], uint64_t{1});
  grow_live_locked(map_size - offset, map_size);
}

// Lays out and registers a block for a request of n bytes; on failure (no
// memory for the registry) the mapping goes back to the OS and the
// allocation fails.
char* publish(char* base, size_t map_size, MappingId mapping, char* user, size_t n) noexcept {
  finish(base, map_size, mapping, user);
  bool ok;
  {
    LockGuard g(g_lock);
    ok = g_live.insert(user);
    if (ok) [[likely]]
      count_alloc_locked(n, map_size, static_cast<size_t>(user - base));
  }
  if (ok) [[likely]]
    return user;
  os::give_back(base, map_size);
  return nullptr;
}

// Cache of freed mappings, reused by size without a system call.
struct CacheEntry {
  char* base;
  size_t size;
  uint64_t freed_ms;
  MappingId mapping;
};
// Entries, not bytes (the budget is in bytes): enough that a program with a
// few hundred large blocks live, whose frees and splits leave as many
// pieces, reuses them instead of evicting resident ranges at every free
// (with 128, a churn of 150 live blocks of 256 KiB-1 MiB faulted ten times
// as many pages, docs/RESULTS.md). The scans over them have no
// data-dependent branches.
constexpr unsigned kCacheEntries = 512;
constinit CacheEntry g_cache[kCacheEntries] = {};
constinit unsigned g_cached = 0;
constinit size_t g_cached_bytes = 0;

void drop_entry(unsigned i) noexcept {  // g_lock held; caller unmaps
  g_cached_bytes -= g_cache[i].size;
  g_cache[i] = g_cache[--g_cached];
}

// The smallest entry of at least `need` bytes and the largest entry (-1
// when none), in one pass without data-dependent branches (the sizes in the
// cache follow no order a predictor learns). g_lock held.
struct CacheFit {
  int best = -1;
  int largest = -1;
};
CacheFit cache_fit(size_t need) noexcept {
  CacheFit fit;
  size_t best_size = SIZE_MAX, largest_size = 0;
  for (unsigned i = 0; i < g_cached; ++i) {
    size_t s = g_cache[i].size;
    bool better = s >= need && s < best_size;
    best_size = better ? s : best_size;
    fit.best = better ? static_cast<int>(i) : fit.best;
    bool larger = s > largest_size;
    largest_size = larger ? s : largest_size;
    fit.largest = larger ? static_cast<int>(i) : fit.largest;
  }
  return fit;
}

// Takes the first `bytes` of entry i (at least that long) out of the cache,
// the rest staying cached; returns where they start. g_lock held.
char* take_front(unsigned i, size_t bytes) noexcept {
  CacheEntry& e = g_cache[i];
  char* base = e.base;
  if (e.size == bytes) {
    drop_entry(i);
  } else {
    e.base += bytes;
    e.size -= bytes;
    g_cached_bytes -= bytes;
  }
  return base;
}

constinit uint64_t g_last_decay_ms = 0;

// Milliseconds from `then` to `now`; 0 when `then` is later (another thread
// read the clock after this one and took the lock first).
uint64_t ms_since(uint64_t now, uint64_t then) noexcept { return now > then ? now - then : 0; }

// A block `offset` bytes into a cached mapping of exactly `need` bytes, laid
// out and registered: its user pointer, or nullptr. The offset is the plain
// 16 bytes of the header, or an alignment up to a page (the mapping starts
// on a page). The best fit is split (the rest stays cached, no system
// call); failing that, the largest entry is grown with mremap, so its
// resident pages are reused either way. `*dirty` is set to how many bytes
// from the user pointer may hold old data: all of them for a split entry,
// the old size for a grown one. n is the request, for the statistics.
char* cache_take(size_t need, size_t offset, size_t* dirty, size_t n) noexcept {
  char* grow_base = nullptr;
  size_t grow_size = 0;
  MappingId grow_mapping = kMmapped;
  char* base = nullptr;
  {
    LockGuard g(g_lock);
    const auto [best, largest] = cache_fit(need);
    if (best >= 0) {
      const MappingId mapping = g_cache[best].mapping;
      base = take_front(static_cast<unsigned>(best), need);
      char* user = base + offset;
      *dirty = need - offset;
      finish(base, need, mapping, user);
      if (g_live.insert(user)) [[likely]] {
        count_alloc_locked(n, need, offset);
        return user;
      }
    } else {
      if (largest < 0 || g_cache[largest].size < need / 4) return nullptr;
      grow_base = g_cache[largest].base;
      grow_size = g_cache[largest].size;
      grow_mapping = g_cache[largest].mapping;
      drop_entry(static_cast<unsigned>(largest));
    }
  }
  if (base != nullptr) {  // the registry could not grow
    os::give_back(base, need);
    return nullptr;
  }
  auto* grown = static_cast<char*>(os::remap(grow_base, grow_size, need));
  if (grown == nullptr) {
    os::give_back(grow_base, grow_size);
    return nullptr;
  }
  *dirty = grow_size - offset;  // the pages added by the kernel are zero
  if (grown != grow_base) grow_mapping = moved_mapping_id();
  return publish(grown, need, grow_mapping, grown + offset, n);
}

// Mappings the cache gives up, unmapped once the lock is released. It lives
// on the stack of free(), so it holds a few; the evictions of a put stop
// while it has room for fewer than two (one for the block being put), and
// what is left goes at a later put. Full, it unmaps under the lock.
struct Evicted {
  static constexpr unsigned kMax = 48;
  CacheEntry entries[kMax];
  unsigned count = 0;
  [[nodiscard]] bool room_for_two() const noexcept { return count + 2 <= kMax; }
  void add(const CacheEntry& e) noexcept {
    if (count < kMax) entries[count++] = e;
    else os::give_back(e.base, e.size);
  }
  void unmap_all() noexcept {
    for (unsigned i = 0; i < count; ++i) os::give_back(entries[i].base, entries[i].size);
  }
};

// Bytes the shared cache may hold: none when freed memory is to be returned
// at once (POOLMALLOC_PURGE_DELAY=0).
size_t cache_budget() noexcept {
  const Options& o = options();
  return o.purge_delay_ms == 0 ? 0 : o.large_cache;
}

// With g_lock held: keeps the mapping if it fits in the cache budget,
// evicting the oldest entries to make room and dropping entries unused for
// longer than the decay time; what leaves the cache (the mapping itself when
// it does not fit) goes to `out`.
void cache_put(char* base, size_t size, MappingId mapping, uint64_t now, Evicted* out) noexcept {
  size_t budget = cache_budget();
  if (size > budget) {
    out->add(CacheEntry{base, size, now, mapping});
    return;
  }
  uint64_t decay = options().purge_delay_ms;
  if (ms_since(now, g_last_decay_ms) >= decay / 2) {
    for (unsigned i = 0; i < g_cached && out->room_for_two();) {
      if (ms_since(now, g_cache[i].freed_ms) >= decay) {
        out->add(g_cache[i]);
        drop_entry(i);
      } else {
        ++i;
      }
    }
    if (now > g_last_decay_ms) g_last_decay_ms = now;
  }
  while (g_cached > 0 && (g_cached == kCacheEntries || g_cached_bytes + size > budget) && out->room_for_two()) {
    unsigned oldest = 0;
    for (unsigned i = 1; i < g_cached; ++i)
      if (g_cache[i].freed_ms < g_cache[oldest].freed_ms) oldest = i;
    out->add(g_cache[oldest]);
    drop_entry(oldest);
  }
  if (g_cached == kCacheEntries || g_cached_bytes + size > budget) {  // no room made: this one goes
    out->add(CacheEntry{base, size, now, mapping});
    return;
  }
  // Merge with cached neighbours in the same kernel mapping: split entries
  // grow back into large ones.
  for (unsigned i = 0; i < g_cached;) {
    CacheEntry& e = g_cache[i];
    if (e.mapping == mapping && (e.base + e.size == base || base + size == e.base)) {
      if (e.base < base) base = e.base;
      size += e.size;
      drop_entry(i);
    } else {
      ++i;
    }
  }
  if (size > budget) {
    out->add(CacheEntry{base, size, now, mapping});  // merged past the budget: give it all back
  } else {
    g_cache[g_cached++] = CacheEntry{base, size, now, mapping};
    g_cached_bytes += size;
    purger_note();  // under the large lock
  }
}

// A block aligned to `align` (more than a page) in a cached range, its
// header on the page below the user pointer as a fresh mapping has it:
// `map_size` bytes from that page. The smallest range that holds such a
// block is split in three: the pieces before and after the block stay
// cached (the one after is unmapped when the cache has no entry left for
// it). nullptr when no range holds one. n is the request, for the
// statistics.
char* cache_take_aligned(size_t align, size_t map_size, size_t* dirty, size_t n) noexcept {
  char* tail = nullptr;
  size_t tail_size = 0;
  char* block = nullptr;
  char* user = nullptr;
  {
    LockGuard g(g_lock);
    int best = -1;
    size_t best_size = SIZE_MAX;
    char* best_start = nullptr;
    for (unsigned i = 0; i < g_cached; ++i) {
      const CacheEntry& e = g_cache[i];
      if (e.size < map_size || e.size >= best_size) continue;
      uintptr_t aligned = (reinterpret_cast<uintptr_t>(e.base) + kPageSize + align - 1) & ~(uintptr_t{align} - 1);
      char* start = reinterpret_cast<char*>(aligned - kPageSize);
      if (static_cast<size_t>(start - e.base) > e.size - map_size) continue;
      best = static_cast<int>(i);
      best_size = e.size;
      best_start = start;
    }
    if (best < 0) return nullptr;
    CacheEntry e = g_cache[best];
    char* end = best_start + map_size;
    size_t front = static_cast<size_t>(best_start - e.base);
    size_t back = e.size - front - map_size;
    if (front != 0) {
      g_cache[best].size = front;
      g_cached_bytes -= e.size - front;
    } else {
      drop_entry(static_cast<unsigned>(best));
    }
    if (back != 0) {
      if (g_cached < kCacheEntries) {
        g_cache[g_cached++] = CacheEntry{end, back, e.freed_ms, e.mapping};
        g_cached_bytes += back;
      } else {
        tail = end;
        tail_size = back;
      }
    }
    block = best_start;
    user = block + kPageSize;
    finish(block, map_size, e.mapping, user);
    if (g_live.insert(user)) [[likely]]
      count_alloc_locked(n, map_size, kPageSize);
    else
      user = nullptr;
  }
  if (tail != nullptr) os::give_back(tail, tail_size);
  if (user == nullptr) {  // the registry could not grow
    os::give_back(block, map_size);
    return nullptr;
  }
  *dirty = map_size - kPageSize;
  return user;
}

// Takes `extra` bytes from a cached range of the same kernel mapping that
// starts exactly at `end`, so that the block ending there grows in place
// without a system call.
bool cache_extend(char* end, size_t extra, MappingId mapping) noexcept {
  LockGuard g(g_lock);
  for (unsigned i = 0; i < g_cached; ++i) {
    const CacheEntry& e = g_cache[i];
    if (e.base != end || e.size < extra || e.mapping != mapping) continue;
    (void)take_front(i, extra);
    grow_live_locked(extra, extra);
    return true;
  }
  return false;
}


// Blocks leaving thread caches for the shared cache (g_lock held): out of
// the registry and the live counters (their frees were counted by the
// thread cache), into the cache as any freed mapping.
void release_locked(const LargeTcache::Entry* e, unsigned n, uint64_t now, Evicted* out) noexcept {
  for (unsigned i = 0; i < n; ++i) {
    bool known = g_live.remove(e[i].user);
    PM_CHECK(known, "large thread cache: a held block is missing from the registry");
    add_locked(g_live_bytes, 0 - (e[i].map_size - sizeof(LargeHeader)));
    add_locked(g_live_map_bytes, 0 - e[i].map_size);
    cache_put(e[i].user - sizeof(LargeHeader), e[i].map_size, static_cast<MappingId>(header_of(e[i].user)->mapping),
              now, out);
  }
}

void release(const LargeTcache::Entry* e, unsigned n) noexcept {
  if (n == 0) return;
  uint64_t now = os::now_ms();
  Evicted evicted;
  {
    LockGuard g(g_lock);
    release_locked(e, n, now, &evicted);
  }
  evicted.unmap_all();
}

// POOLMALLOC_LARGE_CACHE=0 (or PURGE_DELAY=0) asks for freed blocks to go
// back at once: no thread keeps any either.
size_t tcache_budget() noexcept {
  const Options& o = options();
  return o.large_thread_cache < cache_budget() ? o.large_thread_cache : cache_budget();
}

// The owner's side of the protocol in large.h.
class TcacheUse {
 public:
  explicit TcacheUse(LargeTcache* tc) noexcept : tc_(tc) {
    for (;;) {
#ifdef PM_SANITIZER_BUILD
      // The sanitizers do not see membarrier: a plain sequentially
      // consistent pair gives them the same ordering to check.
      tc->busy.store(true, std::memory_order_seq_cst);
      if (!tc->drain.load(std::memory_order_seq_cst)) [[likely]]
        return;
#else
      tc->busy.store(true, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the barrier comes from the drainer
      // Acquire: the reads of the cache that follow stay after this one.
      if (!tc->drain.load(std::memory_order_acquire)) [[likely]]
        return;
#endif
      tc->busy.store(false, std::memory_order_release);
      // The drainer holds the flag for one barrier; yield if it was preempted.
      for (unsigned spins = 1; tc->drain.load(std::memory_order_acquire); ++spins) {
        if (spins % 64 == 0) sched_yield();
        else __builtin_ia32_pause();
      }
    }
  }
  ~TcacheUse() { tc_->busy.store(false, std::memory_order_release); }
  TcacheUse(const TcacheUse&) = delete;
  TcacheUse& operator=(const TcacheUse&) = delete;

 private:
  LargeTcache* tc_;
};

// Removes entry i of a cache (in use); the last entry takes its place.
void tcache_remove(LargeTcache* tc, unsigned i) noexcept { tc->entries[i] = tc->entries[--tc->count]; }

void tcache_held(LargeTcache* tc, size_t usable, size_t bytes) noexcept {  // unsigned deltas, may wrap
  add_locked(tc->held_usable, usable);
  add_locked(tc->held_bytes, bytes);
}

// A block of `need` mapped bytes (the plain 16-byte offset) from the calling
// thread's cache: the smallest held block that fits with at most a quarter
// to spare, made live again. n is the request, for the statistics.
char* tcache_take(LargeTcache* tc, size_t need, size_t n, size_t* dirty) noexcept {
  TcacheUse use(tc);
  int best = -1;
  size_t best_size = need + need / 4 + 1;
  for (unsigned i = 0; i < tc->count; ++i) {
    size_t s = tc->entries[i].map_size;
    bool better = s >= need && s < best_size;
    best_size = better ? s : best_size;
    best = better ? static_cast<int>(i) : best;
  }
  if (best < 0) return nullptr;
  LargeTcache::Entry e = tc->entries[best];
  tcache_remove(tc, static_cast<unsigned>(best));
  flip_cached(e.user);  // the live check word again
  tcache_held(tc, 0 - (e.map_size - sizeof(LargeHeader)), 0 - e.map_size);
  add_locked(tc->allocs, uint64_t{1});
  unsigned bucket = 64 - static_cast<unsigned>(__builtin_clzll(n - 1));
  bucket = bucket < kTcacheFirstBucket ? 0 : bucket - kTcacheFirstBucket;
  add_locked(tc->hist[bucket < kTcacheBuckets ? bucket : kTcacheBuckets - 1], uint64_t{1});
  *dirty = e.map_size - sizeof(LargeHeader);
  return e.user;
}

// Keeps a freed live block (plain offset, mapping of map_size) in the
// calling thread's cache, making room by handing blocks to the shared cache
// (the first entry: the oldest unless a take moved another there). False
// when the block is not for a thread cache.
bool tcache_put(LargeTcache* tc, char* user, size_t map_size) noexcept {
  size_t budget = tcache_budget();
  if (map_size > budget) return false;
  LargeTcache::Entry out[kTcacheEntries];
  unsigned n_out = 0;
  bool was_empty;
  {
    TcacheUse use(tc);
    was_empty = tc->count == 0;
    while (tc->count > 0 && (tc->count == kTcacheEntries || tc->held_bytes.load(std::memory_order_relaxed) + map_size > budget)) {
      out[n_out] = tc->entries[0];
      tcache_held(tc, 0 - (out[n_out].map_size - sizeof(LargeHeader)), 0 - out[n_out].map_size);
      ++n_out;
      tcache_remove(tc, 0);
    }
    flip_cached(user);
    tc->entries[tc->count++] = LargeTcache::Entry{user, map_size};
    tcache_held(tc, map_size - sizeof(LargeHeader), map_size);
    add_locked(tc->frees, uint64_t{1});
  }
  release(out, n_out);
  // The purger drains the caches of threads gone idle. A parked purger saw
  // every cache empty, so the first block in one is what must wake it; the
  // fence orders the count above before the look at its state.
  if (was_empty) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    purger_note();
  }
  return true;
}

// The calling thread's cache; none before its heap is set up or after it is
// torn down, and none while the process has a single thread.
// The shared cache then takes no lock either, and it merges and splits
// blocks where a thread cache only reuses one within a quarter of the
// request: python's peak RSS was 2 MiB higher with the thread cache in use
// (docs/RESULTS.md).
LargeTcache* my_tcache() noexcept {
  Heap* h = tl_heap;
  return h != &g_empty_heap && !__libc_single_threaded ? &h->large : nullptr;
}

}  // namespace

namespace {

// Empties a cache that its owner is not using; bytes moved.
size_t tcache_empty(LargeTcache* tc, LargeTcache::Entry* out, unsigned* n_out) noexcept {
  *n_out = tc->count;
  for (unsigned i = 0; i < tc->count; ++i) out[i] = tc->entries[i];
  tc->count = 0;
  size_t bytes = tc->held_bytes.load(std::memory_order_relaxed);
  tcache_held(tc, 0 - tc->held_usable.load(std::memory_order_relaxed), 0 - bytes);
  return bytes;
}

}  // namespace

size_t large_tcache_flush(LargeTcache* tc) noexcept {
  LargeTcache::Entry out[kTcacheEntries];
  unsigned n_out;
  size_t bytes;
  {
    TcacheUse use(tc);
    bytes = tcache_empty(tc, out, &n_out);
  }
  release(out, n_out);
  return bytes;
}

bool large_tcache_request(LargeTcache* tc, bool force) noexcept {
  uint64_t uses = tc->allocs.load(std::memory_order_relaxed) + tc->frees.load(std::memory_order_relaxed);
  bool idle = uses == tc->purger_seen;
  tc->purger_seen = uses;
  if (tc->held_bytes.load(std::memory_order_relaxed) == 0 || !(idle || force)) return false;
  tc->drain.store(true, std::memory_order_seq_cst);
  return true;
}

size_t large_tcache_take(LargeTcache* tc) noexcept {
  LargeTcache::Entry out[kTcacheEntries];
  unsigned n_out = 0;
  size_t bytes = 0;
  if (!tc->busy.load(std::memory_order_seq_cst)) bytes = tcache_empty(tc, out, &n_out);
  tc->drain.store(false, std::memory_order_release);
  release(out, n_out);
  return bytes;
}

void large_tcache_cancel(LargeTcache* tc) noexcept { tc->drain.store(false, std::memory_order_release); }

void large_tcache_add(const LargeTcache& tc, TcacheTotals* out) noexcept {
  out->allocs += tc.allocs.load(std::memory_order_relaxed);
  out->frees += tc.frees.load(std::memory_order_relaxed);
  out->held_usable += tc.held_usable.load(std::memory_order_relaxed);
  out->held_bytes += tc.held_bytes.load(std::memory_order_relaxed);
  for (unsigned b = 0; b < kTcacheBuckets; ++b) out->hist[b] += tc.hist[b].load(std::memory_order_relaxed);
}

void* large_alloc(size_t n, size_t align, size_t* dirty) noexcept {
  purger_poll();
  *dirty = 0;  // fresh mappings are zero-filled by the kernel
  if (align < kMinAlign) align = kMinAlign;
  // A block of 0 bytes still needs an address inside its own mapping: with
  // an alignment of a page or more, 0 would put it at the mapping's end.
  if (n == 0) n = 1;
  // Room for the header below an aligned user pointer, within one extra page
  // when align > page. Tested before any size is computed from it: near
  // 2^63 the sums below would wrap, and the trims unmap what they miss.
  if (align > kMaxMapping / 2) return nullptr;
  size_t slack = align <= kPageSize ? align : align + kPageSize;
  if (n > kMaxMapping - slack - kPageSize) return nullptr;
  size_t need = round_page(n + (align <= kPageSize ? align : kPageSize));
  if (align <= kMinAlign) {
    if (need <= kTcacheMaxBlock) {
      if (LargeTcache* tc = my_tcache(); tc != nullptr && tc->held_bytes.load(std::memory_order_relaxed) != 0) {
        if (char* user = tcache_take(tc, need, n, dirty)) return user;
      }
    }
    if (char* user = cache_take(need, sizeof(LargeHeader), dirty, n)) return user;
  } else if (align <= kPageSize) {
    // The thread caches keep blocks by their plain user pointer, which an
    // aligned block would move: the shared cache serves it.
    if (char* user = cache_take(need, align, dirty, n)) return user;
  } else if (char* user = cache_take_aligned(align, round_page(n) + kPageSize, dirty, n)) {
    return user;
  }
  if (align > kPageSize) {
    // Over-map, then trim so that the page holding the header starts the mapping.
    size_t span = round_page(n) + align + kPageSize;
    auto* raw = static_cast<char*>(os::map(span));
    if (raw == nullptr) return nullptr;
    uintptr_t user = (reinterpret_cast<uintptr_t>(raw) + kPageSize + align - 1) & ~(uintptr_t{align} - 1);
    char* base = reinterpret_cast<char*>(user - kPageSize);
    size_t map_size = round_page(n) + kPageSize;
    if (base > raw) os::give_back(raw, static_cast<size_t>(base - raw));
    char* end = base + map_size;
    if (end < raw + span) os::give_back(end, static_cast<size_t>(raw + span - end));
    if (publish(base, map_size, kMmapped, reinterpret_cast<char*>(user), n) == nullptr) return nullptr;
    return reinterpret_cast<void*>(user);
  }
  auto* base = static_cast<char*>(os::map(need));
  if (base == nullptr) return nullptr;
  size_t map_size = need;
  uintptr_t user = (reinterpret_cast<uintptr_t>(base) + sizeof(LargeHeader) + align - 1) & ~(uintptr_t{align} - 1);
  if (publish(base, map_size, kMmapped, reinterpret_cast<char*>(user), n) == nullptr) return nullptr;
  return reinterpret_cast<void*>(user);
}

void* large_place(char* base, size_t map_size, char* user, size_t n) noexcept {
  finish(base, map_size, kMmapped, user);  // never cached: its maker unmaps it
  LockGuard g(g_lock);
  if (!g_live.insert(user)) return nullptr;
  count_alloc_locked(n, map_size, static_cast<size_t>(user - base));
  return user;
}

bool large_owns(const void* p) noexcept {
  if ((reinterpret_cast<uintptr_t>(p) & (kMinAlign - 1)) != 0 || !g_live.contains(p)) return false;
  HeaderState s = header_state(p);
  if (s == HeaderState::kBroken) [[unlikely]]
    report_broken(p);
  return s == HeaderState::kLive;  // a block in a thread cache was freed
}

void large_forget(const void* p) noexcept {
  bool known;
  {
    LockGuard g(g_lock);
    known = g_live.remove(p);
    if (known) {
      const LargeHeader* h = header_of(p);
      add_locked(g_frees, uint64_t{1});
      add_locked(g_live_bytes, h->offset - h->map_size);  // wraps: subtracts the usable size
      add_locked(g_live_map_bytes, 0 - h->map_size);
    }
  }
  if (!known) fatal(kNotAllocated, p);
}

size_t large_usable(const void* p) noexcept {
  const LargeHeader* h = header_of(p);
  return h->map_size - h->offset;
}

void large_free(void* p) noexcept {
  // The registry says p is live (only then is its header known to be
  // mapped), and the header says whether it was freed already.
  if ((reinterpret_cast<uintptr_t>(p) & (kMinAlign - 1)) != 0 || !g_live.contains(p)) [[unlikely]]
    fatal(kNotAllocated, p);
  HeaderState state = header_state(p);
  if (state != HeaderState::kLive) [[unlikely]] {
    if (state == HeaderState::kCached) fatal(kDoubleFree, p);
    report_broken(p);
  }
  const LargeHeader* h = header_of(p);
  size_t map_size = h->map_size, offset = h->offset;
  auto mapping = static_cast<MappingId>(h->mapping);
  if (offset == sizeof(LargeHeader) && map_size <= kTcacheMaxBlock) {
    if (LargeTcache* tc = my_tcache(); tc != nullptr && tcache_put(tc, static_cast<char*>(p), map_size)) return;
  }
  uint64_t now = os::now_ms();
  Evicted evicted;
  bool known;
  {
    LockGuard g(g_lock);
    known = g_live.remove(p);  // false only when another thread freed p meanwhile
    if (known) {
      add_locked(g_frees, uint64_t{1});
      add_locked(g_live_bytes, offset - map_size);  // wraps: subtracts the usable size
      add_locked(g_live_map_bytes, 0 - map_size);
      cache_put(static_cast<char*>(p) - offset, map_size, mapping, now, &evicted);
    }
  }
  if (!known) [[unlikely]]
    fatal(kNotAllocated, p);
  evicted.unmap_all();  // the purger is started by allocations only (see purger.h)
}

// A block of `old_size` mapped bytes at base grows to `new_size` where it
// is or, when the pages after it are taken, onto the start of a cached
// range that holds new_size (the smallest): the kernel moves the block's
// pages there and discards the cached ones under them, so that memory kept
// for reuse goes as the block grows instead of staying resident beside
// it. g_lock held. nullptr when neither can be done.
char* grow_locked(char* base, size_t old_size, size_t new_size) noexcept {
  if (os::remap_in_place(base, old_size, new_size)) return base;
  const int best = cache_fit(new_size).best;
  if (best < 0) return nullptr;
  // The target leaves the cache before the move: a kernel that refuses it
  // (a block that spans two mappings) may have unmapped the target first
  // (kernels before 6.16 did), so after a failure its state is unknown and
  // it goes back to the OS rather than to the cache.
  char* target = take_front(static_cast<unsigned>(best), new_size);
  if (os::remap_onto(base, old_size, new_size, target)) return target;
  os::give_back(target, new_size);  // unmapping what is unmapped already succeeds
  return nullptr;
}

void* large_realloc(void* p, size_t n) noexcept {
  LargeHeader* h = header_of(p);
  size_t usable = h->map_size - h->offset;
  if (n <= usable && n >= usable / 2) return p;
  // Only blocks with the plain 16-byte offset can move with the kernel's help:
  // the others were aligned beyond what mremap keeps.
  if (h->offset != sizeof(LargeHeader) || n > kMaxMapping - 2 * kPageSize) return nullptr;
  size_t new_size = round_page(n + sizeof(LargeHeader));
  char* base = static_cast<char*>(p) - h->offset;
  size_t old_size = h->map_size;
  // A block that grows step by step (a string or vector built by appends)
  // would make one system call per page: grow the mapping by half again at
  // least. Untouched pages cost address space, not memory.
  if (new_size > old_size && new_size < old_size + old_size / 2 && old_size / 2 < kMaxRequest / 2)
    new_size = round_page(old_size + old_size / 2);
  if (new_size > kMaxMapping) new_size = round_page(n + sizeof(LargeHeader));
  char* nb = base;
  auto mapping = static_cast<MappingId>(h->mapping);
  if (new_size <= old_size || !cache_extend(base + old_size, new_size - old_size, mapping)) {
    {
      // Under the lock, so that the old address, free again once the kernel
      // has moved the mapping, cannot be registered by another thread's new
      // block before this one leaves the registry.
      LockGuard g(g_lock);
      nb = new_size > old_size ? grow_locked(base, old_size, new_size) : nullptr;
      if (nb == nullptr) nb = static_cast<char*>(os::remap(base, old_size, new_size));
      // Refused (near an address-space limit): the room to grow was a
      // guess, the request is not.
      if (const size_t exact = round_page(n + sizeof(LargeHeader));
          nb == nullptr && new_size > exact && exact > old_size) {
        new_size = exact;
        nb = static_cast<char*>(os::remap(base, old_size, new_size));
      }
      if (nb != nullptr && nb != base) {
        g_live.replace(p, nb + sizeof(LargeHeader));
        mapping = moved_mapping_id();
      }
      if (nb != nullptr) grow_live_locked(new_size - old_size, new_size - old_size);  // wraps when shrinking
    }
    if (nb == nullptr) {
      // No memory, or the block spans mappings the kernel cannot move as
      // one (neighbours with the same id by a wrap, or split by the
      // program's own mprotect or madvise): copy into a block with the
      // same room to grow, so the next appends stay in place.
      size_t dirty;
      void* q = large_alloc(new_size - sizeof(LargeHeader), kMinAlign, &dirty);
      if (q == nullptr && new_size - sizeof(LargeHeader) > n) q = large_alloc(n, kMinAlign, &dirty);
      if (q == nullptr) return nullptr;
      memcpy(q, p, usable < n ? usable : n);
      large_free(p);
      return q;
    }
  }
  char* user = nb + sizeof(LargeHeader);
  return finish(nb, new_size, mapping, user);
}

namespace {

// Unmaps cached mappings older than the purge delay (all when force)
// until `budget` bytes (rounded up to pages) have gone: of a range larger
// than what is left of the budget, its end.
// With `blocked`, the lock is only tried (the idle purges, see
// SpinLock::try_lock): *blocked is set, and the purge stops, when it is held.
size_t purge_cache(bool force, size_t budget, bool* blocked = nullptr) noexcept {
  uint64_t now = os::now_ms();
  uint64_t delay = options().purge_delay_ms;
  size_t released = 0;
  while (released < budget) {
    char* base = nullptr;
    size_t size = 0;
    if (blocked == nullptr) g_lock.lock();
    else if (!g_lock.try_lock()) {
      *blocked = true;
      break;
    }
    for (unsigned i = 0; i < g_cached; ++i) {
      if (force || ms_since(now, g_cache[i].freed_ms) >= delay) {
        CacheEntry& e = g_cache[i];
        size_t left = budget - released;
        size_t room = e.size > left ? (left + kPageSize - 1) & ~(kPageSize - 1) : e.size;
        if (room < e.size) {  // the end of the range goes, the rest stays cached
          e.size -= room;
          g_cached_bytes -= room;
          base = e.base + e.size;
          size = room;
        } else {
          base = e.base;
          size = e.size;
          drop_entry(i);
        }
        break;
      }
    }
    g_lock.unlock();
    if (base == nullptr) break;
    os::give_back(base, size);
    released += size;
  }
  return released;
}

}  // namespace

size_t large_purge(bool force) noexcept { return purge_cache(force, SIZE_MAX); }

bool large_idle_purge(size_t budget, size_t* left) noexcept {
  bool blocked = false;
  purge_cache(false, budget, &blocked);
  if (blocked) return false;
  *left = __atomic_load_n(&g_cached_bytes, __ATOMIC_RELAXED);
  return true;
}

size_t large_live_bytes() noexcept {
  // The blocks held in thread caches count as live in the shared figure.
  TcacheTotals t;
  large_tcache_totals(&t, [](void*) {}, nullptr);
  size_t live = g_live_bytes.load(std::memory_order_relaxed);
  return live > t.held_usable ? live - t.held_usable : 0;
}

LargeStats large_stats() noexcept {
  // The shared figures are read under the large lock, inside the heap
  // lock that the thread caches' totals are summed under: one snapshot.
  // Blocks in thread caches count as live in the shared counters: take
  // them out.
  struct Shared {
    uint64_t allocs, frees, hist[kLargeBuckets];
    size_t live, peak, cached, live_map;
  } sh{};
  TcacheTotals t;
  large_tcache_totals(
      &t,
      [](void* arg) {
        auto* x = static_cast<Shared*>(arg);
        LockGuard g(g_lock);
        x->allocs = g_allocs.load(std::memory_order_relaxed);
        x->frees = g_frees.load(std::memory_order_relaxed);
        x->live = g_live_bytes.load(std::memory_order_relaxed);
        x->peak = g_peak_live_bytes.load(std::memory_order_relaxed);
        for (unsigned b = 0; b < kLargeBuckets; ++b) x->hist[b] = g_hist[b].load(std::memory_order_relaxed);
        x->cached = g_cached_bytes;
        x->live_map = g_live_map_bytes.load(std::memory_order_relaxed);
      },
      &sh);
  LargeStats s{};
  s.allocs = sh.allocs + t.allocs;
  s.frees = sh.frees + t.frees;
  // The thread caches' counters are read while their owners go on: a block
  // taken from one cache and freed into another one read later counts its
  // free but not its request.
  s.live_blocks = s.allocs > s.frees ? static_cast<size_t>(s.allocs - s.frees) : 0;
  s.live_bytes = sh.live > t.held_usable ? sh.live - t.held_usable : 0;
  s.peak_live_bytes = sh.peak;
  for (unsigned b = 0; b < kLargeBuckets; ++b) s.hist[b] = sh.hist[b];
  for (unsigned b = 0; b < kTcacheBuckets; ++b) s.hist[kTcacheFirstBucket + b] += t.hist[b];
  s.thread_cached_bytes = t.held_bytes;
  s.thread_cache_allocs = t.allocs;
  s.cached_bytes = sh.cached + t.held_bytes;
  s.mapped_bytes = sh.live_map + sh.cached;
  return s;
}

void large_lock_for_fork() noexcept { g_lock.lock_for_fork(); }
void large_unlock_for_fork(bool child) noexcept { g_lock.unlock_after_fork(child); }

}  // namespace pm
