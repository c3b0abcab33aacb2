// The background purger: a thread that wakes every half purge delay and
// returns freed pool slots and old cached large mappings to the OS, so that a
// program that goes idle gives memory back within about one purge delay.
//
// It starts when there is something to purge: with POOLMALLOC_PURGE_THREAD=
// auto (the default) only once the program has a thread of its own besides
// the main one (in a forked child: once the child has started one); with 1 in
// any program; with 0 never. It runs with every signal blocked, and exits
// once nothing is left to purge, to start again when needed.
// Without it, purging happens on the allocator's own slow paths and idle
// retention is bounded in size instead.
#pragma once

#include <atomic>

namespace pm {

extern constinit std::atomic<bool> g_purge_wanted;  // set when there is something to purge

// Starts the thread if enabled, wanted and not running. Call with no lock
// held: creating a thread allocates. Called from allocation slow paths
// only, never from free: glibc frees a dead thread's TLS blocks while it
// holds its stack-cache lock, which pthread_create takes too, so a thread
// started from that free would wait for itself forever.
[[gnu::cold]] void purger_start() noexcept;
// Fork child: the thread does not exist there, and the child counts as
// single-threaded until another of its threads sets up a heap.
void purger_forget() noexcept;
// A thread set up its heap.
void purger_thread_started() noexcept;
// True while the thread runs (tests, statistics).
[[nodiscard]] bool purger_running() noexcept;

[[gnu::always_inline]] inline void purger_poll() noexcept {
  if (g_purge_wanted.load(std::memory_order_relaxed)) [[unlikely]]
    purger_start();
}

}  // namespace pm
