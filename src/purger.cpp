#include "purger.h"

#include <pthread.h>
#include <time.h>

#include "heap.h"
#include "large.h"
#include "options.h"
#include "segment.h"

namespace pm {

constinit std::atomic<bool> g_purge_wanted{false};

namespace {

constinit std::atomic<bool> g_started{false};

void* purge_loop(void*) noexcept {
  for (;;) {
    uint64_t ms = options().purge_delay_ms / 2;
    if (ms < 10) ms = 10;
    timespec ts{static_cast<time_t>(ms / 1000), static_cast<long>(ms % 1000) * 1000000L};
    nanosleep(&ts, nullptr);
    heap_collect(false);  // this thread has no heap: sweeps abandoned pools only
    arena_purge(false);
    large_purge(false);
  }
  return nullptr;
}

}  // namespace

void purger_start() noexcept {
  g_purge_wanted.store(false, std::memory_order_relaxed);
  if (!options().purge_thread || g_started.exchange(true, std::memory_order_acq_rel)) return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  if (pthread_create(&t, &attr, purge_loop, nullptr) != 0) g_started.store(false, std::memory_order_relaxed);
  pthread_attr_destroy(&attr);
}

void purger_forget() noexcept { g_started.store(false, std::memory_order_relaxed); }

}  // namespace pm
