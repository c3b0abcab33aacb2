#include "profile.h"

#include <atomic>

#include "large.h"
#include "lock.h"
#include "options.h"
#include "os.h"
#include "stats.h"

namespace pm {

constinit bool g_profiling = false;

namespace {

// A fixed table of samples: when it fills up, every other sample is dropped
// and the interval doubles, so a long run keeps an even record of its whole
// length in bounded memory.
constexpr unsigned kMaxSamples = 2048;
struct Sample {
  uint32_t ms;
  uint64_t live;
};
constinit SpinLock g_lock;
constinit Sample g_samples[kMaxSamples] = {};
constinit unsigned g_count = 0;
constinit uint64_t g_start_ms = 0;
constinit std::atomic<uint64_t> g_interval_ms{10};
constinit std::atomic<uint64_t> g_next_ms{0};

// Claims the sampling slot of this interval: one thread wins, the rest skip.
bool due(uint64_t now) noexcept {
  uint64_t next = g_next_ms.load(std::memory_order_relaxed);
  if (now < next) return false;
  return g_next_ms.compare_exchange_strong(next, now + g_interval_ms.load(std::memory_order_relaxed),
                                           std::memory_order_relaxed);
}

// The time is read again under the lock, so that the table's times go up
// when two threads sample at once (one that would not be later than the
// last replaces its figure).
void record(uint64_t live) noexcept {
  LockGuard g(g_lock);
  uint64_t now = os::now_ms();
  auto ms = static_cast<uint32_t>(now - g_start_ms);
  if (g_count != 0 && g_samples[g_count - 1].ms >= ms) {
    g_samples[g_count - 1].live = live;
    return;
  }
  if (g_count == kMaxSamples) {
    for (unsigned i = 0; i < kMaxSamples / 2; ++i) g_samples[i] = g_samples[2 * i];
    g_count = kMaxSamples / 2;
    uint64_t interval = g_interval_ms.load(std::memory_order_relaxed) * 2;
    g_interval_ms.store(interval, std::memory_order_relaxed);
    g_next_ms.store(now + interval, std::memory_order_relaxed);  // due() set it by the old one
  }
  g_samples[g_count++] = Sample{ms, live};
}

}  // namespace

void profile_start() noexcept {
  if (options().profile_path[0] == '\0') return;
  g_start_ms = os::now_ms();
  // An interval shorter than the clock's tick would take a sample at every
  // tick, and doubling it would change nothing until it passed the tick.
  uint64_t interval = options().profile_interval_ms;
  uint64_t tick = os::now_ms_resolution();
  g_interval_ms.store(interval < tick ? tick : interval, std::memory_order_relaxed);
  g_next_ms.store(g_start_ms, std::memory_order_relaxed);
  g_profiling = true;
}

void profile_tick() noexcept {
  uint64_t now = os::now_ms();
  if (!due(now)) return;
  record(stats_sample_peaks() + large_live_bytes());
}

void profile_sample(uint64_t small_live_bytes) noexcept {
  if (due(os::now_ms())) record(small_live_bytes + large_live_bytes());
}

void profile_write(Writer& w) noexcept {
  // Take a final sample so the series ends at the time of the report (in
  // place of one taken at the same time).
  uint64_t live = stats_sample_peaks() + large_live_bytes();
  LockGuard g(g_lock);  // record() doubles the interval under it
  uint32_t end = static_cast<uint32_t>(os::now_ms() - g_start_ms);
  unsigned count = g_count != 0 && g_samples[g_count - 1].ms == end ? g_count - 1 : g_count;
  w.put("{\"interval_ms\":").dec(g_interval_ms.load(std::memory_order_relaxed)).put(",\"samples\":[");
  for (unsigned i = 0; i < count; ++i) w.put('[').dec(g_samples[i].ms).put(',').dec(g_samples[i].live).put("],");
  w.put('[').dec(end).put(',').dec(live).put("]]}");
}

void profile_lock_for_fork() noexcept { g_lock.lock_for_fork(); }
void profile_unlock_for_fork(bool child) noexcept { g_lock.unlock_after_fork(child); }

}  // namespace pm
