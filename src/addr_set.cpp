#include "addr_set.h"

#include <sched.h>

#include "check.h"
#include "os.h"

namespace pm {
namespace {

constexpr size_t kInitialCapacity = 1024;  // 8 KiB: two pages
constexpr auto kRelaxed = std::memory_order_relaxed;

}  // namespace

AddrSet::View AddrSet::view() const noexcept {
  // Acquire, paired with resize's release: a reader that meets a table a
  // writer has just mapped (and will discard what it read there, by the
  // sequence count) reads the mapping after it was made.
  uintptr_t t = table_.load(std::memory_order_acquire);
  if (t == 0) return View{nullptr, 0, 64};
  unsigned log = static_cast<unsigned>(t & 63);
  return View{reinterpret_cast<Slot*>(t & ~uintptr_t{63}), size_t{1} << log, 64 - log};
}

size_t AddrSet::capacity() const noexcept { return view().capacity; }

size_t AddrSet::slot_of(uintptr_t key, unsigned shift) noexcept {
  // Addresses are 16-byte aligned: drop the zero bits, then spread the rest
  // over the table by a multiplicative hash.
  return static_cast<size_t>(((key >> 4) * 0x9E3779B97F4A7C15ull) >> shift);
}

void AddrSet::begin_write() noexcept {
  seq_.store(seq_.load(kRelaxed) + 1, kRelaxed);
  std::atomic_thread_fence(std::memory_order_release);
}

void AddrSet::end_write() noexcept { seq_.store(seq_.load(kRelaxed) + 1, std::memory_order_release); }

size_t AddrSet::find(uintptr_t key) const noexcept {
  View v = view();
  size_t i = slot_of(key, v.shift);
  for (uintptr_t s; (s = v.slots[i].load(kRelaxed)) != 0 && s != key;) i = (i + 1) & (v.capacity - 1);
  return i;
}

void AddrSet::put(uintptr_t key) noexcept {
  size_t i = find(key);
  Slot& s = view().slots[i];
  if (s.load(kRelaxed) == 0) {
    s.store(key, kRelaxed);
    ++count_;
  }
}

void AddrSet::erase_at(size_t i) noexcept {
  // Close the gap: a later entry of the probe run moves back into slot i
  // when its home slot does not lie (cyclically) between i and itself.
  View v = view();
  Slot* slots = v.slots;
  size_t mask = v.capacity - 1;
  unsigned shift = v.shift;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    uintptr_t key = slots[j].load(kRelaxed);
    if (key == 0) break;
    size_t home = slot_of(key, shift);
    bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    slots[i].store(key, kRelaxed);
    i = j;
  }
  slots[i].store(0, kRelaxed);
  --count_;
}

bool AddrSet::resize(size_t capacity) noexcept {
  unsigned log = static_cast<unsigned>(__builtin_ctzll(capacity));
  if (log >= kMaxLog) return false;
  Slot* slots = tables_[log];
  if (slots == nullptr) {
    slots = static_cast<Slot*>(os::map(capacity * sizeof(Slot)));
    if (slots == nullptr) return false;
    tables_[log] = slots;
  } else {
    for (size_t i = 0; i < capacity; ++i) slots[i].store(0, kRelaxed);  // left as it was last used
  }
  View old = view();
  table_.store(reinterpret_cast<uintptr_t>(slots) | log, std::memory_order_release);
  count_ = 0;
  for (size_t i = 0; i < old.capacity; ++i)
    if (uintptr_t key = old.slots[i].load(kRelaxed); key != 0) put(key);
  return true;
}

bool AddrSet::insert(const void* p) noexcept {
  auto key = reinterpret_cast<uintptr_t>(p);
  PM_ASSERT(key != 0);
  size_t cap = capacity();
  begin_write();
  bool ok = (count_ + 1) * 2 <= cap || resize(cap == 0 ? kInitialCapacity : cap * 2);
  if (ok) put(key);
  end_write();
  return ok;
}

bool AddrSet::remove(const void* p) noexcept {
  auto key = reinterpret_cast<uintptr_t>(p);
  View v = view();
  if (v.capacity == 0 || key == 0) return false;
  size_t i = find(key);
  if (v.slots[i].load(kRelaxed) != key) return false;
  size_t capacity = v.capacity;
  begin_write();
  erase_at(i);
  // After a peak of live blocks, go back by halves once the table is an
  // eighth full (if the smaller one cannot be mapped, keep this one).
  if (capacity > kInitialCapacity && count_ * 8 < capacity) (void)resize(capacity / 2);
  end_write();
  return true;
}

bool AddrSet::contains(const void* p) const noexcept {
  auto key = reinterpret_cast<uintptr_t>(p);
  if (key == 0) return false;
  for (unsigned spins = 0;; ++spins) {
    uint64_t seq = seq_.load(std::memory_order_acquire);
    if ((seq & 1) == 0) {
      View v = view();
      bool found = false;
      if (v.capacity != 0) {
        // A table a writer is changing may hold no empty slot on the way:
        // the probe stops after one lap and the count check discards it.
        size_t mask = v.capacity - 1;
        size_t i = slot_of(key, v.shift);
        for (size_t n = 0; n < v.capacity; ++n, i = (i + 1) & mask) {
          uintptr_t s = v.slots[i].load(kRelaxed);
          if (s == key) {
            found = true;
            break;
          }
          if (s == 0) break;
        }
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (seq_.load(kRelaxed) == seq) return found;
    }
    // A writer is at work (or was preempted at it): wait, yielding the CPU
    // now and then as the spin lock does.
    if (spins % 64 == 63) sched_yield();
    else __builtin_ia32_pause();
  }
}

void AddrSet::replace(const void* old, const void* p) noexcept {
  auto old_key = reinterpret_cast<uintptr_t>(old);
  auto key = reinterpret_cast<uintptr_t>(p);
  PM_ASSERT(key != 0);
  View v = view();
  size_t i = v.capacity == 0 ? 0 : find(old_key);
  PM_CHECK(v.capacity != 0 && v.slots[i].load(kRelaxed) == old_key,
           "address set: the address to replace is missing");
  begin_write();
  erase_at(i);
  put(key);  // the load is what it was before the erase: no growth needed
  end_write();
}

}  // namespace pm
