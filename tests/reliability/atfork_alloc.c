/* Fork handlers of the program that allocate, as glibc's malloc allows
 * (it takes its locks after the prepare handlers and gives them back before
 * the parent and child ones). Registered in main (`late`: after the
 * allocator's own handlers) or from the executable's preinit array
 * (`early`: before any library is initialised, so before the allocator's,
 * whose prepare handler then runs first and whose child handler last).
 * Small and large blocks in every handler, while another thread allocates
 * and frees; a hang fails by the test's timeout. Exit status 0 when every
 * child ran and exited 0. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void* kept;
static atomic_int stop;

static void churn(size_t n) {
  void* p = malloc(n);
  if (p == NULL) abort();
  memset(p, 1, n < 4096 ? n : 4096);
  free(p);
}

static void prepare(void) {
  churn(300000);
  kept = malloc(5000);
}
static void parent(void) {
  free(kept);
  churn(400000);
  churn(64);
}
static void child(void) {
  free(kept);
  churn(400000);
  churn(64);
}

static void register_handlers(void) {
  if (pthread_atfork(prepare, parent, child) != 0) abort();
}

static int early;
static void preinit(int argc, char** argv, char** envp) {
  (void)envp;
  if (argc > 1 && strcmp(argv[1], "early") == 0) {
    early = 1;
    register_handlers();
  }
}
__attribute__((section(".preinit_array"), used)) static void (*preinit_entry)(int, char**, char**) = preinit;

static void* worker(void* arg) {
  (void)arg;
  for (unsigned i = 0; !atomic_load(&stop); ++i) {
    churn(i % 3000 + 1);
    if (i % 64 == 0) churn(200000 + i % 100000);
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 2 || (strcmp(argv[1], "early") != 0 && strcmp(argv[1], "late") != 0)) {
    fprintf(stderr, "usage: atfork_alloc early|late\n");
    return 2;
  }
  if (!early) register_handlers();
  pthread_t t;
  if (pthread_create(&t, NULL, worker, NULL) != 0) return 2;
  for (int i = 0; i < 50; ++i) {
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
      churn(100);
      churn(500000);
      _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fprintf(stderr, "fork %d: child status %d\n", i, status);
      return 1;
    }
  }
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  printf("%s: 50 forks\n", argv[1]);
  return 0;
}
