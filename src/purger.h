// The background purger: a thread that wakes every half purge delay and
// returns freed pool slots and old cached large mappings to the OS, so that a
// program that goes idle gives memory back within about one purge delay;
// and the pages of pools whose blocks other threads have all freed while
// their owner, alive, took none back for a whole pass (kDroppedMark).
//
// It starts when there is something to purge, or when a thread that
// allocated exits (its pools go back then, maybe with no allocation after
// them): with POOLMALLOC_PURGE_THREAD=
// auto (the default) only once the program has a thread of its own besides
// the main one (in a forked child: once the child has started one); with 1 in
// any program; with 0 never. It runs with every signal blocked. Once nothing
// is left to purge it parks on a futex, and whoever next leaves memory to
// purge (a free included) wakes it with one system call.
// Without it, purging happens on the allocator's own slow paths and idle
// retention is bounded in size instead.
//
// States (g_purger_state): kStopped (no thread), kRunning, kParked. Only
// purger_start moves kStopped to kRunning, only the thread itself moves
// kRunning to kParked, and purger_wake (or the thread) moves it back.
// No purgeable memory is missed by a parking thread: the thread publishes
// kParked and then looks at the arena and the large caches under their
// locks; whoever makes memory purgeable does it under the same lock (or
// follows it with a full fence) and then reads the state.
#pragma once

#include <atomic>
#include <cstdint>

namespace pm {

extern constinit std::atomic<bool> g_purge_wanted;  // set when there is something to purge
// Set when memory became purgeable while no purger thread runs; cleared by
// idle_purge once nothing is left.
extern constinit std::atomic<bool> g_idle_dirty;

enum PurgerState : uint32_t { kPurgerStopped = 0, kPurgerRunning = 1, kPurgerParked = 2 };
extern constinit std::atomic<uint32_t> g_purger_state;

// Starts the thread if enabled, wanted and not started. Call with no lock
// held: creating a thread allocates. Called from allocation slow paths
// and a heap's thread-exit destructor only, never from free: glibc frees a
// dead thread's TLS blocks while it
// holds its stack-cache lock, which pthread_create takes too, so a thread
// started from that free would wait for itself forever. Waking a parked
// thread takes no lock and may be done anywhere.
[[gnu::cold]] void purger_start() noexcept;
// A thread with a heap is exiting: its pools are about to go back to the
// arena, and nothing may allocate after it (a program whose last worker
// exits and which then waits). Starts the thread as purger_start would, so
// that what the exit frees is returned within the purge delay. Called from
// the heap's key destructor, where glibc holds none of its locks, before
// the heap is torn down (pthread_create allocates).
void purger_start_at_thread_exit() noexcept;
// Moves a parked thread to running and wakes it (a futex wake).
[[gnu::cold, gnu::noinline]] void purger_wake() noexcept;
// Fork child: the thread does not exist there, and the child counts as
// single-threaded until another of its threads sets up a heap.
void purger_forget() noexcept;
// A thread set up its heap.
void purger_thread_started() noexcept;
// True once the thread exists, parked or not (tests, statistics).
// A thread that had a heap ended (its heap already given up): when no
// other thread has one, a napping purger looks at once whether it is the
// last thread left (and then ends, so that the process can).
void purger_thread_exited() noexcept;
[[nodiscard]] bool purger_running() noexcept;
// True while the thread waits for memory to purge (tests).
[[nodiscard]] bool purger_parked() noexcept;

[[gnu::always_inline]] inline void purger_poll() noexcept {
  if (g_purge_wanted.load(std::memory_order_relaxed)) [[unlikely]]
    purger_start();
}

// Waits while no purger thread runs (preload/waits.cpp): a single-threaded
// program gets none, and a threaded one may not have started it yet. The
// library's wrappers of poll, epoll_wait, nanosleep and their kin then
// wait in slices of this many milliseconds (the purge delay, at least 10)
// and call idle_purge between them. -1 when a wait need not be sliced: the
// purger thread exists or is turned off, or nothing is left to purge.
[[nodiscard]] int idle_slice_ms() noexcept;
// Returns the pool slots and cached large mappings that have waited long
// enough, of each about `budget` bytes at most, unless the wait
// interrupted the allocator itself (a signal handler's wait while this
// thread held one of its locks). False once nothing is left to purge: the
// rest of the wait can go whole.
[[nodiscard]] bool idle_purge(size_t budget = SIZE_MAX) noexcept;
// The budget of a purge made once a wait has ended, before the call
// returns (an event loop's wait that timed out), of pool memory and of
// cached large blocks each: a purge of this many bytes takes a millisecond
// or two, where a hundred megabytes took tens. What is left goes at the
// next wait.
inline constexpr size_t kIdlePurgeAfterWait = size_t{4} << 20;

// Memory became purgeable. Call with the arena lock or the large lock held
// (the locks under which the parking thread looks), or after a full fence.
// A parked thread is woken; a running one needs nothing; with none, the
// next allocation slow path is asked to start it.
[[gnu::always_inline]] inline void purger_note() noexcept {
  uint32_t state = g_purger_state.load(std::memory_order_relaxed);
  if (state == kPurgerParked) [[unlikely]] {
    purger_wake();
  } else if (state == kPurgerStopped) {
    if (!g_purge_wanted.load(std::memory_order_relaxed)) g_purge_wanted.store(true, std::memory_order_relaxed);
    if (!g_idle_dirty.load(std::memory_order_relaxed)) g_idle_dirty.store(true, std::memory_order_relaxed);
  }
}

}  // namespace pm
