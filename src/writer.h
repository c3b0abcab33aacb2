// Formatted output without stdio or malloc: a fixed buffer flushed with
// write(2), or handed to a sink (malloc_info writes to a FILE*). Reports use
// it at exit and from malloc_stats, when allocating is not an option.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pm {

class Writer {
 public:
  using Sink = void (*)(void* ctx, const char* s, size_t n);

  explicit Writer(int fd) noexcept : fd_(fd) {}
  Writer(Sink sink, void* ctx) noexcept : sink_(sink), ctx_(ctx) {}
  ~Writer() { flush(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  Writer& put(const char* s) noexcept;
  Writer& put(char c) noexcept;
  Writer& dec(uint64_t v) noexcept;
  // "0x" and lower-case hex digits.
  Writer& hex(uint64_t v) noexcept;
  // Right-aligned in `width` columns.
  Writer& dec(uint64_t v, unsigned width) noexcept;
  Writer& put(const char* s, unsigned width) noexcept;
  // "12.3 MiB"-style, for people.
  Writer& human(uint64_t bytes) noexcept;
  // "xx.x%" of part in whole.
  Writer& percent(uint64_t part, uint64_t whole) noexcept;
  // A JSON string literal, quotes included.
  Writer& json(const char* s) noexcept;
  void flush() noexcept;
  // False once a write failed.
  [[nodiscard]] bool ok() const noexcept { return ok_; }

 private:
  char buf_[2048];
  size_t len_ = 0;
  int fd_ = -1;
  Sink sink_ = nullptr;
  void* ctx_ = nullptr;
  bool ok_ = true;
};

// Opens `path` for writing (created or truncated); "%p" in it becomes the
// process id. -1 on failure.
[[nodiscard]] int open_output(const char* path) noexcept;

}  // namespace pm
