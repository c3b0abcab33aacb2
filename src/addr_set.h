// A set of addresses: the user pointers of the live large blocks, so that
// free() knows exactly which addresses outside the segments it handed out,
// without reading memory at an address it has not checked.
//
// Open addressing with linear probing in a table mapped from the OS (never
// through malloc), doubled at half load and halved at an eighth; removal
// shifts the rest of a probe run back, so there are no tombstones. The set
// has no lock of its own: the caller serialises every call (large blocks use
// the lock that also guards their cache, so a free takes one lock, not two).
#pragma once

#include <cstddef>
#include <cstdint>

namespace pm {

class AddrSet {
 public:
  // False when the table had to grow and the OS refused the memory; the set
  // is unchanged then. An address already present stays once.
  [[nodiscard]] bool insert(const void* p) noexcept;
  // False when p was not in the set.
  bool remove(const void* p) noexcept;
  [[nodiscard]] bool contains(const void* p) const noexcept;
  // Removes old (which must be present) and adds p, which never needs
  // memory: for a block the kernel moved.
  void replace(const void* old, const void* p) noexcept;
  [[nodiscard]] size_t size() const noexcept { return count_; }
  [[nodiscard]] size_t capacity() const noexcept { return capacity_; }

 private:
  size_t slot_of(uintptr_t key) const noexcept;
  // Position of key, or of the empty slot where it would go.
  size_t find(uintptr_t key) const noexcept;
  void put(uintptr_t key) noexcept;  // room left
  void erase_at(size_t i) noexcept;
  bool resize(size_t capacity) noexcept;  // rehash into a new table

  uintptr_t* slots_ = nullptr;
  size_t capacity_ = 0;  // a power of two, or 0 before the first insert
  unsigned shift_ = 64;  // 64 - log2(capacity_)
  size_t count_ = 0;
};

}  // namespace pm
