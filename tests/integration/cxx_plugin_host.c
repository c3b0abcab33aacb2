/* A C program (no C++ runtime of its own) that loads a C++ plugin with
 * dlopen, RTLD_LOCAL, and asks it to run out of memory in three ways; each
 * must end as the plugin's C++ code expects (see cxx_plugin.cpp), not in
 * an abort. Usage: cxx_plugin_host PLUGIN.so */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PLUGIN.so\n", argv[0]);
    return 2;
  }
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "cxx_plugin_host: %s\n", dlerror());
    return 2;
  }
  static const char* const names[] = {"plugin_bad_alloc", "plugin_new_handler", "plugin_nothrow_handler_throws"};
  int failures = 0;
  for (unsigned i = 0; i < sizeof names / sizeof names[0]; ++i) {
    int (*f)(void) = NULL;
    void* sym = dlsym(h, names[i]);
    memcpy(&f, &sym, sizeof f); /* ISO C has no cast from object to function pointer */
    int r = f != NULL ? f() : -1;
    printf("cxx_plugin_host: %s: %d%s\n", names[i], r, r == 2 ? "" : " (FAILED: expected 2)");
    failures += r != 2;
  }
  return failures == 0 ? 0 : 1;
}
