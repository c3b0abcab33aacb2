// Helpers shared by the workload programs: options, a cheap RNG, stamped
// blocks that detect corruption, and the final `result:` line that
// scripts/compare reads.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

[[noreturn]] inline void fail(const char* what, const void* block = nullptr) {
  std::fprintf(stderr, "error: %s (block %p)\n", what, block);
  std::exit(1);
}

// Options are `--name value` or `--name=value`. `--quick` switches every
// default to its smoke-run value. Unknown options are an error so a typo
// never silently runs the default size.
class Args {
 public:
  Args(int argc, char** argv) : argv_(argv + 1, argv + argc), used_(argv_.size()) {
    quick_ = flag("quick");
  }

  [[nodiscard]] bool quick() const { return quick_; }

  bool flag(std::string_view name) {
    known_ += " --" + std::string(name);
    for (std::size_t i = 0; i < argv_.size(); ++i)
      if (argv_[i] == "--" + std::string(name)) return used_[i] = true;
    return false;
  }

  long num(std::string_view name, long normal, long small) {
    known_ += " --" + std::string(name);
    const std::string key = "--" + std::string(name);
    for (std::size_t i = 0; i < argv_.size(); ++i) {
      const std::string& a = argv_[i];
      if (a.starts_with(key + "=")) return parse(i, a.substr(key.size() + 1));
      if (a == key && i + 1 < argv_.size()) {
        used_[i + 1] = true;
        return parse(i, argv_[i + 1]);
      }
    }
    return quick_ ? small : normal;
  }

  // Call after the last num()/flag(): rejects anything not consumed.
  void done() const {
    for (std::size_t i = 0; i < argv_.size(); ++i)
      if (!used_[i]) {
        std::fprintf(stderr, "unknown argument %s; options:%s\n", argv_[i].c_str(), known_.c_str());
        std::exit(2);
      }
  }

 private:
  long parse(std::size_t i, const std::string& text) {
    used_[i] = true;
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || v <= 0) {
      std::fprintf(stderr, "bad value for %s: %s\n", argv_[i].c_str(), text.c_str());
      std::exit(2);
    }
    return v;
  }

  std::vector<std::string> argv_;
  std::vector<bool> used_;
  std::string known_;
  bool quick_ = false;
};

// xorshift64*: fast enough not to dominate a malloc/free pair. Also a
// standard bit generator, so std::shuffle accepts it.
class Rng {
 public:
  using result_type = std::uint64_t;
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~result_type{0}; }
  result_type operator()() { return next(); }
  explicit Rng(std::uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull | 1) {}
  std::uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  // Uniform in [0, n) for n < 2^32, without a division.
  std::uint64_t below(std::uint64_t n) { return ((next() >> 32) * n) >> 32; }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t s_;
};

// Mixed small sizes, roughly log-uniform in [8, 8 << classes).
inline std::size_t small_size(Rng& rng, unsigned classes = 7) {
  const std::size_t base = std::size_t{8} << rng.below(classes);
  return base + rng.below(base);
}

// Writes a key at both ends of a block (all of it when tiny), so a block
// handed out twice or overwritten by a neighbour is caught at check time.
inline void stamp(void* p, std::size_t n, std::uint64_t key) {
  auto* b = static_cast<unsigned char*>(p);
  if (n < 16) {
    std::memset(b, static_cast<int>(key & 0xff), n);
    return;
  }
  const std::uint64_t tail = ~key;
  std::memcpy(b, &key, 8);
  std::memcpy(b + n - 8, &tail, 8);
}

inline void check(const void* p, std::size_t n, std::uint64_t key) {
  const auto* b = static_cast<const unsigned char*>(p);
  bool ok = true;
  if (n < 16) {
    for (std::size_t i = 0; i < n; ++i) ok &= b[i] == (key & 0xff);
  } else {
    std::uint64_t head = 0, tail = 0;
    std::memcpy(&head, b, 8);
    std::memcpy(&tail, b + n - 8, 8);
    ok = head == key && tail == ~key;
  }
  if (!ok) fail("block contents changed while it was live", p);
}

// A live block and what it must still contain.
struct Block {
  void* p = nullptr;
  std::size_t n = 0;
  std::uint64_t key = 0;

  void make(std::size_t size, std::uint64_t k) {
    p = std::malloc(size);
    if (p == nullptr) fail("malloc returned null");
    n = size;
    key = k;
    stamp(p, n, key);
  }
  void drop() {
    if (p == nullptr) return;
    check(p, n, key);
    std::free(p);
    p = nullptr;
  }
};

class Timer {
 public:
  [[nodiscard]] double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

inline void report(double value, const char* unit) { std::printf("result: %.1f %s\n", value, unit); }

}  // namespace bench
