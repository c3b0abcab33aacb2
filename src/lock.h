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
//
// Across fork, the forking thread holds every lock of the allocator (the
// fork handlers, init.cpp). The program's own fork handlers may run while
// it holds them and allocate (glibc runs the prepare handlers registered
// after ours before ours, the child and parent ones registered before ours
// after ours): a lock held for fork lets its holder through, so that they
// find the allocator as it was when the locks were taken, with no section
// under way.
#pragma once

#include <sched.h>
#include <sys/single_threaded.h>

#include <atomic>

namespace pm {

// Set on the forking thread from when it has taken the locks for fork until
// it gives them back (in the parent and in the child).
inline constinit thread_local bool tl_fork_holder [[gnu::tls_model("initial-exec")]] = false;

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
    if (fork_held_.load(std::memory_order_relaxed) && tl_fork_holder) [[unlikely]]
      return;
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
    if (fork_held_.load(std::memory_order_relaxed) && tl_fork_holder) [[unlikely]]
      return;
    locked_.store(false, std::memory_order_release);
  }
  // Only for the fork child, where the holder no longer exists.
  void reset() noexcept {
    fork_held_.store(false, std::memory_order_relaxed);
    elided_.store(false, std::memory_order_relaxed);
    locked_.store(false, std::memory_order_relaxed);
  }
  // The fork handlers: taken before the fork, given back after it in the
  // parent (unlock) or the child (reset); the holder passes meanwhile.
  void lock_for_fork() noexcept {
    lock();
    fork_held_.store(true, std::memory_order_relaxed);
  }
  void unlock_after_fork(bool child) noexcept {
    fork_held_.store(false, std::memory_order_relaxed);
    if (child) reset();
    else unlock();
  }
  // Takes the lock unless it is held: by another thread, or by the section
  // of this thread that a signal handler interrupted (where lock() would
  // wait for good). For the purges made from the waits, which may run in a
  // signal handler. Never for fork.
  [[nodiscard]] bool try_lock() noexcept {
    if (__libc_single_threaded) {
      if (held_unthreaded()) return false;
      lock();
      return true;
    }
    return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
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
  // Held by the forking thread (tl_fork_holder) for fork.
  std::atomic<bool> fork_held_{false};
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
