/* Runs a sliced wait with a cleanup that closes the wait's timer descriptor
 * and puts the caller's signal mask back (waits.cpp) when the thread leaves
 * the wait other than by its return: cancelled in a slice, or by a longjmp
 * out of a signal handler that interrupted one. The wrappers hold every
 * signal between their slices, and a cancelled thread's own cleanup
 * handlers would otherwise run with every signal held.
 *
 * The cleanup is registered on the C library's compatibility chain
 * (_pthread_cleanup_push), which both ways out walk: cancellation's
 * unwinding calls its handlers as it passes their frames, and longjmp
 * calls those of the frames it jumps over and takes them off the chain.
 * pthread_cleanup_push's own buffers (C's, or C++'s destructors: the
 * library is built without exceptions) are not seen by longjmp, which
 * would leave the chain pointing into a dead frame for the next
 * cancellation or pthread_exit of the thread to jump to. */
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cancel_cleanup.h"

/* Exported by the C library since 2.34 (and 2.2.5), not declared by it. */
extern void _pthread_cleanup_push(struct _pthread_cleanup_buffer* buffer, void (*routine)(void*), void* arg);
extern void _pthread_cleanup_pop(struct _pthread_cleanup_buffer* buffer, int execute);

struct held {
  const sigset_t* caller;
  int fd;
};

/* True when every signal a thread may block is blocked: the mask the
 * wrappers hold between slices. A longjmp out of a handler comes from a
 * slice, with the caller's own mask (and whatever the handler added), which
 * stays as the longjmp leaves it, as after the C library's wait. */
static int all_held(const sigset_t* mask) {
  for (int s = 1; s < NSIG; ++s) {
    if (s == SIGKILL || s == SIGSTOP || (s >= 32 && s < SIGRTMIN)) continue;
    if (!sigismember(mask, s)) return 0;
  }
  return 1;
}

static void let_go(void* arg) {
  const struct held* h = (const struct held*)arg;
  if (h->fd >= 0) syscall(SYS_close, h->fd); /* close is a cancellation point */
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, 0, &now);
  if (all_held(&now)) pthread_sigmask(SIG_SETMASK, h->caller, 0);
}

int pm_wait_restoring_mask(int (*body)(void*), void* context, const sigset_t* caller, int fd) {
  struct held h = {caller, fd};
  struct _pthread_cleanup_buffer buffer;
  _pthread_cleanup_push(&buffer, let_go, &h);
  int r = body(context);
  _pthread_cleanup_pop(&buffer, 0);
  return r;
}
