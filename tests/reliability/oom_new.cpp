// operator new under an address-space limit, run under LD_PRELOAD: new
// throws std::bad_alloc, nothrow new returns nullptr, a new-handler gets its
// chance, and everything can be allocated again once memory is freed.
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <new>
#include <vector>

namespace {

int failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "oom_new: FAILED: %s\n", what);
    ++failures;
  }
}

size_t vm_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  size_t pages = 0;
  if (f != nullptr && fscanf(f, "%zu", &pages) != 1) pages = 0;
  if (f != nullptr) fclose(f);
  return pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Allocates 1 MiB arrays with new until it throws; returns how many.
size_t fill_until_bad_alloc(std::vector<char*>& keep) {
  size_t n = 0;
  try {
    for (;;) {
      char* p = new char[1 << 20];
      memset(p, 1, 4096);
      keep.push_back(p);
      ++n;
    }
  } catch (const std::bad_alloc&) {
  }
  return n;
}

char* g_reserve = nullptr;
int g_handler_calls = 0;
void release_reserve() {
  ++g_handler_calls;
  delete[] g_reserve;
  g_reserve = nullptr;
  std::set_new_handler(nullptr);
}

}  // namespace

int main() {
  Dl_info info;
  void* m = dlsym(RTLD_DEFAULT, "malloc");
  if (m == nullptr || !dladdr(m, &info) || strstr(info.dli_fname, "poolmalloc") == nullptr) {
    fprintf(stderr, "oom_new: malloc is not poolmalloc's (run under LD_PRELOAD)\n");
    return 3;
  }
  std::vector<char*> keep;
  keep.reserve(100000);  // no reallocation while memory is exhausted
  rlimit lim{};
  getrlimit(RLIMIT_AS, &lim);
  lim.rlim_cur = vm_bytes() + (200u << 20);
  if (setrlimit(RLIMIT_AS, &lim) != 0) return 4;

  bool threw = false;
  try {
    char* huge = new char[size_t{1} << 40];
    huge[0] = 1;
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  expect(threw, "new char[1 TiB] throws bad_alloc");
  expect(new (std::nothrow) char[size_t{1} << 40] == nullptr, "nothrow new of 1 TiB returns nullptr");
  threw = false;
  try {
    std::vector<long> v(size_t{1} << 33);
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  expect(threw, "std::vector of 64 GiB throws bad_alloc");

  size_t first = fill_until_bad_alloc(keep);
  expect(first >= 50, "at least 50 MiB before the limit");
  expect(new (std::nothrow) char[1 << 20] == nullptr, "nothrow new returns nullptr when exhausted");

  // A new-handler that frees a reserve lets the failing new succeed.
  g_reserve = keep.back();
  keep.pop_back();
  std::set_new_handler(release_reserve);
  char* p = nullptr;
  try {
    p = new char[1 << 20];
  } catch (const std::bad_alloc&) {
  }
  expect(p != nullptr && g_handler_calls == 1, "new-handler ran once and new then succeeded");
  delete[] p;

  for (char* q : keep) delete[] q;
  keep.clear();
  size_t again = fill_until_bad_alloc(keep);
  expect(again * 10 >= first * 9, "the same amount can be allocated again after freeing");
  for (char* q : keep) delete[] q;
  printf("oom_new: %zu MiB, then %zu MiB after freeing; %d failures\n", first, again, failures);
  return failures == 0 ? 0 : 1;
}
