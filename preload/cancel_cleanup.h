/* See cancel_cleanup.c. */
#pragma once
#include <signal.h>

#ifdef __cplusplus
extern "C" {
#endif

/* body(context), with the signal mask *caller restored, and fd closed when
 * it is not -1, should the thread be cancelled inside it; body's result. */
__attribute__((visibility("hidden"))) int pm_wait_restoring_mask(int (*body)(void*), void* context,
                                                                  const sigset_t* caller, int fd);

#ifdef __cplusplus
}
#endif
