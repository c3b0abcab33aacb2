// The optional background purger (POOLMALLOC_PURGE_THREAD=1): a thread that
// wakes every half purge delay and returns freed pool slots and cached large
// mappings to the OS, so that a program that goes idle gives memory back
// within a bounded time. Off by default: without it, purging happens on the
// allocator's own slow paths and idle retention is bounded in size instead.
#pragma once

#include <atomic>

namespace pm {

extern constinit std::atomic<bool> g_purge_wanted;  // set when there is something to purge

// Starts the thread once, if enabled and wanted. Call with no lock held:
// creating a thread allocates.
[[gnu::cold]] void purger_start() noexcept;
// Fork child: the thread does not exist there.
void purger_forget() noexcept;

[[gnu::always_inline]] inline void purger_poll() noexcept {
  if (g_purge_wanted.load(std::memory_order_relaxed)) [[unlikely]]
    purger_start();
}

}  // namespace pm
