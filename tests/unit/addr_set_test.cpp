// The registry of live large blocks: a hash set of addresses checked against
// a plain model through growth, removals that wrap around the table, and
// use from several threads under one lock, and lookups without it.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "addr_set.h"
#include "lock.h"

namespace {

const void* addr(uintptr_t a) { return reinterpret_cast<const void*>(a); }

TEST(AddrSet, EmptySetHoldsNothing) {
  pm::AddrSet s;
  EXPECT_FALSE(s.contains(addr(0x1000)));
  EXPECT_FALSE(s.remove(addr(0x1000)));
  EXPECT_FALSE(s.contains(nullptr));
  EXPECT_EQ(s.size(), 0u);
}

TEST(AddrSet, InsertIsIdempotentAndRemoveIsExact) {
  pm::AddrSet s;
  ASSERT_TRUE(s.insert(addr(0x7f0000001010)));
  ASSERT_TRUE(s.insert(addr(0x7f0000001010)));
  EXPECT_EQ(s.size(), 1u);
  EXPECT_FALSE(s.contains(addr(0x7f0000001020)));
  EXPECT_TRUE(s.remove(addr(0x7f0000001010)));
  EXPECT_FALSE(s.remove(addr(0x7f0000001010)));
  EXPECT_FALSE(s.contains(addr(0x7f0000001010)));
}

// Random inserts and removals over a small key space, so that probe runs
// are long, collide, and wrap past the end of the table; after every step
// the set must answer exactly as the model does.
TEST(AddrSet, MatchesAModelThroughGrowthAndRemovals) {
  pm::AddrSet s;
  std::set<uintptr_t> model;
  std::mt19937_64 rng(42);
  for (int step = 0; step < 200000; ++step) {
    // Page-aligned plus 16, as large blocks are, in a range of 8192 pages.
    uintptr_t key = 0x7f0000000010 + (rng() % 8192) * 4096;
    if (rng() % 3 != 0) {
      ASSERT_TRUE(s.insert(addr(key)));
      model.insert(key);
    } else {
      ASSERT_EQ(s.remove(addr(key)), model.erase(key) == 1) << "step " << step;
    }
    if (step % 997 == 0) {
      for (uintptr_t k : model) ASSERT_TRUE(s.contains(addr(k))) << "step " << step;
      ASSERT_EQ(s.size(), model.size());
    }
    uintptr_t probe = 0x7f0000000010 + (rng() % 8192) * 4096;
    ASSERT_EQ(s.contains(addr(probe)), model.count(probe) == 1) << "step " << step;
  }
  for (uintptr_t k : model) EXPECT_TRUE(s.remove(addr(k)));
  EXPECT_EQ(s.size(), 0u);
}

// Up to 100,000 addresses (a table of 256K slots), down to 10 (shrunk by
// halves on the way) and up again: every answer stays exact.
TEST(AddrSet, GrowsAndShrinksWithoutLosingAnAddress) {
  pm::AddrSet s;
  for (int cycle = 0; cycle < 2; ++cycle) {
    for (uintptr_t i = 1; i <= 100000; ++i) ASSERT_TRUE(s.insert(addr(i * 4096 + 16)));
    ASSERT_EQ(s.size(), 100000u);
    ASSERT_EQ(s.capacity(), size_t{1} << 18);
    for (uintptr_t i = 11; i <= 100000; ++i) ASSERT_TRUE(s.remove(addr(i * 4096 + 16))) << i;
    ASSERT_EQ(s.size(), 10u);
    EXPECT_EQ(s.capacity(), 1024u);  // the initial size again
    for (uintptr_t i = 1; i <= 100000; ++i) ASSERT_EQ(s.contains(addr(i * 4096 + 16)), i <= 10) << i;
    for (uintptr_t i = 1; i <= 10; ++i) ASSERT_TRUE(s.remove(addr(i * 4096 + 16)));
    ASSERT_EQ(s.size(), 0u);
  }
}

TEST(AddrSet, ReplaceMovesOneAddress) {
  pm::AddrSet s;
  for (uintptr_t i = 1; i <= 3000; ++i) ASSERT_TRUE(s.insert(addr(i * 16)));
  s.replace(addr(16 * 1500), addr(0x900000000010));
  EXPECT_FALSE(s.contains(addr(16 * 1500)));
  EXPECT_TRUE(s.contains(addr(0x900000000010)));
  EXPECT_EQ(s.size(), 3000u);
  for (uintptr_t i = 1; i <= 3000; ++i) {
    if (i != 1500) {
      EXPECT_TRUE(s.contains(addr(i * 16))) << i;
    }
  }
}

// The set has no lock of its own; its users hold one around every call, as
// the large blocks do with theirs.
TEST(AddrSet, ConcurrentThreadsUnderOneLockKeepTheirOwnAddresses) {
  pm::AddrSet s;
  pm::SpinLock lock;
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&s, &lock, t] {
      std::mt19937_64 rng(static_cast<uint64_t>(t));
      std::vector<uintptr_t> mine;
      for (int i = 0; i < 20000; ++i) {
        uintptr_t key = (uintptr_t{1} << 44) * static_cast<uintptr_t>(t + 1) + (rng() % 100000) * 16;
        pm::LockGuard g(lock);
        if (rng() % 2 == 0) {
          if (!s.contains(addr(key))) {
            ASSERT_TRUE(s.insert(addr(key)));
            mine.push_back(key);
          }
        } else if (!mine.empty()) {
          ASSERT_TRUE(s.remove(addr(mine.back())));
          mine.pop_back();
        }
      }
      pm::LockGuard g(lock);
      for (uintptr_t k : mine) ASSERT_TRUE(s.contains(addr(k)));
      for (uintptr_t k : mine) ASSERT_TRUE(s.remove(addr(k)));
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(s.size(), 0u);
}

// Readers take no lock: while one thread inserts and removes addresses
// (growing and shrinking the table many times over), others must always
// find the addresses that stay in the set and never the ones that never
// enter it.
TEST(AddrSet, ReadersWithoutTheLockSeeAConsistentSetThroughResizes) {
  pm::AddrSet s;
  constexpr int kStable = 64;
  for (int i = 0; i < kStable; ++i) ASSERT_TRUE(s.insert(addr((uintptr_t{1} << 40) + i * 4096)));
  std::atomic<bool> stop{false};
  std::atomic<long> wrong{0}, looks{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&, r] {
      long n = 0, bad = 0;
      for (uintptr_t i = 0; !stop.load(std::memory_order_relaxed); ++i, ++n) {
        uintptr_t k = (i * 7 + static_cast<uintptr_t>(r)) % kStable;
        if (!s.contains(addr((uintptr_t{1} << 40) + k * 4096))) ++bad;
        if (s.contains(addr((uintptr_t{3} << 40) + k * 4096))) ++bad;  // never inserted
      }
      wrong += bad;
      looks += n;
    });
  }
  std::mt19937_64 rng(5);
  std::vector<uintptr_t> churn;
  for (int round = 0; round < 40; ++round) {
    // Up to 6000 more addresses (the table grows to 16384 slots), then all
    // of them out again (it shrinks back to 1024).
    for (int i = 0; i < 6000; ++i) {
      uintptr_t key = (uintptr_t{2} << 40) + (rng() % (uintptr_t{1} << 30)) * 16;
      if (!s.contains(addr(key))) {
        ASSERT_TRUE(s.insert(addr(key)));
        churn.push_back(key);
      }
    }
    EXPECT_GE(s.capacity(), 8192u);
    for (uintptr_t k : churn) ASSERT_TRUE(s.remove(addr(k)));
    churn.clear();
    EXPECT_EQ(s.capacity(), 1024u);
  }
  stop = true;
  for (auto& th : readers) th.join();
  EXPECT_EQ(wrong.load(), 0) << "of " << looks.load() << " lookups";
  EXPECT_GT(looks.load(), 0);
  EXPECT_EQ(s.size(), static_cast<size_t>(kStable));
}

}  // namespace
