#include "addr_set.h"

#include "check.h"
#include "os.h"

namespace pm {
namespace {

constexpr size_t kInitialCapacity = 1024;  // 8 KiB: two pages

}  // namespace

size_t AddrSet::slot_of(uintptr_t key) const noexcept {
  // Addresses are 16-byte aligned: drop the zero bits, then spread the rest
  // over the table by a multiplicative hash.
  return static_cast<size_t>(((key >> 4) * 0x9E3779B97F4A7C15ull) >> shift_);
}

size_t AddrSet::find(uintptr_t key) const noexcept {
  size_t mask = capacity_ - 1;
  size_t i = slot_of(key);
  while (slots_[i] != 0 && slots_[i] != key) i = (i + 1) & mask;
  return i;
}

void AddrSet::put(uintptr_t key) noexcept {
  size_t i = find(key);
  if (slots_[i] == 0) {
    slots_[i] = key;
    ++count_;
  }
}

void AddrSet::erase_at(size_t i) noexcept {
  // Close the gap: a later entry of the probe run moves back into slot i
  // when its home slot does not lie (cyclically) between i and itself.
  size_t mask = capacity_ - 1;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (slots_[j] == 0) break;
    size_t home = slot_of(slots_[j]);
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    slots_[i] = slots_[j];
    i = j;
  }
  slots_[i] = 0;
  --count_;
}

bool AddrSet::resize(size_t capacity) noexcept {
  auto* slots = static_cast<uintptr_t*>(os::map(capacity * sizeof(uintptr_t)));
  if (slots == nullptr) return false;
  uintptr_t* old = slots_;
  size_t old_capacity = capacity_;
  slots_ = slots;
  capacity_ = capacity;
  shift_ = 64 - static_cast<unsigned>(__builtin_ctzll(capacity));
  count_ = 0;
  for (size_t i = 0; i < old_capacity; ++i)
    if (old[i] != 0) put(old[i]);
  if (old != nullptr) os::unmap(old, old_capacity * sizeof(uintptr_t));
  return true;
}

bool AddrSet::insert(const void* p) noexcept {
  auto key = reinterpret_cast<uintptr_t>(p);
  PM_ASSERT(key != 0);
  if ((count_ + 1) * 2 > capacity_ && !resize(capacity_ == 0 ? kInitialCapacity : capacity_ * 2)) return false;
  put(key);
  return true;
}

bool AddrSet::remove(const void* p) noexcept {
  auto key = reinterpret_cast<uintptr_t>(p);
  if (capacity_ == 0 || key == 0) return false;
  size_t i = find(key);
  if (slots_[i] != key) return false;
  erase_at(i);
  // After a peak of live blocks, give the table back by halves once it is
  // an eighth full (if the smaller one cannot be mapped, keep this one).
  if (capacity_ > kInitialCapacity && count_ * 8 < capacity_) (void)resize(capacity_ / 2);
  return true;
}

bool AddrSet::contains(const void* p) const noexcept {
  auto key = reinterpret_cast<uintptr_t>(p);
  return capacity_ != 0 && key != 0 && slots_[find(key)] == key;
}

void AddrSet::replace(const void* old, const void* p) noexcept {
  auto old_key = reinterpret_cast<uintptr_t>(old);
  auto key = reinterpret_cast<uintptr_t>(p);
  PM_ASSERT(key != 0);
  size_t i = capacity_ == 0 ? 0 : find(old_key);
  PM_CHECK(capacity_ != 0 && slots_[i] == old_key, "address set: the address to replace is missing");
  erase_at(i);
  put(key);  // the load is what it was before the erase: no growth needed
}

}  // namespace pm
