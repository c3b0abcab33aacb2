/* A single-threaded program that frees memory and then waits, under
 * LD_PRELOAD. Such a program has no purger thread: the library's wrappers
 * of the C library's waits must give the memory back while it waits, and
 * behave as the C library's functions do (result, errno, remaining time,
 * how long they wait).
 *
 *   idle_waits returned   every wait returns the freed memory (default settings)
 *   idle_waits kept       none does (POOLMALLOC_PURGE_THREAD=0: the control)
 *   idle_waits stop       a stop and continue does not stretch a sleep
 *   idle_waits seccomp    a program's own seccomp filter sees no system call
 *                         but the C library's
 *   idle_waits forked     the child of a program that has had a thread (which
 *                         glibc still marks threaded) waits: returned too
 *   idle_waits thread_after  memory freed before the program's first thread
 *                         starts is returned while it waits (by the
 *                         background thread, as the program is threaded)
 *   idle_waits threaded_no_purger  a threaded program whose background thread
 *                         has not started: its waits return the memory
 *   idle_waits cancelled  threads cancelled in sliced waits leave no
 *                         descriptor behind
 *   idle_waits jumped     a thread that jumps out of a sliced wait by
 *                         siglongjmp can be cancelled after, and leaves no
 *                         descriptor behind
 *   idle_waits fork_while_asleep  a child forked while another thread
 *                         sleeps sliced gets none of the slices' descriptors
 *
 * Exits 0 when every check holds; prints each failure. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int g_failures = 0;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fputc('\n', stderr);                                 \
      ++g_failures;                                        \
    }                                                      \
  } while (0)

static long rss_kib(void) {
  FILE* f = fopen("/proc/self/statm", "r");
  long size = 0, resident = 0;
  if (f == NULL || fscanf(f, "%ld %ld", &size, &resident) != 2) resident = 0;
  if (f != NULL) fclose(f);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* About 8 MiB of small blocks and a 4 MiB large block, written and freed:
 * free pool slots and a cached mapping, both still resident. volatile
 * pointers keep the compiler from folding the pairs away. */
static void make_freed_memory(void) {
  enum { kBlocks = 100000 };
  static void* volatile blocks[kBlocks];
  for (int i = 0; i < kBlocks; ++i) {
    blocks[i] = malloc(80);
    memset(blocks[i], 1, 80);
  }
  for (int i = 0; i < kBlocks; ++i) free(blocks[i]);
  void* volatile big = malloc(4 << 20);
  memset(big, 2, 4 << 20);
  free(big);
}

static volatile sig_atomic_t g_alarms = 0;
static volatile double g_alarm_at = 0; /* when the handler last ran */
static void on_alarm(int sig) {
  (void)sig;
  ++g_alarms;
  g_alarm_at = now_s();
}

/* SIGALRM once, after `ms`. */
static void alarm_after_ms(long ms) {
  struct itimerval it;
  memset(&it, 0, sizeof it);
  it.it_value.tv_sec = ms / 1000;
  it.it_value.tv_usec = (ms % 1000) * 1000;
  setitimer(ITIMER_REAL, &it, NULL);
}

/* The memory freed before a wait of 1.5 s is back afterwards (or, in the
 * control, still resident). */
static void check_returned(const char* name, int expect_returned, int (*wait)(void)) {
  make_freed_memory();
  long before = rss_kib();
  double t0 = now_s();
  int r = wait();
  double waited = now_s() - t0;
  long after = rss_kib();
  CHECK(r == 0, "%s returned %d", name, r);
  CHECK(waited >= 1.49 && waited < 1.9, "%s waited %.3f s for 1.5 s", name, waited);
  if (expect_returned)
    CHECK(after < before - 10 * 1024, "%s: resident %ld kB before the wait, %ld after", name, before, after);
  else
    CHECK(after > before - 2 * 1024, "control %s: resident %ld kB before the wait, %ld after", name, before, after);
  printf("%-16s waited %.3f s, resident %ld -> %ld kB\n", name, waited, before, after);
}

static int wait_poll(void) { return poll(NULL, 0, 1500); }
static int wait_select(void) {
  struct timeval tv = {1, 500000};
  int r = select(0, NULL, NULL, NULL, &tv);
  CHECK(tv.tv_sec == 0 && tv.tv_usec == 0, "select's timeout after it ran out: %ld.%06ld", (long)tv.tv_sec,
        (long)tv.tv_usec);
  return r;
}
static int wait_epoll(void) {
  int ep = epoll_create1(0);
  struct epoll_event ev;
  int r = epoll_wait(ep, &ev, 1, 1500);
  close(ep);
  return r;
}
static int wait_nanosleep(void) {
  struct timespec ts = {1, 500000000};
  return nanosleep(&ts, NULL);
}
/* An absolute clock_nanosleep ending 1.5 s from now on `clock`. */
static int sleep_until_in_1500ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  ts.tv_sec += 1;
  ts.tv_nsec += 500000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1000000000;
  }
  return clock_nanosleep(clock, TIMER_ABSTIME, &ts, NULL);
}
static int wait_clock_abs(void) { return sleep_until_in_1500ms(CLOCK_MONOTONIC); }
static int wait_usleep(void) { return usleep(1500000); }
/* An absolute end on the wall clock, seconds since 1970. */
static int wait_clock_realtime(void) { return sleep_until_in_1500ms(CLOCK_REALTIME); }
/* An event loop that waits a short timeout over and over. */
static int wait_poll_loop(void) {
  int r = 0;
  for (int i = 0; i < 30 && r == 0; ++i) r = poll(NULL, 0, 50);
  return r;
}
static int wait_usleep_loop(void) {
  int r = 0;
  for (int i = 0; i < 30 && r == 0; ++i) r = usleep(50000);
  return r;
}

/* What the caller sees is what the C library gives: events end the wait
 * at once, signals interrupt it with the time that was left. */
static void check_semantics(void) {
  int fds[2];
  CHECK(pipe(fds) == 0, "pipe");

  /* Data ready: poll and epoll_wait return it at once. */
  make_freed_memory();
  CHECK(write(fds[1], "x", 1) == 1, "write");
  struct pollfd p = {fds[0], POLLIN, 0};
  double t0 = now_s();
  int r = poll(&p, 1, 5000);
  CHECK(r == 1 && (p.revents & POLLIN) != 0 && now_s() - t0 < 0.05, "poll on a ready pipe: %d, %.3f s", r,
        now_s() - t0);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[0]};
  CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fds[0], &ev) == 0, "epoll_ctl");
  struct epoll_event got;
  r = epoll_wait(ep, &got, 1, 5000);
  CHECK(r == 1 && got.data.fd == fds[0], "epoll_wait on a ready pipe: %d", r);
  fd_set rd;
  FD_ZERO(&rd);
  FD_SET(fds[0], &rd);
  struct timeval tv = {5, 0};
  r = select(fds[0] + 1, &rd, NULL, NULL, &tv);
  CHECK(r == 1 && FD_ISSET(fds[0], &rd) && tv.tv_sec >= 4, "select on a ready pipe: %d, %ld s left", r,
        (long)tv.tv_sec);
  char c;
  CHECK(read(fds[0], &c, 1) == 1, "read");

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);

  /* A signal 350 ms into a 2 s nanosleep: -1, EINTR, about 1.65 s left. */
  make_freed_memory();
  alarm_after_ms(350);
  struct timespec req = {2, 0}, rem = {0, 0};
  errno = 0;
  r = nanosleep(&req, &rem);
  double left = (double)rem.tv_sec + (double)rem.tv_nsec / 1e9;
  CHECK(r == -1 && errno == EINTR, "interrupted nanosleep: %d, errno %d", r, errno);
  CHECK(left > 1.5 && left < 1.7, "interrupted nanosleep left %.3f s, not about 1.65", left);

  /* The same on poll: -1, EINTR, after about 350 ms. */
  make_freed_memory();
  alarm_after_ms(350);
  t0 = now_s();
  errno = 0;
  r = poll(NULL, 0, 2000);
  double waited = now_s() - t0;
  CHECK(r == -1 && errno == EINTR && waited > 0.3 && waited < 0.5, "interrupted poll: %d, errno %d, %.3f s", r,
        errno, waited);

  /* select: -1, EINTR, the set as given, about 1.65 s left in the timeout. */
  make_freed_memory();
  alarm_after_ms(350);
  FD_ZERO(&rd);
  FD_SET(fds[0], &rd);
  tv.tv_sec = 2;
  tv.tv_usec = 0;
  errno = 0;
  r = select(fds[0] + 1, &rd, NULL, NULL, &tv);
  left = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
  CHECK(r == -1 && errno == EINTR && FD_ISSET(fds[0], &rd) && left > 1.5 && left < 1.7,
        "interrupted select: %d, errno %d, %.3f s left", r, errno, left);

  /* select with a set only as large as its descriptors need, right below
   * an inaccessible page: the wrapper touches no byte beyond it. */
  make_freed_memory();
  char* pages = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(pages != MAP_FAILED && mprotect(pages + 4096, 4096, PROT_NONE) == 0, "guard page");
  fd_mask* word = (fd_mask*)(pages + 4096 - sizeof(fd_mask));
  CHECK(fds[0] < (int)NFDBITS, "pipe descriptor %d fits one word", fds[0]);
  *word = (fd_mask)1 << fds[0];
  tv.tv_sec = 0;
  tv.tv_usec = 250000;
  r = select(fds[0] + 1, (fd_set*)word, NULL, NULL, &tv);
  CHECK(r == 0 && *word == 0, "select on a one-word set: %d", r);
  munmap(pages, 8192);

  /* sleep reports an interruption as glibc 2.36's does: the whole seconds
   * left, the fraction dropped, and errno EINTR. */
  make_freed_memory();
  alarm_after_ms(350);
  errno = 1234;
  unsigned left_s = sleep(3);
  CHECK(left_s == 2 && errno == EINTR, "interrupted sleep(3): %u left, errno %d", left_s, errno);

  /* A relative clock_nanosleep interrupted gives what is left; it sets
   * no errno and returns the error number: errno stays as it was. */
  make_freed_memory();
  alarm_after_ms(350);
  req.tv_sec = 2;
  req.tv_nsec = 0;
  errno = 4321;
  r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
  left = (double)rem.tv_sec + (double)rem.tv_nsec / 1e9;
  CHECK(r == EINTR && left > 1.5 && left < 1.7, "interrupted clock_nanosleep: %d, %.3f s left", r, left);
  CHECK(errno == 4321, "interrupted clock_nanosleep changed errno to %d", errno);

  /* Arguments in memory the kernel cannot read or write: EFAULT, as from
   * the C library's calls, not a SIGSEGV in the wrapper. */
  char* bad = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(bad != MAP_FAILED && mprotect(bad, 4096, PROT_NONE) == 0 && mprotect(bad + 4096, 4096, PROT_READ) == 0,
        "pages for bad arguments");
  make_freed_memory();
  errno = 0;
  r = nanosleep((const struct timespec*)bad, NULL);
  CHECK(r == -1 && errno == EFAULT, "nanosleep of an unreadable time: %d, errno %d", r, errno);
  make_freed_memory();
  r = clock_nanosleep(CLOCK_MONOTONIC, 0, (const struct timespec*)bad, NULL);
  CHECK(r == EFAULT, "clock_nanosleep of an unreadable time: %d", r);
  make_freed_memory();
  alarm_after_ms(100);
  req.tv_sec = 1;
  req.tv_nsec = 0;
  errno = 0;
  r = nanosleep(&req, (struct timespec*)(bad + 4096));
  CHECK(r == -1 && errno == EFAULT, "interrupted nanosleep with a read-only rem: %d, errno %d", r, errno);
  make_freed_memory();
  tv.tv_sec = 0;
  tv.tv_usec = 100000;
  errno = 0;
  r = select(fds[0] + 1, (fd_set*)bad, NULL, NULL, &tv);
  CHECK(r == -1 && errno == EFAULT, "select on an unreadable set: %d, errno %d", r, errno);
  munmap(bad, 8192);

  /* A sleep of nothing is the C library's call: it still enters the kernel
   * (a program may use it to yield), which takes some microseconds. */
  make_freed_memory();
  req.tv_sec = 0;
  req.tv_nsec = 0;
  t0 = now_s();
  for (int i = 0; i < 200; ++i) CHECK(nanosleep(&req, NULL) == 0, "nanosleep of nothing");
  CHECK(now_s() - t0 > 200 * 1e-6, "200 sleeps of nothing took %.6f s: no system call", now_s() - t0);

  /* epoll_pwait with a mask that blocks SIGALRM: the signal is handled
   * when the call ends, as without the library, not between two slices. */
  make_freed_memory();
  int empty = epoll_create1(0);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGALRM);
  alarm_after_ms(100);
  t0 = now_s();
  r = epoll_pwait(empty, &got, 1, 400, &block);
  CHECK(g_alarm_at - t0 > 0.39, "SIGALRM, blocked during epoll_pwait, handled %.3f s into a 0.4 s wait (result %d)",
        g_alarm_at - t0, r);
  close(empty);

  /* A sleep "for ever" (the largest time_t, as `sleep infinity` asks)
   * still sleeps: interrupted after 200 ms, with almost all of it left. */
  make_freed_memory();
  alarm_after_ms(200);
  req.tv_sec = (time_t)(~(unsigned long long)0 >> 1);
  req.tv_nsec = 0;
  t0 = now_s();
  errno = 0;
  r = nanosleep(&req, &rem);
  CHECK(r == -1 && errno == EINTR && now_s() - t0 > 0.15 && rem.tv_sec > 1000000000,
        "nanosleep for the largest time_t: %d, errno %d, after %.3f s", r, errno, now_s() - t0);

  /* Bad arguments reach the C library as they are. */
  req.tv_sec = 0;
  req.tv_nsec = 2000000000L;
  errno = 0;
  CHECK(nanosleep(&req, NULL) == -1 && errno == EINVAL, "nanosleep with tv_nsec out of range: errno %d", errno);
  CHECK(clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL) == EINVAL, "clock_nanosleep with tv_nsec out of range");
  close(ep);
  close(fds[0]);
  close(fds[1]);
  CHECK(g_alarms == 8, "%d alarms delivered, not 8", (int)g_alarms);
}

/* A signal whose handler runs while the wait is in progress ends it with
 * EINTR, also when it comes between two slices, during a purge (run with
 * POOLMALLOC_PURGE_DELAY=50: slices of 50 ms, each followed by a purge of
 * some 45 MiB of small blocks). Before the wrappers held signals across
 * the purges, about one trial in ten returned 0 after the full 300 ms
 * with the handler run. */
static void check_signals_between_slices(void) {
  enum { kBlocks = 700000 };
  static void* blocks[kBlocks];
  const char* names[3] = {"nanosleep", "poll", "select"};
  for (int f = 0; f < 3; ++f) {
    for (int k = 0; k < 20; ++k) {
      for (int i = 0; i < kBlocks; ++i) {
        blocks[i] = malloc(64);
        memset(blocks[i], 1, 64);
      }
      for (int i = 0; i < kBlocks; ++i) free(blocks[i]);
      g_alarms = 0;
      alarm_after_ms(40 + 2 * k);  /* around the first slice's end */
      errno = 0;
      int r;
      if (f == 0) {
        struct timespec ts = {0, 300000000};
        r = nanosleep(&ts, NULL);
      } else if (f == 1) {
        r = poll(NULL, 0, 300);
      } else {
        struct timeval tv = {0, 300000};
        r = select(0, NULL, NULL, NULL, &tv);
      }
      CHECK(g_alarms == 1, "%s trial %d: the alarm did not come", names[f], k);
      CHECK(r == -1 && errno == EINTR, "%s trial %d: the handler ran, the call returned %d (errno %d)", names[f], k,
            r, errno);
    }
  }
}

/* A stop and continue during a sleep does not stretch it: the C library's
 * sleeps end at their deadline whatever the stop, so do the wrappers'
 * slices (run with POOLMALLOC_PURGE_DELAY=50). A child stops this process
 * 100 ms into a 600 ms sleep and continues it 200 ms later; a slice that
 * waited on ppoll's timeout was restarted with what it had left at the
 * stop, 200 ms late. */
static void check_stop_and_continue(void) {
  const char* names[3] = {"nanosleep", "usleep", "clock_nanosleep absolute"};
  for (int f = 0; f < 3; ++f) {
    make_freed_memory();
    pid_t me = getpid();
    pid_t child = fork();
    if (child == 0) {
      struct timespec a = {0, 100000000}, b = {0, 200000000};
      syscall(SYS_nanosleep, &a, NULL);
      kill(me, SIGSTOP);
      syscall(SYS_nanosleep, &b, NULL);
      kill(me, SIGCONT);
      _exit(0);
    }
    double t0 = now_s();
    int r;
    if (f == 0) {
      struct timespec ts = {0, 600000000};
      r = nanosleep(&ts, NULL);
    } else if (f == 1) {
      r = usleep(600000);
    } else {
      struct timespec end;
      clock_gettime(CLOCK_MONOTONIC, &end);
      end.tv_nsec += 600000000;
      if (end.tv_nsec >= 1000000000) {
        end.tv_nsec -= 1000000000;
        end.tv_sec += 1;
      }
      r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &end, NULL);
    }
    double took = now_s() - t0;
    waitpid(child, NULL, 0);
    CHECK(r == 0 && took > 0.59 && took < 0.7, "%s of 600 ms with a stop of 200 ms: %d, %.3f s", names[f], r, took);
  }
}

/* A program that installs a seccomp filter of its own (one that kills the
 * process at a system call it does not allow) and then sleeps: the
 * wrappers make only the C library's own call. The filter allows what the
 * sleeps and exit need and nothing of what the slices add (the look at
 * /proc, ppoll, rt_sigprocmask, timerfd_*, madvise). */
/* late: after a first sliced wait, and through the seccomp system call
 * (as libseccomp installs it) rather than prctl. */
static void check_own_seccomp_filter(int late) {
  make_freed_memory();
  if (late) CHECK(usleep(100000) == 0, "usleep before the filter");
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clock_nanosleep, 5, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_nanosleep, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_exit_group, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_poll, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof f / sizeof f[0], f};
  CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
  if (late) {
    make_freed_memory();
    CHECK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0, "seccomp filter");
  } else {
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0, "seccomp filter");
  }
  struct timespec ts = {0, 100000000};
  CHECK(nanosleep(&ts, NULL) == 0, "nanosleep under the program's filter");
  CHECK(usleep(100000) == 0, "usleep under the program's filter");
}

static void* do_nothing(void* arg) { return arg; }

static void* wait_for_pipe(void* arg) {
  char c;
  (void)!read(*(int*)arg, &c, 1);
  return NULL;
}

/* A thread started and joined, then fork: the child waits. */
static int check_forked_child(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, do_nothing, NULL) != 0 || pthread_join(t, NULL) != 0) return 2;
  pid_t pid = fork();
  if (pid < 0) return 2;
  if (pid == 0) {
    check_returned("child: poll", 1, wait_poll);
    check_returned("child: nanosleep", 1, wait_nanosleep);
    check_returned("child: epoll_wait", 1, wait_epoll);
    fflush(stdout);
    _exit(g_failures == 0 ? 0 : 1);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return 2;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* Memory freed (and one more request made, a slow path) while the program
 * is single-threaded; then a thread starts and stays, and the program
 * waits: the wait is the C library's, and the background thread returns
 * the memory. */
static int check_thread_after_free(void) {
  make_freed_memory();
  void* volatile other = malloc(3000);
  free(other);
  int fds[2];
  if (pipe(fds) != 0) return 2;
  pthread_t t;
  if (pthread_create(&t, NULL, wait_for_pipe, &fds[0]) != 0) return 2;
  void* volatile first = malloc(5000); /* the first request once threaded */
  free(first);
  long before = rss_kib();
  struct timespec ts = {2, 500000000};
  nanosleep(&ts, NULL);
  long after = rss_kib();
  CHECK(after < before - 10 * 1024, "thread after the frees: resident %ld kB before the wait, %ld after", before,
        after);
  printf("thread after the frees: resident %ld -> %ld kB\n", before, after);
  (void)!write(fds[1], "x", 1);
  pthread_join(t, NULL);
  return g_failures == 0 ? 0 : 1;
}

/* A field of /proc/self/status, read without allocating (stdio would: an
 * allocation after the frees could start the background thread). */
static long status_field(const char* name) {
  static char buf[8192];
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* at = strstr(buf, name);
  return at == NULL ? -1 : strtol(at + strlen(name), NULL, 10);
}

/* A threaded program whose frees made memory purgeable after its last
 * allocation slow path: nothing has started the background thread, and
 * the program waits. The waits purge while that thread is not running. */
static int check_threaded_without_purger(void) {
  int fds[2];
  if (pipe(fds) != 0) return 2;
  pthread_t t;
  if (pthread_create(&t, NULL, wait_for_pipe, &fds[0]) != 0) return 2;
  enum { kBig = 40 };
  static void* volatile big[kBig];
  for (int i = 0; i < kBig; ++i) {
    big[i] = malloc(1 << 20);
    memset(big[i], 3, 1 << 20);
  }
  for (int i = 0; i < kBig; ++i) free(big[i]);
  /* Two tasks: this one and the program's; a third would be the
   * background thread, and the case this checks would not arise. */
  long threads = status_field("Threads:");
  long before = status_field("VmRSS:");
  struct timespec ts = {2, 500000000};
  nanosleep(&ts, NULL);
  long after = status_field("VmRSS:");
  CHECK(threads == 2, "the background thread was running before the wait (%ld threads)", threads);
  CHECK(after < before - 20 * 1024, "threaded, no background thread: resident %ld kB before the wait, %ld after",
        before, after);
  printf("threaded, no background thread: resident %ld -> %ld kB\n", before, after);
  (void)!write(fds[1], "x", 1);
  pthread_join(t, NULL);
  return g_failures == 0 ? 0 : 1;
}

static int open_descriptors(void) {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) n += fcntl(fd, F_GETFD) >= 0;
  return n;
}

static atomic_int g_cleanups_run;

static void note_cleanup(void* arg) {
  (void)arg;
  atomic_fetch_add(&g_cleanups_run, 1);
}

/* Cancelled while it waits in read, where cancellation is off: it acts at
 * the first cancellation point after, inside the sliced sleep, as it would
 * when it came between two slices. */
static void* sleep_forever(void* arg) {
  char c;
  pthread_cleanup_push(note_cleanup, NULL);
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
  (void)!read(*(int*)arg, &c, 1);
  pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
  for (;;) {
    struct timespec ts = {5, 0};
    nanosleep(&ts, NULL);
  }
  pthread_cleanup_pop(0);
  return NULL;
}

/* Starts n threads running fn(arg) in a program whose waits slice: memory
 * to purge, freed after the last allocation slow path, and no background
 * thread. Cancellation loads libgcc_s at its first use: loaded first,
 * before there is memory to purge, its allocations start no background
 * thread. The first sliced wait looks once for a seccomp filter, which
 * opens a file (a cancellation point): done here, the threads' waits slice
 * at once. Sets *before to the descriptors open before the waits; returns
 * the process's threads, or -1. */
static long start_sliced_threads(int n, pthread_t* t, void* (*fn)(void*), void* arg, int* before) {
  if (dlopen("libgcc_s.so.1", RTLD_NOW) == NULL) return -1;
  char* p = malloc(8 << 20);
  memset(p, 1, 8 << 20);
  for (int i = 0; i < n; ++i)
    if (pthread_create(&t[i], NULL, fn, arg) != 0) return -1;
  struct timespec settle = {0, 20 * 1000 * 1000};
  syscall(SYS_nanosleep, &settle, NULL);
  *before = open_descriptors();
  free(p);
  struct timespec brief = {0, 1000 * 1000};
  nanosleep(&brief, NULL);
  return status_field("Threads:");
}

/* Threads cancelled while their waits slice (a thread pool shut down
 * before the background thread started): their cleanup handlers run, and
 * nothing the slices hold stays behind, no descriptor in particular. */
static int check_cancelled_in_a_sliced_wait(void) {
  enum { kThreads = 3 };
  static int fds[2];
  if (pipe(fds) != 0) return 2;
  pthread_t t[kThreads];
  int before = 0;
  long threads = start_sliced_threads(kThreads, t, sleep_forever, &fds[0], &before);
  if (threads < 0) return 2;
  for (int i = 0; i < kThreads; ++i) pthread_cancel(t[i]);
  (void)!write(fds[1], "xxx", kThreads);
  for (int i = 0; i < kThreads; ++i) pthread_join(t[i], NULL);
  CHECK(threads == 1 + kThreads, "the background thread was running before the waits (%ld threads)", threads);
  int after = open_descriptors();
  CHECK(after == before, "threads cancelled in sliced waits: %d descriptors open before, %d after", before, after);
  printf("cancelled in sliced waits: %d descriptors open before, %d after\n", before, after);
  int run = atomic_load(&g_cleanups_run);
  CHECK(run == kThreads, "cleanup handlers of cancelled threads: %d ran of %d", run, kThreads);
  printf("cancelled in sliced waits: %d cleanup handlers ran\n", run);
  return g_failures == 0 ? 0 : 1;
}

/* A thread that leaves a sliced sleep by siglongjmp from a signal handler
 * (a timeout idiom) and is cancelled later: the slices' cleanup went with
 * the jump (it was left pointing into the dead frame, and the
 * cancellation jumped there), and so did the slices' timer descriptor. */
static sigjmp_buf g_jump;
static atomic_int g_jumped;
static int g_go[2], g_hold[2];

static void jump_out(int sig) {
  (void)sig;
  siglongjmp(g_jump, 1);
}

static void* sleep_then_jump(void* arg) {
  (void)arg;
  char c;
  (void)!read(g_go[0], &c, 1);
  if (sigsetjmp(g_jump, 1) == 0) {
    struct timespec ts = {5, 0};
    nanosleep(&ts, NULL);
  }
  atomic_store(&g_jumped, 1);
  char pad[16384]; /* over the stack where the sleep's frames were */
  memset(pad, 0x5a, sizeof pad);
  __asm__ volatile("" : : "r"(pad) : "memory");
  (void)!read(g_hold[0], &c, 1); /* cancelled here */
  return NULL;
}

static int check_jumped_out_of_a_sliced_wait(void) {
  if (pipe(g_go) != 0 || pipe(g_hold) != 0) return 2;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = jump_out;
  if (sigaction(SIGUSR1, &sa, NULL) != 0) return 2;
  pthread_t t;
  int before = 0;
  long threads = start_sliced_threads(1, &t, sleep_then_jump, NULL, &before);
  if (threads < 0) return 2;
  struct timespec settle = {0, 20 * 1000 * 1000};
  (void)!write(g_go[1], "g", 1);
  syscall(SYS_nanosleep, &settle, NULL);
  pthread_kill(t, SIGUSR1);
  for (int i = 0; i < 100 && !atomic_load(&g_jumped); ++i) syscall(SYS_nanosleep, &settle, NULL);
  syscall(SYS_nanosleep, &settle, NULL);
  int after = open_descriptors();
  pthread_cancel(t);
  void* result = NULL;
  pthread_join(t, &result);
  CHECK(threads == 2, "the background thread was running before the wait (%ld threads)", threads);
  CHECK(atomic_load(&g_jumped), "the sleeping thread did not jump out of its sleep");
  CHECK(result == PTHREAD_CANCELED, "the thread that jumped out of its sleep was not cancelled");
  CHECK(after == before, "jumped out of a sliced wait: %d descriptors open before, %d after", before, after);
  printf("jumped out of a sliced wait, then cancelled: %d descriptors open before, %d after\n", before, after);
  return g_failures == 0 ? 0 : 1;
}

/* A fork by one thread while another sleeps sliced: the child gets none of
 * the slices' descriptors (a timer descriptor of the sleeping thread's
 * would stay open in it, one more at every fork). */
static void* sleep_after_go(void* arg) {
  char c;
  (void)!read(*(int*)arg, &c, 1);
  struct timespec ts = {2, 0};
  nanosleep(&ts, NULL);
  return NULL;
}

static int timer_descriptors(void) {
  int n = 0;
  char path[64], target[128];
  for (int fd = 0; fd < 1024; ++fd) {
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(path, target, sizeof target - 1);
    if (len <= 0) continue;
    target[len] = '\0';
    n += strstr(target, "timerfd") != NULL;
  }
  return n;
}

static int check_fork_while_a_thread_sleeps(void) {
  static int go[2];
  if (pipe(go) != 0) return 2;
  pthread_t t;
  int before = 0;
  long threads = start_sliced_threads(1, &t, sleep_after_go, &go[0], &before);
  if (threads < 0) return 2;
  (void)!write(go[1], "g", 1);
  struct timespec settle = {0, 50 * 1000 * 1000};
  syscall(SYS_nanosleep, &settle, NULL);
  pid_t child = fork();
  if (child == 0) _exit(timer_descriptors() == 0 ? 0 : 1);
  int status = 0;
  waitpid(child, &status, 0);
  pthread_join(t, NULL);
  CHECK(threads == 2, "the background thread was running before the wait (%ld threads)", threads);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child forked while a thread slept sliced has its timer");
  printf("forked while a thread slept sliced: the child has %s timer descriptor\n",
         WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "no" : "a");
  return g_failures == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "stop") == 0) {
    check_stop_and_continue();
    if (g_failures != 0) fprintf(stderr, "%d check(s) failed\n", g_failures);
    return g_failures == 0 ? 0 : 1;
  }
  if (argc >= 2 && (strcmp(argv[1], "seccomp") == 0 || strcmp(argv[1], "seccomp_late") == 0)) {
    check_own_seccomp_filter(strcmp(argv[1], "seccomp_late") == 0);
    if (g_failures != 0) fprintf(stderr, "%d check(s) failed\n", g_failures);
    _exit(g_failures == 0 ? 0 : 1);  /* exit_group alone: no stdio flush to make */
  }
  if (argc >= 2 && strcmp(argv[1], "forked") == 0) return check_forked_child();
  if (argc >= 2 && strcmp(argv[1], "thread_after") == 0) return check_thread_after_free();
  if (argc >= 2 && strcmp(argv[1], "threaded_no_purger") == 0) return check_threaded_without_purger();
  if (argc >= 2 && strcmp(argv[1], "cancelled") == 0) return check_cancelled_in_a_sliced_wait();
  if (argc >= 2 && strcmp(argv[1], "jumped") == 0) return check_jumped_out_of_a_sliced_wait();
  if (argc >= 2 && strcmp(argv[1], "fork_while_asleep") == 0) return check_fork_while_a_thread_sleeps();
  if (argc >= 2 && strcmp(argv[1], "signals") == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    check_signals_between_slices();
    if (g_failures != 0) fprintf(stderr, "%d check(s) failed\n", g_failures);
    return g_failures == 0 ? 0 : 1;
  }
  int expect_returned = argc < 2 || strcmp(argv[1], "kept") != 0;
  check_returned("poll", expect_returned, wait_poll);
  check_returned("select", expect_returned, wait_select);
  check_returned("epoll_wait", expect_returned, wait_epoll);
  check_returned("nanosleep", expect_returned, wait_nanosleep);
  check_returned("clock_nanosleep", expect_returned, wait_clock_abs);
  check_returned("usleep", expect_returned, wait_usleep);
  check_returned("clock_nanosleep realtime", expect_returned, wait_clock_realtime);
  check_returned("poll 30 x 50 ms", expect_returned, wait_poll_loop);
  check_returned("usleep 30 x 50 ms", expect_returned, wait_usleep_loop);
  if (expect_returned) check_semantics();
  if (g_failures != 0) fprintf(stderr, "%d check(s) failed\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}
