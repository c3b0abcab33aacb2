// Built against an installed poolmalloc through pkg-config by install_test.sh:
// malloc must be poolmalloc's, and the C++ API must work.
#include <cstdio>
#include <cstdlib>
#include <memory_resource>
#include <poolmalloc.hpp>
#include <vector>

int main() {
  auto before = poolmalloc::stats();
  std::vector<void*> v;
  for (int i = 0; i < 100; ++i) v.push_back(std::malloc(64));
  for (void* p : v) std::free(p);
  auto after = poolmalloc::stats();
  if (after.small_requests - before.small_requests < 100) {
    std::puts("malloc is not poolmalloc's");
    return 1;
  }
  poolmalloc::fixed_pool<> pool(32, {.max_blocks = 1});
  void* a = pool.allocate();
  if (pool.try_allocate() != nullptr) return 1;
  pool.deallocate(a);
  std::pmr::vector<int> pv(poolmalloc::resource());
  pv.assign(1000, 7);
  std::printf("consumer ok: poolmalloc %s\n", poolmalloc::version().data());
  return 0;
}
