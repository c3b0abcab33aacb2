// Size classes, computed at compile time.
//
// Classes are multiples of 16 up to 128, then eight per power of two, so that
// rounding a request up to its class wastes at most 1/8 of it above 128 bytes.
// Every power of two up to kSmallMax is a class, which aligned allocation
// relies on: blocks of a power-of-two class are aligned to their size.
#pragma once

#include <cstddef>
#include <cstdint>

#include "config.h"

namespace pm {

inline constexpr unsigned kStepsPerDoubling = 8;

consteval unsigned count_size_classes() {
  unsigned n = 128 / kMinAlign;
  for (size_t base = 128; base < kSmallMax; base *= 2) n += kStepsPerDoubling;
  return n;
}
inline constexpr unsigned kNumClasses = count_size_classes();
inline constexpr unsigned kGranules = kSmallMax / kMinAlign + 1;

struct SizeClassTable {
  uint32_t size[kNumClasses];      // block size of each class
  uint8_t slots[kNumClasses];      // slots per pool of this class
  uint32_t capacity[kNumClasses];  // blocks per pool
  uint8_t by_granule[kGranules];   // class of a request, by (n + 15) / 16
};

consteval SizeClassTable make_size_classes() {
  SizeClassTable t{};
  unsigned c = 0;
  for (size_t s = kMinAlign; s <= 128; s += kMinAlign) t.size[c++] = static_cast<uint32_t>(s);
  for (size_t base = 128; base < kSmallMax; base *= 2)
    for (unsigned i = 1; i <= kStepsPerDoubling; ++i)
      t.size[c++] = static_cast<uint32_t>(base + i * (base / kStepsPerDoubling));
  for (unsigned k = 0; k < kNumClasses; ++k) {
    // At least eight blocks a pool, so large classes do not churn pools
    // (the part of a pool past its last carved block costs address space,
    // not memory: carving is lazy).
    unsigned slots = 1;
    while (slots * kSlotSize < 8 * size_t{t.size[k]}) slots *= 2;
    t.slots[k] = static_cast<uint8_t>(slots);
    t.capacity[k] = static_cast<uint32_t>(slots * kSlotSize / t.size[k]);
  }
  unsigned k = 0;
  for (unsigned g = 0; g < kGranules; ++g) {
    while (t.size[k] < g * kMinAlign) ++k;
    t.by_granule[g] = static_cast<uint8_t>(k);
  }
  return t;
}

inline constexpr SizeClassTable kClasses = make_size_classes();

static_assert(kNumClasses == 96);
static_assert(kClasses.size[kNumClasses - 1] == kSmallMax);
static_assert(kClasses.by_granule[0] == 0 && kClasses.size[0] == kMinAlign);

consteval bool classes_are_sound() {
  for (unsigned k = 0; k < kNumClasses; ++k) {
    if (kClasses.size[k] % kMinAlign != 0) return false;
    if (k > 0 && kClasses.size[k] <= kClasses.size[k - 1]) return false;
    // Waste bound: above 128 bytes the next class is at most 1/8 larger.
    if (k > 0 && kClasses.size[k - 1] >= 128 && (kClasses.size[k] - kClasses.size[k - 1]) * 8 > kClasses.size[k - 1])
      return false;
    if (kClasses.capacity[k] < 8 || kClasses.slots[k] > 32) return false;
    // A pool starts on a multiple of pool_align_slots (arena_acquire_pool),
    // so its blocks have the alignment of their size's lowest set bit as
    // long as that is a multiple of it: aligned allocation relies on that.
    uint32_t low = kClasses.size[k] & -kClasses.size[k];
    if (pool_align_slots(kClasses.slots[k]) * kSlotSize % low != 0) return false;
  }
  for (size_t p = kMinAlign; p <= kSmallMax; p *= 2)
    if (kClasses.size[kClasses.by_granule[p / kMinAlign]] != p) return false;
  return true;
}
static_assert(classes_are_sound());

// The class of a request of n bytes, n <= kSmallMax.
[[gnu::always_inline]] inline unsigned class_of(size_t n) noexcept {
  return kClasses.by_granule[(n + kMinAlign - 1) / kMinAlign];
}

[[gnu::always_inline]] inline size_t class_size(unsigned cls) noexcept { return kClasses.size[cls]; }

}  // namespace pm
