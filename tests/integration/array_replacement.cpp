// A program that replaces only the array operators, new[](size_t) with
// delete[](void*) and the aligned pair of arrays, with a header in front
// of each block, run preloaded: the sized and nothrow array forms must go
// through them, as the C++ runtime's own do, and the plain forms must not.
// Exits 0 when every block the program's operators made came back to them.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace {

long g_live = 0;
constexpr std::size_t kHeader = 64;  // keeps every alignment up to 64
constexpr unsigned kMagic = 0xa77a7a11u;

void* make(std::size_t n) {
  auto* p = static_cast<char*>(std::aligned_alloc(kHeader, (n + 2 * kHeader - 1) / kHeader * kHeader));
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p, &kMagic, sizeof kMagic);
  ++g_live;
  return p + kHeader;
}

void drop(void* p, const char* form) noexcept {
  if (p == nullptr) return;
  char* base = static_cast<char*>(p) - kHeader;
  unsigned magic = 0;
  std::memcpy(&magic, base, sizeof magic);
  if (magic != kMagic) {
    std::fprintf(stderr, "array_replacement: %s got a block the program's operator did not make\n", form);
    std::abort();
  }
  --g_live;
  std::free(base);
}

struct Counted {  // a destructor: delete[] passes the size
  int value = 1;
  ~Counted() { value = 0; }
};
struct alignas(64) Wide {
  char bytes[64];
  ~Wide() { bytes[0] = 0; }
};

}  // namespace

void* operator new[](std::size_t n) { return make(n); }
void operator delete[](void* p) noexcept { drop(p, "operator delete[]"); }
void* operator new[](std::size_t n, std::align_val_t a) {
  if (static_cast<std::size_t>(a) > kHeader) throw std::bad_alloc();
  return make(n);
}
void operator delete[](void* p, std::align_val_t) noexcept { drop(p, "aligned operator delete[]"); }

int main() {
  Counted* counted = new Counted[5];  // operator delete[](void*, size_t)
  delete[] counted;
  int* few = new (std::nothrow) int[6];  // operator new[](size_t, nothrow_t)
  delete[] few;
  void* raw = ::operator new[](24, std::nothrow);
  ::operator delete[](raw, std::nothrow);
  raw = ::operator new[](40);
  ::operator delete[](raw, std::size_t{40});
  Wide* wide = new Wide[3];  // operator delete[](void*, size_t, align_val_t)
  delete[] wide;
  Wide* maybe = new (std::nothrow) Wide[2];  // operator new[](size_t, align_val_t, nothrow_t)
  delete[] maybe;
  raw = ::operator new[](128, std::align_val_t{64}, std::nothrow);
  ::operator delete[](raw, std::align_val_t{64}, std::nothrow);
  // The plain forms are not the program's: they must not reach it.
  int* one = new int(3);
  delete one;
  raw = ::operator new(32, std::nothrow);
  ::operator delete(raw, std::size_t{32});
  std::printf("array_replacement: %ld blocks of the program's operators still live\n", g_live);
  return g_live == 0 ? 0 : 1;
}
