#include "check.h"

#include <stdlib.h>

#include "os.h"

namespace pm {
namespace {

// Formats into a fixed buffer: reporting must work when memory is corrupt or exhausted.
struct Line {
  char buf[256];
  size_t len = 0;
  void put(const char* s) noexcept {
    while (*s != '\0' && len < sizeof buf - 1) buf[len++] = *s++;
  }
  void hex(uintptr_t v) noexcept {
    put("0x");
    char tmp[16];
    int n = 0;
    do {
      tmp[n++] = "0123456789abcdef"[v & 15];
      v >>= 4;
    } while (v != 0);
    while (n > 0 && len < sizeof buf - 1) buf[len++] = tmp[--n];
  }
  void dec(size_t v) noexcept {
    char tmp[24];
    int n = 0;
    do {
      tmp[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0 && len < sizeof buf - 1) buf[len++] = tmp[--n];
  }
};

}  // namespace

void fatal(const char* what, const void* ptr, size_t class_size) noexcept {
  Line l;
  l.put("poolmalloc: ");
  l.put(what);
  if (ptr != nullptr) {
    l.put(" ");
    l.hex(reinterpret_cast<uintptr_t>(ptr));
  }
  if (class_size != 0) {
    l.put(" (size class ");
    l.dec(class_size);
    l.put(" bytes)");
  }
  l.put("\n");
  os::write_stderr(l.buf, l.len);
  abort();
}

void warn(const char* msg, const char* detail) noexcept {
  Line l;
  l.put("poolmalloc: ");
  l.put(msg);
  if (detail != nullptr) {
    l.put(": ");
    l.put(detail);
  }
  l.put("\n");
  os::write_stderr(l.buf, l.len);
}

}  // namespace pm
