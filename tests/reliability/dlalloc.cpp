// A shared library for the dlopen/dlclose test: it allocates in its
// constructor, keeps the blocks while loaded, allocates from a thread-local
// object, and frees everything in its destructor.
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int kBlocks = 512;
char* g_blocks[kBlocks];

struct PerThread {
  char* scratch = static_cast<char*>(malloc(300));
  ~PerThread() { free(scratch); }
};

[[gnu::constructor]] void load() {
  for (int i = 0; i < kBlocks; ++i) {
    size_t n = 16 + static_cast<size_t>(i) * 37;
    g_blocks[i] = static_cast<char*>(malloc(n));
    memset(g_blocks[i], i & 0xff, n);
  }
}

[[gnu::destructor]] void unload() {
  for (auto*& b : g_blocks) {
    free(b);
    b = nullptr;
  }
}

}  // namespace

// Sum of the first byte of every block; uses a thread-local that allocates.
extern "C" [[gnu::visibility("default")]] long dlalloc_checksum() {
  thread_local PerThread t;
  memset(t.scratch, 1, 300);
  long sum = 0;
  for (int i = 0; i < kBlocks; ++i) sum += static_cast<unsigned char>(g_blocks[i][0]) + t.scratch[i % 300] - 1;
  return sum;
}
