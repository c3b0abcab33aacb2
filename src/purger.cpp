#include "purger.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "heap.h"
#include "large.h"
#include "options.h"
#include "os.h"
#include "segment.h"

namespace pm {

constinit std::atomic<bool> g_purge_wanted{false};
constinit std::atomic<bool> g_idle_dirty{false};
constinit std::atomic<uint32_t> g_purger_state{kPurgerStopped};
// Bumped at every exit of a thread that had a heap, to wake a napping purger.
constinit std::atomic<uint32_t> g_thread_exits{0};

namespace {

// Set in the child of fork until a thread of the child sets up its heap:
// glibc keeps reporting a forked child of a threaded program as threaded,
// although only the forking thread exists there.
constinit std::atomic<bool> g_fork_child{false};
constinit pid_t g_fork_tid = 0;  // the thread that forked, in the child

bool nothing_to_purge() noexcept {
  // The dirty slots of reserved segments stay until a trim: they give the
  // purger nothing to do.
  return arena_stats().purgeable_bytes == 0 && large_stats().cached_bytes == 0 &&
         !g_pools_freed_remotely.load(std::memory_order_relaxed) && !arena_drop_pending();
}

// Whether the task `name` (a directory of /proc/self/task) still runs: not
// gone, not a zombie (the main thread stays one after pthread_exit until the
// whole process ends).
bool task_runs(int dir, const char* name) noexcept {
  char path[48] = {};
  size_t len = 0;
  for (; len < 24 && name[len] != '\0'; ++len) path[len] = name[len];
  const char kStat[] = "/stat";
  for (size_t i = 0; i < sizeof kStat; ++i) path[len + i] = kStat[i];
  int fd = ::openat(dir, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;  // ended meanwhile
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // "tid (comm) S ...": the state follows the last ')', as comm may hold one.
  const char* close_paren = nullptr;
  for (const char* c = buf; *c != '\0'; ++c)
    if (*c == ')') close_paren = c;
  if (close_paren == nullptr || close_paren[1] == '\0' || close_paren[2] == '\0') return true;
  char state = close_paren[2];
  return state != 'Z' && state != 'X';
}

// True when every other thread of the process has ended. A process lives as
// long as one of its threads runs: a program whose last thread leaves by
// pthread_exit would otherwise be kept alive by the purger for good. Reads
// /proc with system calls only (nothing here may allocate); stops at the
// first thread found running, usually the first entry. Without /proc it
// answers false.
bool alone() noexcept {
  int dir = ::open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  // Without /proc: when no thread that ever allocated is left. One that
  // never did may still run; ending the purger early only stops the
  // returning of memory until a slow path starts it again.
  if (dir < 0) return heaps_live() == 0;
  const pid_t me = gettid();
  bool others = false;
  alignas(8) char buf[2048];
  for (;;) {
    long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
    if (n <= 0) {
      others = others || n < 0;
      break;
    }
    for (long off = 0; off < n && !others;) {
      const auto* d = reinterpret_cast<const struct dirent64*>(buf + off);
      off += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;  // "." and ".."
      long tid = 0;
      for (const char* c = d->d_name; *c >= '0' && *c <= '9'; ++c) tid = tid * 10 + (*c - '0');
      if (tid != me && task_runs(dir, d->d_name)) others = true;
    }
    if (others) break;
  }
  ::close(dir);
  return !others;
}

// Publishes kParked, then looks: memory made purgeable before the look is
// seen by it, memory made purgeable after it sees kParked and wakes the
// thread (see purger.h). Parked, the thread still wakes once a second, to
// see whether the program's own threads have all ended.
void park() noexcept {
  g_purger_state.store(kPurgerParked, std::memory_order_seq_cst);
  if (!nothing_to_purge()) {
    uint32_t parked = kPurgerParked;  // unless a waker moved it already
    g_purger_state.compare_exchange_strong(parked, kPurgerRunning, std::memory_order_relaxed);
    return;
  }
  timespec second{1, 0};
  syscall(SYS_futex, &g_purger_state, FUTEX_WAIT_PRIVATE, kPurgerParked, &second, nullptr, 0);
  uint32_t parked = kPurgerParked;  // woken, or the second is up: running again
  g_purger_state.compare_exchange_strong(parked, kPurgerRunning, std::memory_order_relaxed);
}

// A thread reports its exit from its key destructor, before it has ended:
// look a few times over about 100 ms.
bool last_thread_gone() noexcept {
  for (long wait_ms = 1; wait_ms <= 64; wait_ms *= 2) {
    if (alone()) return true;
    timespec ts{0, wait_ms * 1000000L};
    nanosleep(&ts, nullptr);
  }
  return alone();
}

// Whether the program's last thread has ended, given the count of exits
// the purger last looked at (*seen, brought up to date): an exit reported
// since then makes it look for up to 100 ms; otherwise it looks once, and
// only when `look` (an exit reported while the purger was busy, or before
// it first read the count, is caught so).
bool ended(uint32_t* seen, bool look) noexcept {
  uint32_t exits = g_thread_exits.load(std::memory_order_acquire);
  if (exits != *seen) {
    *seen = exits;
    return last_thread_gone();
  }
  return look && alone();
}

// Sleeps `ms`, woken early by the exit of one of the program's threads
// (purger_thread_exited), and looking once a second whether the program's
// threads have all ended: true when they have. *seen is the count of exits
// the purger has looked at, kept from one call to the next, so that an exit
// reported while it purged wakes the next nap at once.
bool nap(uint64_t ms, uint32_t* seen) noexcept {
  const uint64_t end = os::now_ms() + ms;
  for (uint64_t now = os::now_ms(); now < end; now = os::now_ms()) {
    uint64_t step = end - now < 1000 ? end - now : 1000;
    timespec ts{static_cast<time_t>(step / 1000), static_cast<long>(step % 1000) * 1000000L};
    syscall(SYS_futex, &g_thread_exits, FUTEX_WAIT_PRIVATE, *seen, &ts, nullptr, 0);
    if (ended(seen, step == 1000)) return true;
  }
  return false;
}

void* purge_loop(void*) noexcept {
  // An exit reported before this read (the purger started by that very
  // exit) is found by the first look of a nap or a park.
  uint32_t seen = g_thread_exits.load(std::memory_order_acquire);
  for (;;) {
    uint64_t ms = options().purge_delay_ms / 2;
    if (ms < 10) ms = 10;
    if (nap(ms, &seen)) break;
    heap_collect(false);  // this thread has no heap: sweeps abandoned pools only
    arena_drop_freed_pools(false);  // pools that other threads freed whole, their owner idle
    heaps_drain_large(false);  // the caches of threads that made no large request since the last pass
    heaps_reap_dead();
    arena_purge(false);
    large_purge(false);
    if (alone()) break;  // the program's last thread has ended: so does this one, and the process
    if (nothing_to_purge()) {
      park();
      // Woken by a thread's exit, or the second is up.
      if (ended(&seen, true)) break;
    }
  }
  g_purger_state.store(kPurgerStopped, std::memory_order_relaxed);
  return nullptr;
}

}  // namespace

void purger_start() noexcept {
  PurgeThread mode = options().purge_thread;
  if (mode == PurgeThread::kOff) {
    g_purge_wanted.store(false, std::memory_order_relaxed);
    return;
  }
  // Not yet: the request stays, for the slow paths once the program has
  // another thread (the waits purge meanwhile, see idle_slice_ms). Taken
  // back here, what the program freed before its first thread started
  // waited for more to be freed.
  if (mode == PurgeThread::kAuto && (__libc_single_threaded || g_fork_child.load(std::memory_order_relaxed))) return;
  // A vfork child: the thread would be the child's, killed at its exec or
  // exit (maybe holding a lock), while the parent took it for running. The
  // request stays for the parent's next slow path. (Asked only when the
  // thread would be started: the question is a system call.)
  if (g_purger_state.load(std::memory_order_relaxed) == kPurgerStopped && os::in_vfork_child()) return;
  g_purge_wanted.store(false, std::memory_order_relaxed);
  uint32_t stopped = kPurgerStopped;
  if (g_purger_state.load(std::memory_order_relaxed) != kPurgerStopped ||
      !g_purger_state.compare_exchange_strong(stopped, kPurgerRunning, std::memory_order_relaxed))
    return;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  // The thread inherits the creator's signal mask: block everything so that
  // no signal meant for the program is ever delivered to it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  if (pthread_create(&t, &attr, purge_loop, nullptr) != 0)
    g_purger_state.store(kPurgerStopped, std::memory_order_relaxed);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
}

void purger_start_at_thread_exit() noexcept {
  if (g_purger_state.load(std::memory_order_relaxed) != kPurgerStopped) return;
  bool wanted = g_purge_wanted.load(std::memory_order_relaxed);
  purger_start();
  // Declined (turned off, or a forked child's own thread): a slow path may
  // still be asked to start it for what is already purgeable.
  if (wanted && !purger_running()) g_purge_wanted.store(true, std::memory_order_relaxed);
}

void purger_wake() noexcept {
  uint32_t parked = kPurgerParked;
  if (!g_purger_state.compare_exchange_strong(parked, kPurgerRunning, std::memory_order_release)) return;
  int saved = errno;
  syscall(SYS_futex, &g_purger_state, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
  errno = saved;
}

void purger_forget() noexcept {
  g_purger_state.store(kPurgerStopped, std::memory_order_relaxed);
  g_purge_wanted.store(true, std::memory_order_relaxed);  // the parent's memory to purge came along
  g_idle_dirty.store(true, std::memory_order_relaxed);
  g_fork_tid = gettid();
  g_fork_child.store(true, std::memory_order_release);
}

void purger_thread_started() noexcept {
  if (g_fork_child.load(std::memory_order_acquire) && gettid() != g_fork_tid && !os::in_vfork_child())
    g_fork_child.store(false, std::memory_order_relaxed);
}

int idle_slice_ms() noexcept {
  // Every wait slices while memory waits to be purged and the background
  // thread is not running: a single-threaded program, which gets none; a
  // forked child of a threaded program (glibc keeps it marked threaded)
  // until another thread sets up a heap; and a threaded program whose
  // frees came after its last allocation slow path, the one place the
  // thread is started (a wait may run in a signal handler, where
  // pthread_create may not), or whose thread could not be created (at the
  // address-space limit). The purges take the locks by try_lock, which
  // holds with any number of threads.
  if (!g_idle_dirty.load(std::memory_order_relaxed)) return -1;
  if (g_purger_state.load(std::memory_order_relaxed) != kPurgerStopped) return -1;
  const Options& o = options();
  if (o.purge_thread == PurgeThread::kOff) return -1;
  uint64_t ms = o.purge_delay_ms < 10 ? 10 : o.purge_delay_ms;
  return static_cast<int>(ms);  // at most an hour (options.cpp)
}

bool idle_purge(size_t budget) noexcept {
  // The flag goes down before the look, so that memory another thread
  // frees meanwhile (its note raises the flag again) is not missed, and
  // back up when something is left.
  g_idle_dirty.store(false, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  size_t dirty = 0, cached = 0;
  bool arena_done = arena_idle_purge(budget, &dirty);
  bool large_done = large_idle_purge(budget, &cached);
  if (!arena_done || !large_done || dirty != 0 || cached != 0) {
    g_idle_dirty.store(true, std::memory_order_relaxed);
    return true;
  }
  return false;
}

void purger_thread_exited() noexcept {
  // Only the exit of the last thread that had a heap can leave the purger
  // alone: a program whose threads come and go pays nothing here.
  if (heaps_live() != 0) return;
  g_thread_exits.fetch_add(1, std::memory_order_release);
  uint32_t state = g_purger_state.load(std::memory_order_relaxed);
  if (state == kPurgerParked) purger_wake();
  else if (state == kPurgerRunning) syscall(SYS_futex, &g_thread_exits, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

bool purger_running() noexcept { return g_purger_state.load(std::memory_order_relaxed) != kPurgerStopped; }
bool purger_parked() noexcept { return g_purger_state.load(std::memory_order_relaxed) == kPurgerParked; }

}  // namespace pm
