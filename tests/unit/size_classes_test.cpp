// Size classes: exhaustive over every request size a pool serves.
#include <gtest/gtest.h>

#include "pool.h"
#include "size_classes.h"

namespace pm {
namespace {

TEST(SizeClasses, EveryRequestGetsTheSmallestClassThatFits) {
  for (size_t n = 0; n <= kSmallMax; ++n) {
    unsigned c = class_of(n);
    ASSERT_LT(c, kNumClasses) << n;
    ASSERT_GE(class_size(c), n) << n;
    if (c > 0) {
      ASSERT_LT(class_size(c - 1), n) << n;
    }
  }
}

TEST(SizeClasses, RoundingWasteIsAtMostOneEighthAbove128) {
  for (size_t n = 129; n <= kSmallMax; ++n) {
    size_t waste = class_size(class_of(n)) - n;
    ASSERT_LE(waste * 8, n) << n;
  }
}

TEST(SizeClasses, ClassesAreMultiplesOf16AndPowersOfTwoAreClasses) {
  for (unsigned c = 0; c < kNumClasses; ++c) {
    EXPECT_EQ(class_size(c) % 16, 0u) << c;
  }
  for (size_t p = 16; p <= kSmallMax; p *= 2) EXPECT_EQ(class_size(class_of(p)), p);
}

TEST(SizeClasses, PoolsHoldAtLeastEightBlocksAndWasteLittle) {
  for (unsigned c = 0; c < kNumClasses; ++c) {
    size_t pool = size_t{kClasses.slots[c]} * kSlotSize;
    EXPECT_GE(kClasses.capacity[c], 8u) << c;
    EXPECT_EQ(kClasses.capacity[c], pool / class_size(c)) << c;
    EXPECT_LE((pool % class_size(c)) * 8, pool) << c;  // tail waste below 12.5%
  }
}

// The one-multiplication block-start test against plain division, for every
// byte offset of a pool of every class, including the tail past the last
// block, with all its blocks carved, some, one and none.
TEST(SizeClasses, BlockStartTestIsExactForEveryOffsetOfEveryClass) {
  for (unsigned c = 0; c < kNumClasses; ++c) {
    uint64_t size = class_size(c), capacity = kClasses.capacity[c];
    for (uint64_t carved : {capacity, capacity / 2 + 1, capacity - 1, uint64_t{1}, uint64_t{0}}) {
      Pool p;
      char* base = reinterpret_cast<char*>(uintptr_t{1} << 40);
      p.start = base;
      block_start_constants(size, carved, &p.div_mul, &p.div_limit);
      size_t pool = size_t{kClasses.slots[c]} * kSlotSize;
      for (size_t off = 0; off < pool; ++off) {
        // Block 0 passes even with nothing carved (nothing can be freed then).
        bool start = off % size == 0 && (off / size < carved || off == 0);
        ASSERT_EQ(not_block_start(&p, reinterpret_cast<uintptr_t>(base + off)), !start)
            << "class " << c << " carved " << carved << " offset " << off;
      }
    }
  }
}

}  // namespace
}  // namespace pm
