// A small spin lock for the allocator's slow paths (arena, abandoned pools,
// heap registry). It never allocates and can be reset in a fork child.
#pragma once

#include <sched.h>

#include <atomic>

namespace pm {

class SpinLock {
 public:
  void lock() noexcept {
    for (unsigned spins = 0; locked_.exchange(true, std::memory_order_acquire); ++spins) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins > 64) {
          sched_yield();
          spins = 0;
        } else {
          __builtin_ia32_pause();
        }
      }
    }
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }
  // Only for the fork child, where the holder no longer exists.
  void reset() noexcept { locked_.store(false, std::memory_order_relaxed); }

 private:
  std::atomic<bool> locked_{false};
};

class LockGuard {
 public:
  explicit LockGuard(SpinLock& l) noexcept : l_(l) { l_.lock(); }
  ~LockGuard() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  SpinLock& l_;
};

}  // namespace pm
