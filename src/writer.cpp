#include "writer.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

namespace pm {
namespace {

unsigned format_dec(uint64_t v, char* out) noexcept {  // out holds 20 digits
  char tmp[20];
  unsigned n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (unsigned i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  return n;
}

}  // namespace

Writer& Writer::put(char c) noexcept {
  if (len_ == sizeof buf_) flush();
  buf_[len_++] = c;
  return *this;
}

Writer& Writer::put(const char* s) noexcept {
  while (*s != '\0') put(*s++);
  return *this;
}

Writer& Writer::hex(uint64_t v) noexcept {
  put("0x");
  int shift = 60;
  while (shift > 0 && (v >> shift) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) put("0123456789abcdef"[(v >> shift) & 15]);
  return *this;
}

Writer& Writer::dec(uint64_t v) noexcept {
  char d[20];
  unsigned n = format_dec(v, d);
  for (unsigned i = 0; i < n; ++i) put(d[i]);
  return *this;
}

Writer& Writer::dec(uint64_t v, unsigned width) noexcept {
  char d[20];
  unsigned n = format_dec(v, d);
  for (unsigned i = n; i < width; ++i) put(' ');
  for (unsigned i = 0; i < n; ++i) put(d[i]);
  return *this;
}

Writer& Writer::put(const char* s, unsigned width) noexcept {
  unsigned n = 0;
  while (s[n] != '\0') ++n;
  for (unsigned i = n; i < width; ++i) put(' ');
  return put(s);
}

Writer& Writer::human(uint64_t bytes) noexcept {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  unsigned u = 0;
  uint64_t scaled10 = bytes * 10;  // tenths of the unit
  uint64_t whole = bytes;
  while (whole >= 1024 && u + 1 < sizeof kUnits / sizeof kUnits[0]) {
    scaled10 = whole * 10 / 1024;
    whole /= 1024;
    ++u;
  }
  if (u == 0) return dec(bytes).put(" B");
  return dec(scaled10 / 10).put('.').dec(scaled10 % 10).put(' ').put(kUnits[u]);
}

Writer& Writer::percent(uint64_t part, uint64_t whole) noexcept {
  if (whole == 0) return put("0.0%");
  // Tenths of a percent, rounded; no overflow for counts below 2^53.
  uint64_t t = (part * 2000 / whole + 1) / 2;
  return dec(t / 10).put('.').dec(t % 10).put('%');
}

Writer& Writer::json(const char* s) noexcept {
  put('"');
  for (; *s != '\0'; ++s) {
    auto c = static_cast<unsigned char>(*s);
    if (c == '"' || c == '\\') {
      put('\\').put(static_cast<char>(c));
    } else if (c < 0x20) {
      put("\\u00").put("0123456789abcdef"[c >> 4]).put("0123456789abcdef"[c & 15]);
    } else {
      put(static_cast<char>(c));
    }
  }
  return put('"');
}

void Writer::flush() noexcept {
  if (len_ == 0) return;
  if (sink_ != nullptr) {
    sink_(ctx_, buf_, len_);
  } else {
    int saved = errno;
    const char* p = buf_;
    size_t left = len_;
    while (left > 0) {
      ssize_t w = ::write(fd_, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        ok_ = false;
        break;
      }
      p += w;
      left -= static_cast<size_t>(w);
    }
    errno = saved;
  }
  len_ = 0;
}

int open_output(const char* path) noexcept {
  // Room for any value the options take (255 bytes) with every "%p" in it
  // expanded; a path that would not fit is refused, never cut short.
  char full[4096];
  size_t n = 0;
  char pid[20];
  unsigned pid_len = format_dec(static_cast<uint64_t>(::getpid()), pid);
  for (const char* c = path; *c != '\0'; ++c) {
    const bool expand = c[0] == '%' && c[1] == 'p';
    if (n + (expand ? pid_len : 1) >= sizeof full) return -1;
    if (expand) {
      for (unsigned i = 0; i < pid_len; ++i) full[n++] = pid[i];
      ++c;
    } else {
      full[n++] = *c;
    }
  }
  full[n] = '\0';
  int saved = errno;
  int fd = ::open(full, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd >= 0 && fd <= 2) {
    // The program closed a standard descriptor: the report must not take
    // its number, or the warnings meant for stderr would land in it.
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    ::close(fd);
    fd = moved;
  }
  errno = saved;
  return fd;
}

}  // namespace pm
