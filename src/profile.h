// Allocation profile (POOLMALLOC_PROFILE=PATH): live bytes sampled over time
// from slow paths only, written with the statistics as JSON at exit. When the
// option is off, the hooks cost one load and a predictable branch, in slow
// paths; the fast paths never look.
#pragma once

#include <cstdint>

#include "writer.h"

namespace pm {

extern constinit bool g_profiling;  // set once at start, read-only afterwards

[[gnu::always_inline]] inline bool profile_enabled() noexcept { return g_profiling; }

void profile_start() noexcept;
// A slow path ran: take a sample if the interval has passed.
void profile_tick() noexcept;
// Record `small_live_bytes` and the large blocks' as the figure now, if the
// interval has passed.
void profile_sample(uint64_t small_live_bytes) noexcept;
// The profile object: {"interval_ms": the interval in force at the end (the
// configured one, doubled each time the table filled), "samples": [[ms since
// start, live bytes], ...]}.
void profile_write(Writer& w) noexcept;
// fork: the sample table's lock is held across it, and reset in the child.
void profile_lock_for_fork() noexcept;
void profile_unlock_for_fork(bool child) noexcept;

}  // namespace pm
