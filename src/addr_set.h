// A set of addresses: the user pointers of the live large blocks, so that
// free() knows exactly which addresses outside the segments it handed out,
// without reading memory at an address it has not checked.
//
// Open addressing with linear probing in a table mapped from the OS (never
// through malloc), grown by doubling at half load; removal shifts the rest
// of a probe run back, so there are no tombstones. One spin lock guards it.
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

 private:
  size_t slot_of(uintptr_t key) const noexcept;
  // Position of key, or of the empty slot where it would go.
  size_t find(uintptr_t key) const noexcept;
  void put(uintptr_t key) noexcept;  // room left
  void erase_at(size_t i) noexcept;
  bool grow() noexcept;

  uintptr_t* slots_ = nullptr;
  size_t capacity_ = 0;  // a power of two, or 0 before the first insert
  unsigned shift_ = 64;  // 64 - log2(capacity_)
  size_t count_ = 0;
};

}  // namespace pm
