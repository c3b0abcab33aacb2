// Fixed pools (fixed_pool.cpp) as the fork handlers see them.
#pragma once

namespace pm {

// Taken first by the fork handlers, before every lock of the core: a
// thread-safe fixed pool holds its lock while it calls into the core.
// Every thread-safe pool's lock is held across the fork, so that the child
// finds none of them held by a thread it does not have.
void fixed_pools_lock_for_fork() noexcept;
void fixed_pools_unlock_for_fork(bool child) noexcept;

}  // namespace pm
