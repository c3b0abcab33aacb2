// Human- and machine-readable reports of the statistics: a text table, JSON,
// glibc's malloc_info XML, and the settings banner of POOLMALLOC_VERBOSE.
// Everything goes through a Writer: no stdio, no allocation.
#pragma once

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "stats.h"
#include "writer.h"

namespace pm {

// `at_exit` titles the live blocks as a leak summary.
void report_text(Writer& w, const Stats& s, bool at_exit) noexcept;
// One JSON object; with `profile`, it also holds the sampled live bytes.
void report_json(Writer& w, const Stats& s, bool at_exit, bool profile) noexcept;
// glibc's malloc_info format: <malloc version="1">...</malloc>.
void report_xml(Writer& w, const Stats& s) noexcept;

// While a report is written (at exit, or by poolmalloc_stats_print): a
// write to a pipe whose reader is gone (`POOLMALLOC_STATS=1 prog 2>&1 |
// head`) or past the file size limit (`ulimit -f`) fails with EPIPE or EFBIG instead of killing the process
// with SIGPIPE or SIGXFSZ, which would replace its exit status (and lose
// the output its stdio has yet to flush); a signal the report raised is
// taken back, one that was pending before is left.
class NoWriteSignals {
 public:
  NoWriteSignals() noexcept {
    sigemptyset(&held_);
    sigaddset(&held_, SIGPIPE);
    sigaddset(&held_, SIGXFSZ);
    sigset_t pending;
    sigemptyset(&pending);
    if (sigpending(&pending) == 0) {
      pipe_was_pending_ = sigismember(&pending, SIGPIPE) == 1;
      xfsz_was_pending_ = sigismember(&pending, SIGXFSZ) == 1;
    }
    pthread_sigmask(SIG_BLOCK, &held_, &caller_);
  }
  ~NoWriteSignals() {
    int saved = errno;
    take_back(SIGPIPE, pipe_was_pending_);
    take_back(SIGXFSZ, xfsz_was_pending_);
    pthread_sigmask(SIG_SETMASK, &caller_, nullptr);
    errno = saved;
  }
  NoWriteSignals(const NoWriteSignals&) = delete;
  NoWriteSignals& operator=(const NoWriteSignals&) = delete;

 private:
  static void take_back(int sig, bool was_pending) noexcept {
    if (was_pending) return;
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    timespec none{0, 0};
    (void)sigtimedwait(&one, nullptr, &none);
  }
  sigset_t held_, caller_;
  bool pipe_was_pending_ = false;
  bool xfsz_was_pending_ = false;
};

// What POOLMALLOC_STATS and POOLMALLOC_PROFILE ask for at process exit; runs once.
void report_at_exit() noexcept;
// The announcement of POOLMALLOC_VERBOSE, on stderr.
void report_start() noexcept;

}  // namespace pm
