// The waits of a program that has a single thread: poll, select,
// epoll_wait, epoll_pwait, nanosleep, clock_nanosleep, sleep and usleep. Such a program
// gets no purger thread (see src/purger.h), so memory it freed before it
// went to sleep in one of these calls would stay resident for as long as it
// sleeps. While there is something to purge, these wrappers wait in slices
// of one purge delay and return what has waited long enough between them,
// then wait out the rest whole. What the caller sees is the same: the call
// returns when the real one would (an event, a signal, the end of its
// timeout), with the same result, errno and remaining time. In every other
// case (another thread, the purger thread running or turned off, nothing
// to purge, a zero timeout) they are one call to the C library's function.
//
// Signals: a sliced wrapper blocks every signal for its whole length, and
// each slice waits with the caller's mask put back atomically (ppoll,
// pselect, epoll_pwait), as the caller's own call would have waited. A
// signal that comes between two slices (during a purge) stays pending
// until the next slice, which it interrupts: the wrapper returns EINTR as
// the real call would have, and the handler runs then. Run between the
// slices with the caller's mask, the handler would run and the wait go on.
// The purges between slices run with cancellation off (NoCancel).
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/select.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdint>
#include <cstring>

#include "next_symbol.h"
#include "os.h"
#include "purger.h"

#define PM_EXPORT __attribute__((visibility("default")))

namespace {

using pm_preload::next_symbol;

using PollFn = int (*)(pollfd*, nfds_t, int);
using SelectFn = int (*)(int, fd_set*, fd_set*, fd_set*, timeval*);
using EpollWaitFn = int (*)(int, epoll_event*, int, int);
using EpollPwaitFn = int (*)(int, epoll_event*, int, int, const sigset_t*);
using NanosleepFn = int (*)(const timespec*, timespec*);
using ClockNanosleepFn = int (*)(clockid_t, int, const timespec*, timespec*);
using SleepFn = unsigned (*)(unsigned);
using UsleepFn = int (*)(useconds_t);
using PpollFn = int (*)(pollfd*, nfds_t, const timespec*, const sigset_t*);
using PselectFn = int (*)(int, fd_set*, fd_set*, fd_set*, const timespec*, const sigset_t*);

constinit std::atomic<PollFn> g_poll{nullptr};
constinit std::atomic<SelectFn> g_select{nullptr};
constinit std::atomic<EpollWaitFn> g_epoll_wait{nullptr};
constinit std::atomic<EpollPwaitFn> g_epoll_pwait{nullptr};
constinit std::atomic<NanosleepFn> g_nanosleep{nullptr};
constinit std::atomic<ClockNanosleepFn> g_clock_nanosleep{nullptr};
constinit std::atomic<SleepFn> g_sleep{nullptr};
constinit std::atomic<UsleepFn> g_usleep{nullptr};
constinit std::atomic<PpollFn> g_ppoll{nullptr};
constinit std::atomic<PselectFn> g_pselect{nullptr};

// Looked up when the library is loaded, not at a first call, which may
// come from a signal handler (these functions are async-signal-safe, and
// dlsym is not). The lazy lookup remains for calls made before this runs,
// from an earlier library's constructor.
[[gnu::constructor]] void look_up_the_real_waits() noexcept {
  next_symbol(g_poll, "poll");
  next_symbol(g_select, "select");
  next_symbol(g_epoll_wait, "epoll_wait");
  next_symbol(g_epoll_pwait, "epoll_pwait");
  next_symbol(g_nanosleep, "nanosleep");
  next_symbol(g_clock_nanosleep, "clock_nanosleep");
  next_symbol(g_sleep, "sleep");
  next_symbol(g_usleep, "usleep");
  next_symbol(g_ppoll, "ppoll");
  next_symbol(g_pselect, "pselect");
}

// Every signal blocked while the wrapper runs; the slices wait with the
// caller's mask (see the top of the file).
class SignalsHeld {
 public:
  SignalsHeld() noexcept {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &caller_);
  }
  ~SignalsHeld() { pthread_sigmask(SIG_SETMASK, &caller_, nullptr); }
  SignalsHeld(const SignalsHeld&) = delete;
  SignalsHeld& operator=(const SignalsHeld&) = delete;
  [[nodiscard]] const sigset_t* caller() const noexcept { return &caller_; }

 private:
  sigset_t caller_;
};

// Copies between the caller's memory and the wrapper's through the kernel,
// which fails where a plain read or write would fault (a page not mapped,
// or mapped PROT_NONE or read-only): the C library's call would have
// failed there with EFAULT, and so does the wrapper, instead of taking a
// SIGSEGV with every signal held.
bool copy_from_caller(void* to, const void* from, size_t n) noexcept {
  if (from == nullptr) return false;
  iovec local{to, n}, remote{const_cast<void*>(from), n};
  int saved = errno;
  bool ok = process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
  errno = saved;
  return ok;
}
bool copy_to_caller(void* to, const void* from, size_t n) noexcept {
  iovec local{const_cast<void*>(from), n}, remote{to, n};
  int saved = errno;
  bool ok = process_vm_writev(getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
  errno = saved;
  return ok;
}

// The slice of a wait, or -1 when the wait is to be the C library's call
// alone (see pm::idle_slice_ms). Also -1 in a process that started under
// a seccomp filter (a container's or a service manager's): the slices make
// system calls the bare call would not (ppoll, rt_sigprocmask,
// process_vm_readv, madvise), which such a filter may answer by killing
// the process. Looked at once, at the first wait that would be sliced;
// and none either once the program may have installed one itself (see
// pm::os::note_seccomp_filter).
int wait_slice() noexcept {
  int slice = pm::idle_slice_ms();
  if (slice < 0 || pm::os::seccomp_filter_noted()) return -1;
  static constinit std::atomic<int> filtered{-1};
  int f = filtered.load(std::memory_order_relaxed);
  if (f < 0) {
    int saved = errno;
    f = pm::os::outside_seccomp() ? 0 : 1;
    errno = saved;
    filtered.store(f, std::memory_order_relaxed);
  }
  if (f != 0) return -1;
  // A vfork child's wait (outside a filter, so getpid is safe to call): its
  // purges would hold the parent's locks in a process that exec, _exit or
  // a signal may end at any moment, and the parent's threads would then
  // wait for them for good.
  if (pm::os::in_vfork_child()) return -1;
  return slice;
}

constexpr int64_t kNsPerMs = 1000000;
constexpr int64_t kNsPerSec = 1000000000;

int64_t now_ns(clockid_t clock) noexcept {
  timespec t{};
  clock_gettime(clock, &t);
  return static_cast<int64_t>(t.tv_sec) * kNsPerSec + t.tv_nsec;
}

timespec to_timespec(int64_t ns) noexcept {
  return timespec{static_cast<time_t>(ns / kNsPerSec), static_cast<long>(ns % kNsPerSec)};
}

// The purge after a slice, bounded when the wait has ended or nearly: a
// purge runs before the call returns, and one of a hundred megabytes takes
// tens of milliseconds, which a wait with 100 ms or more left absorbs.
// Cancellation off while a purge holds the allocator's locks: a thread
// whose cancellation is asynchronous would otherwise leave them held, and
// the next allocation of any thread would wait for good. A cancellation
// that comes meanwhile acts when it is back on.
class NoCancel {
 public:
  NoCancel() noexcept { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state_); }
  ~NoCancel() { pthread_setcancelstate(state_, nullptr); }
  NoCancel(const NoCancel&) = delete;
  NoCancel& operator=(const NoCancel&) = delete;

 private:
  int state_ = PTHREAD_CANCEL_ENABLE;
};

bool purge_after_slice(int64_t left_ns) noexcept {
  constexpr int64_t kRoomNs = 100 * kNsPerMs;
  NoCancel no_cancel;
  return pm::idle_purge(left_ns >= kRoomNs ? SIZE_MAX : pm::kIdlePurgeAfterWait);
}

// A timeout in milliseconds (negative: none), as poll and epoll take it.
class MsDeadline {
 public:
  explicit MsDeadline(int timeout) noexcept
      : forever_(timeout < 0), end_(forever_ ? 0 : now_ns(CLOCK_MONOTONIC) + timeout * kNsPerMs) {}
  // What is left, rounded up to whole milliseconds (-1: no timeout).
  [[nodiscard]] int left() const noexcept {
    if (forever_) return -1;
    int64_t ns = end_ - now_ns(CLOCK_MONOTONIC);
    return ns <= 0 ? 0 : static_cast<int>((ns + kNsPerMs - 1) / kNsPerMs);
  }
  // The next slice: at most `slice` milliseconds, at most what is left.
  [[nodiscard]] int next(int slice) const noexcept {
    int l = left();
    return l >= 0 && l < slice ? l : slice;
  }

 private:
  bool forever_;
  int64_t end_;
};

// The loop every poll-like wrapper runs: `wait(ms)` is the real call.
// Returns its result once it reports anything but a timeout, or once the
// caller's timeout is up. Every slice that times out is followed by a
// purge (which returns only what has waited a purge delay), also the last:
// an event loop that waits a short timeout over and over is idle too.
template <class Wait>
int sliced_wait(int timeout, int slice, Wait wait) noexcept {
  if (timeout >= 0 && timeout <= slice) {  // one slice: the event loop's usual call, with no clock read
    int r = wait(timeout, nullptr);
    if (r == 0) {
      // Purged with every signal held: a handler runs when the caller's
      // mask is back, after a wait that timed out, as it may without us.
      // (And cancellation back on after the mask.)
      NoCancel no_cancel;
      SignalsHeld held;
      int saved = errno;
      (void)pm::idle_purge(pm::kIdlePurgeAfterWait);
      errno = saved;
    }
    return r;
  }
  SignalsHeld held;
  MsDeadline deadline(timeout);
  for (;;) {
    int r = wait(deadline.next(slice), held.caller());
    if (r != 0) return r;
    int left = deadline.left();
    bool more = purge_after_slice(left < 0 ? INT64_MAX : left * kNsPerMs);
    if (deadline.left() == 0) return 0;
    slice = more ? pm::idle_slice_ms() : -1;
    if (slice < 0) return wait(deadline.left(), held.caller());
  }
}

// Longer waits (`sleep infinity` asks for the largest time_t) are not
// sliced: their ends would not fit in 64-bit nanoseconds. Absolute ends
// may lie further out: a CLOCK_REALTIME end counts from 1970.
constexpr time_t kMaxSlicedSeconds = 1000000000;     // relative: about 31 years
constexpr time_t kMaxSlicedEndSeconds = 4000000000;  // absolute: the year 2096

// A timespec the C library's call would take (and not answer with EINVAL).
bool valid(const timespec& t, time_t max_seconds = kMaxSlicedSeconds) noexcept {
  return t.tv_sec >= 0 && t.tv_sec <= max_seconds && t.tv_nsec >= 0 && t.tv_nsec < kNsPerSec;
}

// clock_nanosleep on a clock whose end is `end` ns: slices with absolute
// ends on the same clock, so that the total does not drift, each followed
// by a purge while there is something to purge (a short sleep repeated is
// idle time too). Returns 0 or an error number, and leaves errno as it
// found it; on EINTR of a relative sleep, `rem` gets what is left.
int sliced_sleep(clockid_t clock, int64_t end, int slice, bool relative, timespec* rem) noexcept {
  PpollFn wait = next_symbol(g_ppoll, "ppoll");
  int saved = errno;
  // The ending of an interrupted sleep: e, with what is left in `rem` for a
  // relative one.
  auto interrupted = [&](int e) {
    if (e == EINTR && relative && rem != nullptr) {
      int64_t left = end - now_ns(clock);
      timespec t = to_timespec(left > 0 ? left : 0);
      if (!copy_to_caller(rem, &t, sizeof t)) return EFAULT;
    }
    return e;
  };
  {
    SignalsHeld held;
    for (bool first = true; slice >= 0; first = false) {
      int64_t now = now_ns(clock);
      if (now >= end) {
        if (first) pthread_testcancel();  // a sleep of nothing is a cancellation point too
        errno = saved;
        return 0;
      }
      int64_t part = end - now;
      if (part > slice * kNsPerMs) part = slice * kNsPerMs;
      // ppoll counts on the monotonic clock: a wall-clock end is looked at
      // again at least once a second, so that a change of the clock counts.
      if (clock == CLOCK_REALTIME && !relative && part > kNsPerSec) part = kNsPerSec;
      timespec ts = to_timespec(part);
      if (wait(nullptr, 0, &ts, held.caller()) != 0) {
        int e = errno;
        errno = saved;
        return interrupted(e);
      }
      slice = purge_after_slice(end - now_ns(clock)) ? pm::idle_slice_ms() : -1;
    }
    // A signal that came during the last purge, held, interrupts the sleep
    // as it would have interrupted the slice: a ppoll of no time with the
    // caller's mask delivers it and answers EINTR. Without it, the mask's
    // return ran the handler and the C library's sleep went to the end.
    // Not once the end has passed: the kernel's sleep then returns 0.
    if (now_ns(clock) >= end) {
      errno = saved;
      return 0;
    }
    timespec none{};
    if (wait(nullptr, 0, &none, held.caller()) != 0) {
      int e = errno;
      errno = saved;
      return interrupted(e);
    }
  }
  // Nothing left to purge: the rest is the C library's own sleep to the
  // same end, with the caller's mask back, so that a stop, a suspend
  // (CLOCK_BOOTTIME) and a change of the wall clock count as they do
  // there. (A ppoll slice is shortened to what is left when a stop
  // interrupts it, and restarts after the continue: a stop during a slice
  // makes the sleep end up to one slice late.)
  ClockNanosleepFn real = next_symbol(g_clock_nanosleep, "clock_nanosleep");
  timespec at = to_timespec(end);
  int r = real(clock, TIMER_ABSTIME, &at, nullptr);
  errno = saved;
  return r == 0 ? 0 : interrupted(r);
}

bool sliceable_clock(clockid_t clock) noexcept {
  return clock == CLOCK_MONOTONIC || clock == CLOCK_REALTIME || clock == CLOCK_BOOTTIME;
}

// A relative sleep of `req` (valid) on CLOCK_MONOTONIC, nanosleep's clock
// on Linux: 0, or -1 with errno.
int sleep_relative(const timespec& req, timespec* rem, int slice) noexcept {
  int64_t end = now_ns(CLOCK_MONOTONIC) + req.tv_sec * kNsPerSec + req.tv_nsec;
  int r = sliced_sleep(CLOCK_MONOTONIC, end, slice, true, rem);
  if (r == 0) return 0;
  errno = r;
  return -1;
}

}  // namespace

extern "C" {

PM_EXPORT int poll(pollfd* fds, nfds_t n, int timeout) {
  PollFn real = next_symbol(g_poll, "poll");
  int slice = timeout == 0 ? -1 : wait_slice();
  if (slice < 0) return real(fds, n, timeout);
  PpollFn masked = next_symbol(g_ppoll, "ppoll");
  return sliced_wait(timeout, slice, [&](int ms, const sigset_t* mask) {
    if (mask == nullptr) return real(fds, n, ms);
    timespec ts = to_timespec(ms * kNsPerMs);
    return masked(fds, n, ms < 0 ? nullptr : &ts, mask);
  });
}

// select clears the sets of a wait that times out and, on Linux, leaves
// in the timeout what was not slept: each slice starts from the caller's
// sets, and the caller's timeout gets what is left of the whole wait.
PM_EXPORT int select(int n, fd_set* rd, fd_set* wr, fd_set* ex, timeval* tv) {
  SelectFn real = next_symbol(g_select, "select");
  bool sliceable = n >= 0 && n <= FD_SETSIZE &&
                   (tv == nullptr || (tv->tv_sec >= 0 && tv->tv_sec <= kMaxSlicedSeconds && tv->tv_usec >= 0 &&
                                      tv->tv_usec < 1000000 &&
                                      (tv->tv_sec != 0 || tv->tv_usec != 0)));
  int slice = sliceable ? wait_slice() : -1;
  // Only the words that cover n descriptors: a caller may pass sets that
  // size, not whole fd_sets.
  const size_t bytes = static_cast<size_t>((n + NFDBITS - 1) / NFDBITS) * sizeof(fd_mask);
  fd_set* sets[3] = {rd, wr, ex};
  fd_set saved[3];
  for (int i = 0; i < 3 && slice >= 0; ++i)
    if (sets[i] != nullptr && bytes != 0 && !copy_from_caller(&saved[i], sets[i], bytes))
      slice = -1;  // EFAULT from the real one
  if (slice < 0) return real(n, rd, wr, ex, tv);
  PselectFn masked = next_symbol(g_pselect, "pselect");
  SignalsHeld held;
  const bool forever = tv == nullptr;
  const int64_t end = forever ? 0 : now_ns(CLOCK_MONOTONIC) + tv->tv_sec * kNsPerSec + tv->tv_usec * 1000;
  for (bool first = true;;) {
    int64_t left = forever ? INT64_MAX : end - now_ns(CLOCK_MONOTONIC);
    if (left < 0) left = 0;
    int64_t ns = slice >= 0 && left > slice * kNsPerMs ? slice * kNsPerMs : left;
    timespec part{};
    timespec* arg = nullptr;
    if (ns != INT64_MAX) {
      part = to_timespec(ns / 1000 * 1000);  // select's microseconds
      arg = &part;
    }
    // The caller's sets again after a slice that timed out (and cleared
    // them); the first slice waits on them as they are.
    for (int i = 0; i < 3 && !first; ++i)
      if (sets[i] != nullptr && bytes != 0 && !copy_to_caller(sets[i], &saved[i], bytes)) {
        errno = EFAULT;
        return -1;
      }
    first = false;
    int r = masked(n, rd, wr, ex, arg, held.caller());
    int64_t rest = forever ? 0 : end - now_ns(CLOCK_MONOTONIC);
    bool done = r != 0 || (!forever && rest <= 0);
    if (r == 0 && slice >= 0) slice = purge_after_slice(forever ? INT64_MAX : rest) ? pm::idle_slice_ms() : -1;
    if (done) {
      if (!forever) {
        int64_t keep = r == 0 || rest < 0 ? 0 : rest;
        *tv = timeval{static_cast<time_t>(keep / kNsPerSec), static_cast<suseconds_t>(keep % kNsPerSec / 1000)};
      }
      return r;
    }
  }
}

PM_EXPORT int epoll_wait(int epfd, epoll_event* events, int max, int timeout) {
  EpollWaitFn real = next_symbol(g_epoll_wait, "epoll_wait");
  int slice = timeout == 0 ? -1 : wait_slice();
  if (slice < 0) return real(epfd, events, max, timeout);
  EpollPwaitFn masked = next_symbol(g_epoll_pwait, "epoll_pwait");
  return sliced_wait(timeout, slice, [&](int ms, const sigset_t* mask) {
    return mask == nullptr ? real(epfd, events, max, ms) : masked(epfd, events, max, ms, mask);
  });
}

// With a signal mask, never sliced: between two slices the caller's own
// mask would be in force, and a signal that the wait's mask blocks would
// then be handled in the middle of the wait instead of after it.
PM_EXPORT int epoll_pwait(int epfd, epoll_event* events, int max, int timeout, const sigset_t* mask) {
  EpollPwaitFn real = next_symbol(g_epoll_pwait, "epoll_pwait");
  int slice = timeout == 0 || mask != nullptr ? -1 : wait_slice();
  if (slice < 0) return real(epfd, events, max, timeout, mask);
  return sliced_wait(timeout, slice, [&](int ms, const sigset_t* caller) { return real(epfd, events, max, ms, caller); });
}

// The caller's timespec is read only once the sleep is to be sliced, and
// through the kernel (copy_from_caller): a bad pointer, a time the C
// library's call would refuse, and a sleep of nothing (a yield) go to that
// call, which answers them as it would without the library.
PM_EXPORT int nanosleep(const timespec* req, timespec* rem) {
  NanosleepFn real = next_symbol(g_nanosleep, "nanosleep");
  int slice = wait_slice();
  timespec t{};
  if (slice < 0 || !copy_from_caller(&t, req, sizeof t) || !valid(t) || (t.tv_sec == 0 && t.tv_nsec == 0))
    return real(req, rem);
  return sleep_relative(t, rem, slice);
}

PM_EXPORT int clock_nanosleep(clockid_t clock, int flags, const timespec* req, timespec* rem) {
  ClockNanosleepFn real = next_symbol(g_clock_nanosleep, "clock_nanosleep");
  bool absolute = (flags & TIMER_ABSTIME) != 0;
  int slice = sliceable_clock(clock) ? wait_slice() : -1;
  timespec t{};
  if (slice < 0 || !copy_from_caller(&t, req, sizeof t) || !valid(t, absolute ? kMaxSlicedEndSeconds : kMaxSlicedSeconds) ||
      (!absolute && t.tv_sec == 0 && t.tv_nsec == 0))
    return real(clock, flags, req, rem);
  int64_t ns = t.tv_sec * kNsPerSec + t.tv_nsec;
  if (absolute) return sliced_sleep(clock, ns, slice, false, rem);
  // A relative sleep is an interval, which a change of the wall clock does
  // not stretch: measured on the monotonic clock when CLOCK_REALTIME was asked.
  if (clock == CLOCK_REALTIME) clock = CLOCK_MONOTONIC;
  return sliced_sleep(clock, now_ns(clock) + ns, slice, true, rem);
}

PM_EXPORT unsigned sleep(unsigned seconds) {
  int slice = seconds == 0 || seconds > kMaxSlicedSeconds ? -1 : wait_slice();
  if (slice < 0) return next_symbol(g_sleep, "sleep")(seconds);
  timespec req{static_cast<time_t>(seconds), 0}, rem{};
  int saved = errno;
  if (sleep_relative(req, &rem, slice) == 0) {
    errno = saved;
    return 0;
  }
  // As the C library's: the whole seconds left, errno left at EINTR.
  return static_cast<unsigned>(rem.tv_sec);
}

PM_EXPORT int usleep(useconds_t usec) {
  int slice = usec == 0 ? -1 : wait_slice();
  if (slice < 0) return next_symbol(g_usleep, "usleep")(usec);
  timespec req{static_cast<time_t>(usec / 1000000), static_cast<long>(usec % 1000000) * 1000};
  return sleep_relative(req, nullptr, slice);
}

// prctl, passed through as the C library's is (a system call of its first
// argument and the next four): a program that installs a seccomp filter
// through it is seen doing so, and the waits and the purger stop making
// the system calls it might be killed for (see wait_slice).
PM_EXPORT int prctl(int option, ...) noexcept {
  va_list ap;
  va_start(ap, option);
  unsigned long a[4];
  for (auto& x : a) x = va_arg(ap, unsigned long);
  va_end(ap);
  if (option == PR_SET_SECCOMP || option == PR_SET_NO_NEW_PRIVS) pm::os::note_seccomp_filter();
  return static_cast<int>(syscall(SYS_prctl, option, a[0], a[1], a[2], a[3]));
}

}  // extern "C"
