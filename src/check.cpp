#include "check.h"

#include <stdlib.h>

#include "writer.h"

namespace pm {

// Both format into the writer's fixed buffer and write(2) it: reporting must
// work when memory is corrupt or exhausted.
void fatal(const char* what, const void* ptr, size_t size, const char* size_name) noexcept {
  {
    Writer w(2);
    w.put("poolmalloc: ").put(what);
    if (ptr != nullptr) w.put(' ').hex(reinterpret_cast<uintptr_t>(ptr));
    if (size != 0) w.put(" (").put(size_name).put(' ').dec(size).put(" bytes)");
    w.put('\n');
  }
  abort();
}

void warn(const char* msg, const char* detail) noexcept {
  Writer w(2);
  w.put("poolmalloc: ").put(msg);
  if (detail != nullptr) w.put(": ").put(detail);
  w.put('\n');
}

}  // namespace pm
