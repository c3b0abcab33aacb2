// A set of addresses: the user pointers of the live large blocks, so that
// free() knows exactly which addresses outside the segments it handed out,
// without reading memory at an address it has not checked.
//
// Open addressing with linear probing in a table mapped from the OS (never
// through malloc), doubled at half load and halved at an eighth; removal
// shifts the rest of a probe run back, so there are no tombstones.
//
// Writers (insert, remove, replace) are serialised by the caller (large
// blocks use the lock that also guards their cache). Readers need no lock:
// every change runs inside a sequence count made odd for its duration, and
// a reader that saw the count move, or odd, looks again. The tables are
// never unmapped (one is kept per capacity and reused when the set comes
// back to it), so a reader that raced with a resize reads stale memory,
// never unmapped memory, and the count sends it round again.
#pragma once

#include <atomic>
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
  // Safe without the writers' lock, concurrently with any writer.
  [[nodiscard]] bool contains(const void* p) const noexcept;
  // Removes old (which must be present) and adds p, which never needs
  // memory: for a block the kernel moved.
  void replace(const void* old, const void* p) noexcept;
  [[nodiscard]] size_t size() const noexcept { return count_; }
  [[nodiscard]] size_t capacity() const noexcept;

 private:
  using Slot = std::atomic<uintptr_t>;
  static constexpr unsigned kMaxLog = 48;

  // The table in use and log2 of its capacity, read together from one word.
  struct View {
    Slot* slots;
    size_t capacity;  // a power of two, or 0 before the first insert
    unsigned shift;   // 64 - log2(capacity)
  };
  [[nodiscard]] View view() const noexcept;
  static size_t slot_of(uintptr_t key, unsigned shift) noexcept;
  // Position of key, or of the empty slot where it would go (writers only).
  size_t find(uintptr_t key) const noexcept;
  void put(uintptr_t key) noexcept;  // room left
  void erase_at(size_t i) noexcept;
  bool resize(size_t capacity) noexcept;  // rehash into another table
  void begin_write() noexcept;
  void end_write() noexcept;

  // The table's address (page-aligned) or'ed with log2 of its capacity; 0
  // before the first insert.
  std::atomic<uintptr_t> table_{0};
  std::atomic<uint64_t> seq_{0};     // odd while a writer changes the set
  size_t count_ = 0;
  Slot* tables_[kMaxLog] = {};  // every table ever mapped, by log2 of its capacity
};

}  // namespace pm
