// libFuzzer target: sequences of allocator operations through the core API,
// checked against a model of what each live block must hold. Built with
// clang -fsanitize=fuzzer,address by scripts/fuzz.
//
// Input: a stream of 4-byte commands [op, slot, a, b]; sizes come from a and
// b, scaled by the top bits of a into small, pool-sized and large ranges.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#include "alloc.h"

namespace {

constexpr unsigned kSlots = 32;

struct Model {
  unsigned char* p = nullptr;
  size_t size = 0;
  size_t align = 0;
  unsigned char fill = 0;  // every byte of the block holds this value
};

[[noreturn]] void fail(const char* what) {
  (void)write(2, what, strlen(what));
  (void)write(2, "\n", 1);
  abort();
}

size_t size_from(uint8_t a, uint8_t b) {
  size_t v = (static_cast<size_t>(a & 0x3f) << 8) | b;
  switch (a >> 6) {
    case 0: return v & 0xff;                 // 0..255: the small classes
    case 1: return v & 0x3fff;               // up to 16 KiB
    case 2: return pm::kSmallMax - 16384 + v * 2;  // across kSmallMax, the largest pool size
    default: return v == 0x3fff ? (2u << 20) : pm::kSmallMax + v * 4;  // large: up to 128 KiB, or 2 MiB
  }
}

void check(const Model& m) {
  if (m.p == nullptr) return;
  static unsigned char expect[4096];
  memset(expect, m.fill, sizeof expect);
  for (size_t i = 0; i < m.size; i += sizeof expect) {
    size_t len = m.size - i < sizeof expect ? m.size - i : sizeof expect;
    if (memcmp(m.p + i, expect, len) != 0) fail("block content changed");
  }
  if (pm::usable_size(m.p) < m.size) fail("usable size below the request");
  if (!pm::owns(m.p)) fail("owns() false for a live block");
  if (m.align != 0 && reinterpret_cast<uintptr_t>(m.p) % m.align != 0) fail("misaligned block");
  if (reinterpret_cast<uintptr_t>(m.p) % 16 != 0) fail("block not 16-byte aligned");
}

void no_overlap(const Model* slots, unsigned k) {
  const Model& m = slots[k];
  size_t u = pm::usable_size(m.p);
  for (unsigned j = 0; j < kSlots; ++j) {
    const Model& o = slots[j];
    if (j == k || o.p == nullptr) continue;
    if (m.p < o.p + pm::usable_size(o.p) && o.p < m.p + u) fail("two live blocks overlap");
  }
}

void place(Model* slots, unsigned k, void* p, size_t size, size_t align, unsigned char fill) {
  Model& m = slots[k];
  m.p = static_cast<unsigned char*>(p);
  m.size = size;
  m.align = align;
  m.fill = fill;
  memset(m.p, fill, size);
  no_overlap(slots, k);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t n) {
  Model slots[kSlots];
  for (size_t i = 0; i + 4 <= n; i += 4) {
    uint8_t op = data[i] % 8;
    unsigned k = data[i + 1] % kSlots;
    uint8_t a = data[i + 2], b = data[i + 3];
    Model& m = slots[k];
    unsigned char fill = static_cast<unsigned char>(i / 4 + 1);
    switch (op) {
      case 0:
      case 1: {  // malloc, into an empty slot (a full one is freed first)
        check(m);
        pm::dealloc(m.p);
        size_t size = size_from(a, b);
        void* p = pm::alloc(size);
        if (p == nullptr) fail("alloc failed");
        place(slots, k, p, size, 0, fill);
        break;
      }
      case 2: {  // calloc: must come back zeroed
        check(m);
        pm::dealloc(m.p);
        size_t count = 1 + (a & 7);
        size_t each = size_from(a & 0xc7, b) / count;
        auto* p = static_cast<unsigned char*>(pm::alloc_zeroed(count, each));
        if (p == nullptr) fail("calloc failed");
        for (size_t j = 0; j < count * each; ++j)
          if (p[j] != 0) fail("calloc memory not zero");
        place(slots, k, p, count * each, 0, fill);
        break;
      }
      case 3: {  // aligned allocation, alignment 16 .. 256 KiB
        check(m);
        pm::dealloc(m.p);
        size_t align = size_t{16} << (b % 15);
        size_t size = size_from(a, b);
        void* p = pm::alloc_aligned(align, size);
        if (p == nullptr) fail("aligned alloc failed");
        place(slots, k, p, size, align, fill);
        break;
      }
      case 4: {  // realloc: the common prefix survives
        check(m);
        size_t size = size_from(a, b);
        void* p = pm::resize(m.p, size);
        if (size == 0 && m.p != nullptr) {
          if (p != nullptr) fail("realloc to 0 returned a block");
          m = Model{};
          break;
        }
        if (p == nullptr) fail("realloc failed");
        auto* c = static_cast<unsigned char*>(p);
        size_t keep = m.p == nullptr ? 0 : (size < m.size ? size : m.size);
        for (size_t j = 0; j < keep; ++j)
          if (c[j] != m.fill) fail("realloc lost content");
        place(slots, k, p, size, 0, fill);
        break;
      }
      case 5:  // free
        check(m);
        pm::dealloc(m.p);
        m = Model{};
        break;
      case 6:  // rewrite
        check(m);
        if (m.p != nullptr) {
          m.fill = fill;
          memset(m.p, fill, m.size);
        }
        break;
      default:  // verify everything
        for (const Model& s : slots) check(s);
        if (pm::usable_size(nullptr) != 0 || pm::owns(nullptr)) fail("null pointer reported as a block");
        break;
    }
  }
  for (Model& m : slots) {
    check(m);
    pm::dealloc(m.p);
  }
  return 0;
}
