// Process and thread set-up and tear-down. Nothing here may allocate through
// malloc while the calling thread has no heap: libc calls that might
// (pthread_setspecific for high keys, pthread_atfork) run only after the
// thread's heap is installed, so a nested malloc finds it.
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>

#include "check.h"
#include "check_full.h"
#include "fixed_pool.h"
#include "heap.h"
#include "lock.h"
#include "large.h"
#include "options.h"
#include "os.h"
#include "pool.h"
#include "purger.h"
#include "profile.h"
#include "report.h"
#include "segment.h"

extern char** environ;

namespace pm {
namespace {

enum : int { kUninit, kBusy, kReady };
constinit std::atomic<int> g_state{kUninit};
constinit std::atomic<bool> g_atfork_done{false};
constinit pthread_key_t g_key = 0;
constinit bool g_key_ok = false;

// Set once the thread's heap has been torn down: a free by one of its
// later destructors does not set up a heap again just to take a pool over.
constinit thread_local bool tl_heap_done [[gnu::tls_model("initial-exec")]] = false;

void thread_done(void* arg) noexcept {
  auto* h = static_cast<Heap*>(arg);
  purger_start_at_thread_exit();  // while h is still this thread's heap
  if (tl_heap == h) tl_heap = &g_empty_heap;
  tl_heap_done = true;
  heap_abandon(h);
  // The purger looks now whether this was the program's last thread (then
  // it ends too, or the process would never exit).
  purger_thread_exited();
}

void register_atfork() noexcept {
  if (g_atfork_done.exchange(true, std::memory_order_acq_rel)) return;
  pthread_atfork(fork_prepare, fork_parent, fork_child);
}

// The handlers are registered as early as a library can: glibc runs the
// prepare handlers in the reverse order of their registration and the
// parent and child ones in order, so the handlers a program registers
// later, which may allocate, run while the allocator is not yet held for
// the fork, or once it is ready again. Those registered earlier still (by
// a library initialised before this one) find the locks held by their own
// thread, which lets them through (lock.h). A malloc inside pthread_atfork
// sets this thread's heap up, and finds the registration under way.
[[gnu::constructor(101)]] void register_atfork_early() noexcept {
  os::note_process();
  register_atfork();
}

}  // namespace

void process_init() noexcept {
  if (g_state.load(std::memory_order_acquire) == kReady) [[likely]]
    return;
  int expected = kUninit;
  if (!g_state.compare_exchange_strong(expected, kBusy, std::memory_order_acq_rel)) {
    while (g_state.load(std::memory_order_acquire) != kReady) sched_yield();
    return;
  }
  options_init(environ);
  check_full_init();
  uintptr_t secret = 0;
  os::random_bytes(&secret, sizeof secret);
  g_tag_secret = secret | 1;
  g_key_ok = pthread_key_create(&g_key, thread_done) == 0;
  arena_init();  // before any segment, and before another thread can free
  const Options& o = options();
  if (o.reserve != 0 && arena_reserve(o.reserve, o.reserve_prefault) * kSegmentSize < o.reserve)
    warn("POOLMALLOC_RESERVE: could not map all of the reservation");
  profile_start();
  g_state.store(kReady, std::memory_order_release);
  if (o.verbose) report_start();
}

Heap* thread_init() noexcept {
  process_init();
  Heap* h = heap_create();
  // The OS refused the heap's memory: what the caches hold may make room.
  if (h == nullptr && release_for_retry()) h = heap_create();
  if (h == nullptr) return nullptr;
  tl_heap = h;
  purger_thread_started();
  // Both calls may allocate; the heap is installed, so that recursion is safe.
  if (g_key_ok) pthread_setspecific(g_key, h);
  register_atfork();
  return h;
}

Heap* thread_heap_or_set_up() noexcept {
  if (tl_heap != &g_empty_heap) return tl_heap;
  return tl_heap_done ? nullptr : thread_init();
}

bool thread_heap_torn_down() noexcept { return tl_heap_done; }

// A request by a thread whose heap was torn down (a later pthread key
// destructor): whether glibc runs another round of destructors is not
// known (not after the last of PTHREAD_DESTRUCTOR_ITERATIONS), so the
// heap that serves it is given up again at once; its pools go to the
// abandoned lists, where the next such request adopts them.
void* alloc_after_teardown(unsigned cls) noexcept {
  Heap* h = heap_create();
  if (h == nullptr && release_for_retry()) h = heap_create();
  if (h == nullptr) {
    errno = ENOMEM;
    return nullptr;
  }
  tl_heap = h;
  void* b = heap_alloc_slow(h, cls);
  int saved = errno;
  tl_heap = &g_empty_heap;
  heap_abandon(h);
  purger_thread_exited();
  errno = saved;
  return b;
}

void fork_prepare() noexcept {
  fixed_pools_lock_for_fork();  // first: a fixed pool calls into the core under its lock
  check_full_lock_for_fork();
  heap_lock_for_fork();
  large_lock_for_fork();
  arena_lock_for_fork();
  profile_lock_for_fork();  // a leaf: no other lock is taken under it
  tl_fork_holder = true;
}

void fork_parent() noexcept {
  profile_unlock_for_fork(false);
  arena_unlock_for_fork(false);
  large_unlock_for_fork(false);
  heap_unlock_for_fork(false);
  check_full_unlock_for_fork(false);
  fixed_pools_unlock_for_fork(false);
  tl_fork_holder = false;
}

void fork_child() noexcept {
  os::note_process();
  purger_forget();
  profile_unlock_for_fork(true);
  arena_unlock_for_fork(true);
  large_unlock_for_fork(true);
  heap_unlock_for_fork(true);
  check_full_unlock_for_fork(true);
  fixed_pools_unlock_for_fork(true);
  tl_fork_holder = false;
  heap_after_fork_child(tl_heap);
}

}  // namespace pm
