// A program that replaces operator new(size_t) and operator delete(void*)
// alone, and the aligned pair (size_t, align_val_t) and (void*,
// align_val_t), with a header in front of each block (as tracking
// allocators do), run preloaded: the array, nothrow and sized forms must
// go through them, as the C++ runtime's own do, so that no block of its
// allocator reaches the library's free and every block it counted comes
// back, also those of a library whose static initialiser allocates before
// the preloaded library's constructors run (partial_replacement_lib.cpp).
// Exits 0 when the count ends at zero.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

extern int g_built_early;

namespace {

long g_live = 0;
constexpr std::size_t kHeader = 16;
constexpr unsigned kMagic = 0x5eed5eedu;

struct alignas(64) Wide {
  char bytes[64];
};

}  // namespace

void* operator new(std::size_t n) {
  auto* p = static_cast<char*>(std::malloc(n + kHeader));
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p, &kMagic, sizeof kMagic);
  ++g_live;
  return p + kHeader;
}

void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  char* base = static_cast<char*>(p) - kHeader;
  unsigned magic = 0;
  std::memcpy(&magic, base, sizeof magic);
  if (magic != kMagic) {
    std::fprintf(stderr, "partial_replacement: operator delete got a block the program's operator new did not make\n");
    std::abort();
  }
  --g_live;
  std::free(base);
}

// The aligned pair: the header takes a whole alignment, so the block stays
// aligned; the magic word sits just below the block.
namespace {
std::size_t aligned_header(std::align_val_t a) {
  auto align = static_cast<std::size_t>(a);
  return align < kHeader ? kHeader : align;
}
}  // namespace

void* operator new(std::size_t n, std::align_val_t a) {
  std::size_t header = aligned_header(a);
  std::size_t total = (n + header + header - 1) / header * header;  // a multiple of the alignment
  auto* p = static_cast<char*>(std::aligned_alloc(header, total));
  if (p == nullptr) throw std::bad_alloc();
  std::memcpy(p + header - sizeof kMagic, &kMagic, sizeof kMagic);
  ++g_live;
  return p + header;
}

void operator delete(void* p, std::align_val_t a) noexcept {
  if (p == nullptr) return;
  std::size_t header = aligned_header(a);
  char* base = static_cast<char*>(p) - header;
  unsigned magic = 0;
  std::memcpy(&magic, base + header - sizeof magic, sizeof magic);
  if (magic != kMagic) {
    std::fprintf(stderr, "partial_replacement: aligned operator delete got a block the program's did not make\n");
    std::abort();
  }
  --g_live;
  std::free(base);
}

int main() {
  {
    std::vector<std::string> v;  // sized delete (GCC's default since C++14)
    for (int i = 0; i < 200; ++i) v.push_back(std::string(40 + i, 'a'));
    int* array = new int[8];
    delete[] array;
    int* one = new (std::nothrow) int(7);
    delete one;
    int* few = new (std::nothrow) int[4];
    delete[] few;
    Wide* wide = new Wide;  // the aligned pair itself
    delete wide;            // the sized aligned delete
    Wide* wides = new Wide[3];
    delete[] wides;
    Wide* maybe = new (std::nothrow) Wide;
    delete maybe;
    Wide* maybe_many = new (std::nothrow) Wide[2];
    delete[] maybe_many;
  }
  std::printf("partial_replacement: the library built %d strings early; %ld blocks of the program's allocator still "
              "live\n",
              g_built_early, g_live);
  return g_built_early == 100 && g_live == 0 ? 0 : 1;
}
