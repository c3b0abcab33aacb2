#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>

#include "config.h"

namespace pm::os {
namespace {

constinit std::atomic<long> g_fail_maps{0};
constinit std::atomic<long> g_fail_unmaps{0};
constinit std::atomic<size_t> g_mapped{0};
bool injected_failure() noexcept {
  if (g_fail_maps.load(std::memory_order_relaxed) <= 0) [[likely]]
    return false;
  return g_fail_maps.fetch_sub(1, std::memory_order_relaxed) > 0;
}

void* raw_map(size_t size) noexcept {
  if (injected_failure()) return nullptr;
  int saved = errno;  // a failed mmap must not leak ENOMEM into the caller's errno
  // No MAP_NORESERVE: under the kernel's default overcommit heuristic
  // (vm.overcommit_memory=0) a mapping larger than RAM + swap is refused, as
  // glibc's malloc is (malloc(1 TiB) fails with ENOMEM there). With
  // MAP_NORESERVE it succeeded, and a program that then fills the block
  // (full mode fills every fresh block) met the OOM killer instead of NULL.
  // Blocks grown with mremap keep the flag of their mapping, so they are
  // checked the same way.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  errno = saved;
  if (p == MAP_FAILED) return nullptr;
  g_mapped.fetch_add(size, std::memory_order_relaxed);
  return p;
}

}  // namespace

void* map(size_t size) noexcept { return raw_map(size); }

void* map_aligned(size_t size, size_t align) noexcept {
  // Over-map by `align`, then cut the misaligned head and the tail.
  size_t span = size + align;
  if (span < size) return nullptr;
  auto* p = static_cast<char*>(raw_map(span));
  if (p == nullptr) return nullptr;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uintptr_t aligned = (a + align - 1) & ~(uintptr_t{align} - 1);
  size_t head = aligned - a;
  size_t tail = span - head - size;
  if (head != 0) unmap(p, head);
  if (tail != 0) unmap(reinterpret_cast<char*>(aligned) + size, tail);
  return reinterpret_cast<void*>(aligned);
}

MapAt map_at(void* p, size_t size) noexcept {
  if (injected_failure()) return MapAt::kNoMemory;
  int saved = errno;
  // A kernel older than 4.17 takes MAP_FIXED_NOREPLACE for a mere hint, and
  // may map elsewhere: that mapping is undone, and the place counts as taken.
  void* q = ::mmap(p, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
                   -1, 0);
  int err = errno;
  errno = saved;
  if (q == p) {
    g_mapped.fetch_add(size, std::memory_order_relaxed);
    return MapAt::kMapped;
  }
  if (q != MAP_FAILED) {
    ::munmap(q, size);
    errno = saved;
    return MapAt::kTaken;
  }
  return err == EEXIST ? MapAt::kTaken : MapAt::kNoMemory;
}

bool unmap(void* p, size_t size) noexcept {
  if (g_fail_unmaps.load(std::memory_order_relaxed) > 0 && g_fail_unmaps.fetch_sub(1, std::memory_order_relaxed) > 0)
    [[unlikely]]
    return false;
  int saved = errno;
  bool done = ::munmap(p, size) == 0;
  if (done) g_mapped.fetch_sub(size, std::memory_order_relaxed);
  errno = saved;
  return done;
}

void give_back(void* p, size_t size) noexcept {
  if (!unmap(p, size)) purge(p, size);
}

bool remap_in_place(void* p, size_t old_size, size_t new_size) noexcept {
  if constexpr (kThreadSanitizer) return false;
  if (injected_failure()) return false;
  int saved = errno;
  void* q = ::mremap(p, old_size, new_size, 0);
  errno = saved;
  if (q == MAP_FAILED) return false;
  g_mapped.fetch_add(new_size - old_size, std::memory_order_relaxed);
  return true;
}

bool remap_onto(void* p, size_t old_size, size_t new_size, void* target) noexcept {
  if constexpr (kThreadSanitizer) return false;
  if (injected_failure()) return false;
  int saved = errno;
  void* q = ::mremap(p, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, target);
  errno = saved;
  if (q == MAP_FAILED) return false;
  g_mapped.fetch_sub(old_size, std::memory_order_relaxed);  // what was mapped at the target is gone
  return true;
}

void* remap(void* p, size_t old_size, size_t new_size) noexcept {
  if constexpr (kThreadSanitizer) return nullptr;
  if (injected_failure()) return nullptr;
  int saved = errno;
  void* q = ::mremap(p, old_size, new_size, MREMAP_MAYMOVE);
  errno = saved;
  if (q == MAP_FAILED) return nullptr;
  if (new_size > old_size)
    g_mapped.fetch_add(new_size - old_size, std::memory_order_relaxed);
  else
    g_mapped.fetch_sub(old_size - new_size, std::memory_order_relaxed);
  return q;
}

void purge(void* p, size_t size) noexcept {
  int saved = errno;
  ::madvise(p, size, MADV_DONTNEED);
  errno = saved;
}

void protect_none(void* p, size_t size) noexcept {
  int saved = errno;
  ::mprotect(p, size, PROT_NONE);
  errno = saved;
}

void protect_read(void* p, size_t size) noexcept {
  int saved = errno;
  ::mprotect(p, size, PROT_READ);
  errno = saved;
}

void prefault(void* p, size_t size) noexcept {
  auto* c = static_cast<volatile char*>(p);
  for (size_t i = 0; i < size; i += kPageSize) c[i] = 0;
}

uint64_t now_ms() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

uint64_t now_ms_resolution() noexcept {
  timespec res{};
  if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0) return 1;
  uint64_t ms = static_cast<uint64_t>(res.tv_sec) * 1000 + (static_cast<uint64_t>(res.tv_nsec) + 999999) / 1000000;
  return ms == 0 ? 1 : ms;
}

namespace {
constinit std::atomic<bool> g_filter_noted{false};
}  // namespace

void note_seccomp_filter() noexcept { g_filter_noted.store(true, std::memory_order_relaxed); }
bool seccomp_filter_noted() noexcept { return g_filter_noted.load(std::memory_order_relaxed); }

// Under a filter, a system call the filter does not expect may kill the
// process, so membarrier is not tried there.
bool outside_seccomp() noexcept {
  // A filter the program installed itself: even the look at /proc below
  // might be what it kills the process for.
  if (g_filter_noted.load(std::memory_order_relaxed)) return false;
  int fd = ::open("/proc/thread-self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* line = strstr(buf, "\nSeccomp:");
  if (line == nullptr) return true;  // a kernel without seccomp
  line += 9;
  while (*line == ' ' || *line == '\t') ++line;
  return *line == '0';
}

bool barrier_all_threads() noexcept {
  // 1: registered, -1: not available; the registration is per process.
  static constinit std::atomic<int> state{0};
  int s = state.load(std::memory_order_acquire);
  if (s < 0) return false;
  int saved = errno;
  // Checked every time: a program may install a filter after start-up.
  if (!outside_seccomp()) {
    errno = saved;
    return false;
  }
  if (s == 0) {
    bool ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    state.store(ok ? 1 : -1, std::memory_order_release);
    if (!ok) {
      errno = saved;
      return false;
    }
  }
  bool ok = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
  if (!ok && errno == EPERM)  // a fork child may have to register again
    ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 &&
         syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
  errno = saved;
  return ok;
}

void random_bytes(void* out, size_t n) noexcept {
  int saved = errno;
  auto* dst = static_cast<unsigned char*>(out);
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(dst + got, n - got, GRND_NONBLOCK);
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  if (got < n) {
    // Early boot or seccomp: fall back on the kernel's AT_RANDOM bytes mixed with the clock.
    const auto* seed = reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM));
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = static_cast<uint64_t>(ts.tv_nsec) * 0x9E3779B97F4A7C15ull;
    for (size_t i = got; i < n; ++i) {
      x ^= x >> 29;
      x *= 0xBF58476D1CE4E5B9ull;
      dst[i] = static_cast<unsigned char>(x >> 56) ^ (seed != nullptr ? seed[i % 16] : 0);
    }
  }
  errno = saved;
}

void write_stderr(const char* s, size_t n) noexcept {
  int saved = errno;
  while (n > 0) {
    ssize_t w = ::write(2, s, n);
    if (w <= 0) break;
    s += w;
    n -= static_cast<size_t>(w);
  }
  errno = saved;
}

int thread_id() noexcept { return static_cast<int>(::syscall(SYS_gettid)); }

namespace {
// The process id noted at load, on a page the kernel clears in every child
// that does not share this memory (MADV_WIPEONFORK): a child of _Fork or of
// a raw fork system call, which runs no fork handler to note its own id,
// reads 0 there (not a vfork child), where a vfork child reads its parent's.
// A kernel without the advice: the note is kept in the library's data.
constinit std::atomic<std::atomic<int>*> g_process_note{nullptr};
constinit std::atomic<int> g_process_id{0};

std::atomic<int>* process_note() noexcept {
  std::atomic<int>* note = g_process_note.load(std::memory_order_relaxed);
  return note != nullptr ? note : &g_process_id;
}
}  // namespace

void note_process() noexcept {
  if (g_process_note.load(std::memory_order_relaxed) == nullptr) {
    void* page = ::mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page != MAP_FAILED) {
      if (::madvise(page, kPageSize, MADV_WIPEONFORK) == 0)
        g_process_note.store(new (page) std::atomic<int>(0), std::memory_order_relaxed);
      else
        ::munmap(page, kPageSize);
    }
  }
  process_note()->store(static_cast<int>(::getpid()), std::memory_order_relaxed);
}

bool in_vfork_child() noexcept {
  int recorded = process_note()->load(std::memory_order_relaxed);
  return recorded != 0 && recorded != static_cast<int>(::getpid());
}

void inject_map_failures(long count) noexcept { g_fail_maps.store(count, std::memory_order_relaxed); }
void inject_unmap_failures(long count) noexcept { g_fail_unmaps.store(count, std::memory_order_relaxed); }

size_t mapped_bytes() noexcept { return g_mapped.load(std::memory_order_relaxed); }

}  // namespace pm::os
