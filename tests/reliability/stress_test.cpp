// Randomized multi-threaded stress of the core API, seeded and reproducible
// in its choices (thread interleaving is not). Every block carries a pattern
// derived from its id; it is verified whenever the block changes hands:
// free, realloc, and transfer to another thread.
//
// (PM_ rather than POOLMALLOC_: the allocator warns about unknown POOLMALLOC_
// variables.)
//   PM_STRESS_SECONDS  run time (default 20; hours for a soak run)
//   PM_STRESS_SEED     seed (default 1)
//   PM_STRESS_THREADS  worker threads (default 4)
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "alloc.h"
#include "os.h"
#include "segment.h"

namespace {

uint64_t env_u64(const char* name, uint64_t def) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' ? strtoull(v, nullptr, 10) : def;
}

struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

struct Live {
  void* p = nullptr;
  size_t size = 0;
  size_t align = 0;
  uint64_t id = 0;
};

// Words of the pattern. Blocks up to 64 KiB are filled entirely; larger ones
// at a stride plus their last word, which keeps multi-megabyte blocks cheap.
uint64_t word_of(uint64_t id, size_t i) { return (id * 0x9E3779B97F4A7C15ull) ^ (i * 0xD6E8FEB86659FD93ull); }
size_t stride_of(size_t size) { return size <= 65536 ? 1 : 509; }

void fill(const Live& b) {
  auto* w = static_cast<uint64_t*>(b.p);
  size_t words = b.size / 8;
  for (size_t i = 0; i < words; i += stride_of(b.size)) w[i] = word_of(b.id, i);
  if (words > 0) w[words - 1] = word_of(b.id, words - 1);
  auto* c = static_cast<unsigned char*>(b.p);
  for (size_t i = words * 8; i < b.size; ++i) c[i] = static_cast<unsigned char>(b.id + i);
}

// True when the first `size` bytes still hold the pattern of `id`.
bool intact(const void* p, uint64_t id, size_t full_size, size_t size) {
  const auto* w = static_cast<const uint64_t*>(p);
  size_t words = size / 8;
  size_t full_words = full_size / 8;
  for (size_t i = 0; i < words; i += stride_of(full_size))
    if (w[i] != word_of(id, i)) return false;
  if (words == full_words && words > 0 && w[words - 1] != word_of(id, words - 1)) return false;
  const auto* c = static_cast<const unsigned char*>(p);
  if (size == full_size)
    for (size_t i = words * 8; i < size; ++i)
      if (c[i] != static_cast<unsigned char>(id + i)) return false;
  return true;
}

// Requests across every size class and well into large blocks.
size_t pick_size(Rng& r) {
  uint64_t k = r.below(100);
  if (k < 60) return 1 + r.below(256);
  if (k < 90) return 1 + r.below(pm::kSmallMax);
  if (k < 99) return pm::kSmallMax + 1 + r.below(256 * 1024);
  return 1 + r.below(4 << 20);
}

// Blocks in transit between threads.
struct Mailbox {
  std::mutex m;
  std::vector<Live> items;
};

struct Shared {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> ops{0};
  std::atomic<uint64_t> failures{0};
  std::atomic<uint64_t> next_id{1};
  std::vector<Mailbox> boxes;
  explicit Shared(unsigned n) : boxes(n) {}
};

void fail(Shared& sh, const char* what, const Live& b) {
  if (sh.failures.fetch_add(1) < 10)
    ADD_FAILURE() << what << ": block " << b.p << " id " << b.id << " size " << b.size << " align " << b.align;
}

void check_block(Shared& sh, const Live& b) {
  if (!intact(b.p, b.id, b.size, b.size)) fail(sh, "content changed", b);
  if (pm::usable_size(b.p) < b.size) fail(sh, "usable size below the request", b);
  if (b.align != 0 && reinterpret_cast<uintptr_t>(b.p) % b.align != 0) fail(sh, "misaligned", b);
}

void release(Shared& sh, const Live& b) {
  check_block(sh, b);
  if (!pm::owns(b.p)) fail(sh, "owns() is false for a live block", b);
  pm::dealloc(b.p);
}

// One worker generation: `budget` operations, then it exits, handing its
// live blocks to others (so blocks outlive the thread that allocated them).
void worker(Shared& sh, unsigned me, uint64_t seed, uint64_t budget) {
  Rng r{seed * 0x2545F4914F6CDD1Dull + me + 1};
  std::vector<Live> live;
  live.reserve(1024);
  uint64_t done = 0;
  for (; done < budget && !sh.stop.load(std::memory_order_relaxed); ++done) {
    uint64_t op = r.below(100);
    if (op < 40 || live.size() < 16) {
      Live b;
      b.size = pick_size(r);
      b.id = sh.next_id.fetch_add(1, std::memory_order_relaxed);
      uint64_t kind = r.below(10);
      if (kind < 6) {
        b.p = pm::alloc(b.size);
      } else if (kind < 8) {
        size_t count = 1 + r.below(8);
        b.size = count * ((b.size + 7) / 8);
        b.p = pm::alloc_zeroed(count, b.size / count);
        if (b.p != nullptr) {
          const auto* c = static_cast<const unsigned char*>(b.p);
          for (size_t i = 0; i < b.size; i += (b.size > 65536 ? 4093 : 1))
            if (c[i] != 0) {
              fail(sh, "calloc memory not zero", b);
              break;
            }
        }
      } else {
        b.align = size_t{16} << r.below(b.size > pm::kSmallMax ? 14 : 12);
        b.p = pm::alloc_aligned(b.align, b.size);
      }
      if (b.p == nullptr) {
        fail(sh, "allocation failed", b);
        continue;
      }
      fill(b);
      if (live.size() >= 1024) {
        release(sh, live.back());
        live.pop_back();
      }
      live.push_back(b);
    } else if (op < 70) {
      size_t i = r.below(live.size());
      release(sh, live[i]);
      live[i] = live.back();
      live.pop_back();
    } else if (op < 85) {
      Live& b = live[r.below(live.size())];
      size_t n = r.below(4) == 0 ? pick_size(r) : b.size + r.below(b.size / 2 + 16) - b.size / 4;
      if (n == 0) n = 1;
      check_block(sh, b);
      void* q = pm::resize(b.p, n);
      if (q == nullptr) {
        fail(sh, "realloc failed", b);
        continue;
      }
      if (!intact(q, b.id, b.size, n < b.size ? n : b.size)) fail(sh, "realloc lost content", b);
      b.p = q;
      b.size = n;
      b.align = 0;
      b.id = sh.next_id.fetch_add(1, std::memory_order_relaxed);
      fill(b);
    } else if (op < 95) {
      // Give a block to another thread, which frees or keeps it.
      size_t i = r.below(live.size());
      Mailbox& box = sh.boxes[r.below(sh.boxes.size())];
      check_block(sh, live[i]);
      {
        std::lock_guard<std::mutex> g(box.m);
        box.items.push_back(live[i]);
      }
      live[i] = live.back();
      live.pop_back();
    } else {
      std::vector<Live> got;
      {
        std::lock_guard<std::mutex> g(sh.boxes[me].m);
        got.swap(sh.boxes[me].items);
      }
      for (const Live& b : got) {
        if (r.below(4) == 0 && live.size() < 1024) {
          check_block(sh, b);
          live.push_back(b);
        } else {
          release(sh, b);
        }
      }
    }
  }
  sh.ops.fetch_add(done, std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(sh.boxes[(me + 1) % sh.boxes.size()].m);
  for (const Live& b : live) {
    check_block(sh, b);
    sh.boxes[(me + 1) % sh.boxes.size()].items.push_back(b);
  }
}

TEST(Stress, RandomizedMultiThreaded) {
  const uint64_t seconds = env_u64("PM_STRESS_SECONDS", 20);
  const uint64_t seed = env_u64("PM_STRESS_SEED", 1);
  const unsigned nthreads = static_cast<unsigned>(env_u64("PM_STRESS_THREADS", 4));
  ASSERT_GE(nthreads, 2u);
  pm::dealloc(pm::alloc(1));
  (void)pm::trim();
  const size_t mapped_before = pm::os::mapped_bytes();

  Shared sh(nthreads);
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::seconds(seconds);
  uint64_t generation = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < nthreads; ++t)
      ts.emplace_back(worker, std::ref(sh), t, seed + generation * nthreads, 20000 + (generation % 7) * 5000);
    for (auto& t : ts) t.join();
    ++generation;
    if (sh.failures.load() != 0) break;
  }
  sh.stop = true;
  // The main thread frees what is left over from the last generation.
  for (auto& box : sh.boxes)
    for (const Live& b : box.items) release(sh, b);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("stress: seed %llu, %u threads x %llu generations, %llu ops in %.1f s\n",
         static_cast<unsigned long long>(seed), nthreads, static_cast<unsigned long long>(generation),
         static_cast<unsigned long long>(sh.ops.load()), secs);
  EXPECT_EQ(sh.failures.load(), 0u);
  EXPECT_GT(sh.ops.load(), 10000u);

  // Everything was freed: after a forced trim the pools and large blocks are
  // back with the OS, but for heap records and the segment map.
  (void)pm::trim();
  pm::ArenaStats st = pm::arena_stats();
  EXPECT_LE(st.pools_in_use, 4u);
  EXPECT_LE(pm::os::mapped_bytes(), mapped_before + (4u << 20));
}

// Producers allocate batches of small blocks and hand them to a consumer,
// which checks and frees them, so that whole pools of a producer end up on
// their remote stacks; the producers pause now and then, and a third
// thread trims all the time, so that such pools go back to the OS (the
// dropped mark) at every moment of their owners' coming back to them. A
// block handed out twice, or a page given back under a live block, breaks
// a pattern.
TEST(Stress, PoolsFreedRemotelyGoBackWhileTheirOwnersReturn) {
  const uint64_t seconds = env_u64("PM_STRESS_SECONDS", 20) / 4 + 1;
  const uint64_t seed = env_u64("PM_STRESS_SEED", 1);
  pm::dealloc(pm::alloc(1));  // the allocator set up before the trimmer starts
  Shared sh(1);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> trims{0};
  auto producer = [&](unsigned me) {
    Rng r{seed * 0x9E3779B97F4A7C15ull + me + 1};
    static constexpr size_t kSizes[] = {16, 48, 64, 200, 1000, 3000};
    while (!stop.load(std::memory_order_relaxed)) {
      std::vector<Live> batch(500 + r.below(4000));
      size_t size = kSizes[r.below(std::size(kSizes))];
      for (Live& b : batch) {
        b.size = size;
        b.id = sh.next_id.fetch_add(1, std::memory_order_relaxed);
        b.p = pm::alloc(size);
        if (b.p == nullptr) {
          fail(sh, "allocation failed", b);
          return;
        }
        fill(b);
      }
      {
        std::lock_guard<std::mutex> g(sh.boxes[0].m);
        sh.boxes[0].items.insert(sh.boxes[0].items.end(), batch.begin(), batch.end());
      }
      sh.ops.fetch_add(batch.size(), std::memory_order_relaxed);
      if (r.below(3) == 0) std::this_thread::sleep_for(std::chrono::microseconds(r.below(3000)));
    }
  };
  auto consumer = [&] {
    for (bool last = false; !last;) {
      last = stop.load(std::memory_order_acquire);
      std::vector<Live> got;
      {
        std::lock_guard<std::mutex> g(sh.boxes[0].m);
        got.swap(sh.boxes[0].items);
      }
      for (const Live& b : got) release(sh, b);
      if (got.empty()) std::this_thread::yield();
    }
  };
  std::thread trimmer([&] {
    Rng r{seed + 99};
    while (!stop.load(std::memory_order_relaxed)) {
      (void)pm::trim();
      trims.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(std::chrono::microseconds(r.below(2000)));
    }
  });
  std::thread p0(producer, 0), p1(producer, 1), c(consumer);
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  p0.join();
  p1.join();
  c.join();
  trimmer.join();
  for (const Live& b : sh.boxes[0].items) release(sh, b);
  const size_t dropped = pm::arena_stats().pools_dropped;
  printf("drop stress: %llu blocks, %llu trims, %zu pools dropped in %llu s\n",
         static_cast<unsigned long long>(sh.ops.load()), static_cast<unsigned long long>(trims.load()), dropped,
         static_cast<unsigned long long>(seconds));
  EXPECT_EQ(sh.failures.load(), 0u);
  EXPECT_GT(dropped, 10u);
}

}  // namespace
