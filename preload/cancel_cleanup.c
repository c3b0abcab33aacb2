/* Runs a sliced wait with a cancellation cleanup that puts the caller's
 * signal mask back (waits.cpp). The wrappers hold every signal between
 * their slices; a thread cancelled in a slice unwinds through them, and
 * its own cleanup handlers would otherwise run with every signal held.
 * Written in C: built without exceptions, the C++ wrappers' destructors do
 * not run on the cancellation's unwinding, while C's pthread_cleanup_push
 * registers its handler with the C library, which calls it in any build. */
#include <pthread.h>
#include <signal.h>

#include "cancel_cleanup.h"

#include <unistd.h>

struct held {
  const sigset_t* caller;
  int fd;
};

static void let_go(void* arg) {
  const struct held* h = (const struct held*)arg;
  if (h->fd >= 0) close(h->fd);
  pthread_sigmask(SIG_SETMASK, h->caller, 0);
}

int pm_wait_restoring_mask(int (*body)(void*), void* context, const sigset_t* caller, int fd) {
  struct held h = {caller, fd};
  int r;
  pthread_cleanup_push(let_go, &h);
  r = body(context);
  pthread_cleanup_pop(0);
  return r;
}
