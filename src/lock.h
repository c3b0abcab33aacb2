// A small spin lock for the allocator's slow paths (arena, abandoned pools,
// heap registry, large blocks). It never allocates and can be reset in a
// fork child.
//
// While the process has a single thread (glibc's __libc_single_threaded,
// which the first pthread_create clears for good), the lock is not taken:
// no other thread can enter, and an atomic exchange would also wait for the
// program's pending stores to reach the cache. glibc's own malloc skips its
// locks the same way. No critical section creates a thread, so a section
// that started unlocked never overlaps another thread's.
#pragma once

#include <sched.h>
#include <sys/single_threaded.h>

#include <atomic>

namespace pm {

class SpinLock {
 public:
  void lock() noexcept {
    if (__libc_single_threaded) {
      elided_.store(true, std::memory_order_relaxed);
      // Seen by a signal handler of this thread before the section's own
      // stores (held_unthreaded).
      std::atomic_signal_fence(std::memory_order_seq_cst);
      return;
    }
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
  void unlock() noexcept {
    if (elided_.load(std::memory_order_relaxed)) {
      std::atomic_signal_fence(std::memory_order_seq_cst);
      elided_.store(false, std::memory_order_relaxed);
      return;
    }
    locked_.store(false, std::memory_order_release);
  }
  // Only for the fork child, where the holder no longer exists.
  void reset() noexcept {
    elided_.store(false, std::memory_order_relaxed);
    locked_.store(false, std::memory_order_relaxed);
  }
  // While the process has a single thread: true when the section this
  // thread is in (or the one a signal handler of it interrupted) holds the
  // lock.
  [[nodiscard]] bool held_unthreaded() const noexcept {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    return elided_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<bool> locked_{false};
  // Held without the atomic flag (single-threaded); the holder's own, and
  // read only by the holder's thread.
  std::atomic<bool> elided_{false};
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
