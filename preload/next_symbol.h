// The next definition of a symbol after this library (the C library's or
// the C++ runtime's own), looked up once with dlsym(RTLD_NEXT) and cached.
#pragma once

#include <dlfcn.h>
#include <errno.h>

#include <atomic>

namespace pm_preload {

template <class Fn>
Fn next_symbol(std::atomic<Fn>& cache, const char* name) noexcept {
  Fn f = cache.load(std::memory_order_acquire);
  if (f == nullptr) {
    int saved = errno;
    f = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
    errno = saved;
    cache.store(f, std::memory_order_release);
  }
  return f;
}

}  // namespace pm_preload
