// Standard containers on poolmalloc through std::pmr: the process-wide
// resource over the size-class pools, and a pool resource that releases all
// of its memory at once when it goes away.
#include <cstdio>
#include <map>
#include <memory_resource>
#include <poolmalloc.hpp>
#include <string>
#include <thread>
#include <vector>

int main() {
  std::pmr::vector<int> numbers(poolmalloc::resource());
  for (int i = 0; i < 10000; ++i) numbers.push_back(i);

  long sum = 0;
  {
    poolmalloc::pool_resource<poolmalloc::thread_safe> pools;
    std::pmr::map<int, std::pmr::string> names(&pools);
    for (int i = 0; i < 1000; ++i) names.emplace(i, std::pmr::string("name number " + std::to_string(i), &pools));
    // The thread-safe variant may be shared by threads.
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&pools] {
        std::pmr::vector<std::pmr::string> v(&pools);
        for (int i = 0; i < 1000; ++i) v.emplace_back("a string too long for the small-string buffer");
      });
    for (auto& t : threads) t.join();
    for (const auto& [k, v] : names) sum += k + static_cast<long>(v.size());
    auto s = pools.pool_for(sizeof(std::pair<const int, std::pmr::string>) + 32)->stats();
    std::printf("map nodes: %zu in use, %zu capacity\n", s.in_use, s.capacity);
  }
  std::printf("vector of %zu, sum %ld\n", numbers.size(), sum);
  return numbers.size() == 10000 ? 0 : 1;
}
