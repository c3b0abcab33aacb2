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

static void restore_mask(void* mask) { pthread_sigmask(SIG_SETMASK, (const sigset_t*)mask, 0); }

int pm_wait_restoring_mask(int (*body)(void*), void* context, const sigset_t* caller) {
  int r;
  pthread_cleanup_push(restore_mask, (void*)caller);
  r = body(context);
  pthread_cleanup_pop(0);
  return r;
}
