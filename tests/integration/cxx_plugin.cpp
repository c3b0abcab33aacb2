// A C++ plugin that a C program loads with dlopen (cxx_plugin_host.c): its
// C++ runtime comes in after the preloaded library, which must still throw
// std::bad_alloc and run the new-handler when memory runs out.
#include <cstddef>
#include <new>
#include <vector>

namespace {
int g_handler_calls = 0;
constexpr std::size_t kImpossible = std::size_t{1} << 46;  // 64 TiB
}  // namespace

// 2 when a vector too large to allocate throws std::bad_alloc.
extern "C" int plugin_bad_alloc() {
  try {
    std::vector<char> v(kImpossible);
    return v.empty() ? 1 : 3;
  } catch (const std::bad_alloc&) {
    return 2;
  }
}

// 2 when the new-handler runs until it uninstalls itself, then bad_alloc.
extern "C" int plugin_new_handler() {
  g_handler_calls = 0;
  std::set_new_handler([] {
    if (++g_handler_calls >= 3) std::set_new_handler(nullptr);
  });
  int result = 1;
  try {
    void* p = ::operator new(kImpossible);
    ::operator delete(p);
  } catch (const std::bad_alloc&) {
    result = g_handler_calls == 3 ? 2 : 4;
  }
  std::set_new_handler(nullptr);
  return result;
}

// 2 when a nothrow new whose handler throws std::bad_alloc returns null.
extern "C" int plugin_nothrow_handler_throws() {
  std::set_new_handler([] { throw std::bad_alloc(); });
  void* p = ::operator new(kImpossible, std::nothrow);
  std::set_new_handler(nullptr);
  return p == nullptr ? 2 : 1;
}
