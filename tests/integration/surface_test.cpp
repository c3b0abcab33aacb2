// The exported allocation surface, called through the C and C++ entry points
// of a program that runs with libpoolmalloc.so preloaded: every symbol must
// resolve to the library and behave as glibc's does.
#include <dlfcn.h>
#include <errno.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <new>
#include <string>
#include <vector>

extern "C" {
void* __libc_malloc(size_t);
void __libc_free(void*);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

namespace {

// Keeps the compiler from folding allocation calls whose result looks unused.
void* volatile sink;

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// Sizes no allocation can satisfy, hidden from the compiler's size checks.
size_t huge(size_t below_max = 0) {
  volatile size_t v = SIZE_MAX - below_max;
  return v;
}
const size_t kTooBig = huge(size_t{PTRDIFF_MAX});  // PTRDIFF_MAX + 1

TEST(Surface, EverySymbolResolvesToPoolmalloc) {
  const char* names[] = {
      "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc", "memalign",
      "valloc", "pvalloc", "malloc_usable_size", "free_sized", "free_aligned_sized", "__libc_malloc",
      "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign", "malloc_trim", "mallinfo",
      "mallinfo2", "malloc_stats", "malloc_info", "mallopt", "cfree", "__libc_valloc", "__libc_pvalloc",
      "__libc_mallinfo", "__libc_mallopt",
      "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t", "_ZnwmSt11align_val_t",
      "_ZnamSt11align_val_t", "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
      "_ZdlPv", "_ZdaPv", "_ZdlPvm", "_ZdaPvm", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
      "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
      "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t"};
  for (const char* name : names) {
    void* sym = dlsym(RTLD_DEFAULT, name);
    ASSERT_NE(sym, nullptr) << name;
    Dl_info info{};
    ASSERT_NE(dladdr(sym, &info), 0) << name;
    EXPECT_NE(strstr(info.dli_fname, "libpoolmalloc"), nullptr) << name << " resolves to " << info.dli_fname;
  }
}

TEST(Surface, MallocFreeBasics) {
  void* a = malloc(0);
  void* b = malloc(0);
  ASSERT_NE(a, nullptr);
  EXPECT_NE(a, b);
  free(a);
  free(b);
  errno = 77;
  free(nullptr);
  void* c = malloc(100);
  free(c);
  EXPECT_EQ(errno, 77);
  for (size_t n : {1, 15, 16, 17, 100, 1000, 32768, 40000, 65536, 70000, 1 << 20}) {
    auto* p = static_cast<char*>(malloc(n));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(aligned(p, 16)) << n;
    size_t u = malloc_usable_size(p);
    EXPECT_GE(u, n);
    memset(p, 1, u);
    free(p);
  }
}

TEST(Surface, FailuresReturnNullWithEnomemAndKeepTheBlock) {
  errno = 0;
  sink = malloc(kTooBig);
  EXPECT_EQ(sink, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  sink = calloc(huge() / 8, 16);
  EXPECT_EQ(sink, nullptr);
  EXPECT_EQ(errno, ENOMEM);
  auto* p = static_cast<char*>(malloc(64));
  strcpy(p, "kept");
  errno = 0;
  EXPECT_EQ(reallocarray(p, huge() / 2, 4), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(realloc(p, huge(64)), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_STREQ(p, "kept");
  auto* q = static_cast<char*>(reallocarray(p, 100, 10));
  ASSERT_NE(q, nullptr);
  EXPECT_STREQ(q, "kept");
  EXPECT_EQ(realloc(q, 0), nullptr);  // frees, as glibc does
}

// Below 16 bytes, a recycled block's usable slack held its old free-list
// link (the next block's address under the pool's key): calloc clears it.
TEST(Surface, CallocOfAFewBytesClearsTheWholeBlock) {
  for (size_t n : {1, 5, 8, 13}) {
    void* keep = malloc(16);
    void* p = malloc(16);
    memset(p, 0xEE, 16);
    free(p);
    free(keep);  // p's link now names keep
    auto* z = static_cast<unsigned char*>(calloc(1, n));
    ASSERT_GE(malloc_usable_size(z), 16u);
    for (size_t i = 0; i < 16; ++i) ASSERT_EQ(z[i], 0) << n << " byte " << i;
    free(z);
  }
}

TEST(Surface, CallocZeroesReusedMemory) {
  for (size_t n : {24, 200, 5000, 100000}) {
    void* p = malloc(n);
    memset(p, 0xEE, n);
    free(p);
    auto* z = static_cast<unsigned char*>(calloc(n, 1));
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(z[i], 0) << n;
    free(z);
  }
}

TEST(Surface, AlignedFamilies) {
  void* p = nullptr;
  for (size_t bad : {0, 3, 4, 24, 48}) EXPECT_EQ(posix_memalign(&p, bad, 10), EINVAL) << bad;
  EXPECT_EQ(posix_memalign(&p, 64, huge(10)), ENOMEM);
  for (size_t a = 8; a <= (size_t{16} << 20); a *= 2) {
    ASSERT_EQ(posix_memalign(&p, a, 100), 0) << a;
    EXPECT_TRUE(aligned(p, a)) << a;
    p = realloc(p, 5000);
    ASSERT_NE(p, nullptr);
    free(p);
    void* q = aligned_alloc(a, a * 2);
    ASSERT_NE(q, nullptr);
    EXPECT_TRUE(aligned(q, a));
    free(q);
    void* r = memalign(a, 33);
    EXPECT_TRUE(aligned(r, a));
    free(r);
  }
  void* m = memalign(48, 10);  // glibc rounds the alignment up to a power of two
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(aligned(m, 64));
  free(m);
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* v = valloc(10);
  EXPECT_TRUE(aligned(v, page));
  free(v);
  void* pv = pvalloc(page + 1);
  EXPECT_TRUE(aligned(pv, page));
  EXPECT_GE(malloc_usable_size(pv), 2 * page);
  free(pv);
}

// Alignments near 2^63: NULL and ENOMEM (the sizes computed from them
// would wrap), with every other mapping of the process left alone.
TEST(Surface, HugeAlignmentsFailCleanly) {
  auto* keep = static_cast<char*>(malloc(1 << 20));  // a large block that must survive
  memset(keep, 0x5A, 1 << 20);
  const size_t top = size_t{1} << 63;
  for (size_t n : {top - 1, top - 4096, top / 2, size_t{1}, size_t{0}}) {
    for (size_t a : {top, top / 2, top / 4}) {
      errno = 0;
      EXPECT_EQ(aligned_alloc(a, n), nullptr) << a << " " << n;
      EXPECT_EQ(errno, ENOMEM) << a << " " << n;
      void* p = reinterpret_cast<void*>(1);
      EXPECT_EQ(posix_memalign(&p, a, n), ENOMEM) << a << " " << n;
      errno = 0;
      EXPECT_EQ(memalign(a, n), nullptr) << a << " " << n;
      EXPECT_EQ(errno, ENOMEM) << a << " " << n;
    }
  }
  errno = 0;
  EXPECT_EQ(memalign(top - 5, 10), nullptr);  // rounded up to 2^63
  EXPECT_EQ(errno, ENOMEM);
  for (size_t i = 0; i < (1 << 20); i += 4096) ASSERT_EQ(keep[i], 0x5A);
  free(keep);
  void* z = memalign(0, 24);  // alignment 0: as malloc
  ASSERT_NE(z, nullptr);
  free(z);
}

// A block of 0 bytes with an alignment above the pools' is inside a mapping
// of its own: nothing else can be mapped at its address.
TEST(Surface, ZeroBytesAtLargeAlignmentsAreMapped) {
  for (size_t a = size_t{64} << 10; a <= (size_t{8} << 20); a *= 2) {
    void* p = aligned_alloc(a, 0);
    ASSERT_NE(p, nullptr) << a;
    EXPECT_TRUE(aligned(p, a)) << a;
    void* m = mmap(p, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    EXPECT_EQ(m, MAP_FAILED) << a;
    if (m != MAP_FAILED) munmap(m, 4096);
    free(p);
  }
}

TEST(Surface, GlibcInternalNamesAndSizedFrees) {
  void* a = __libc_malloc(40);
  auto* b = static_cast<char*>(__libc_calloc(10, 10));
  EXPECT_EQ(b[99], 0);
  a = __libc_realloc(a, 4000);
  void* c = __libc_memalign(256, 10);
  EXPECT_TRUE(aligned(c, 256));
  __libc_free(a);
  __libc_free(b);
  __libc_free(c);
  // C23 names that glibc 2.36 does not have: found at run time.
  auto free_sized = reinterpret_cast<void (*)(void*, size_t)>(dlsym(RTLD_DEFAULT, "free_sized"));
  auto free_aligned_sized =
      reinterpret_cast<void (*)(void*, size_t, size_t)>(dlsym(RTLD_DEFAULT, "free_aligned_sized"));
  ASSERT_NE(free_sized, nullptr);
  ASSERT_NE(free_aligned_sized, nullptr);
  free_sized(malloc(100), 100);
  free_aligned_sized(aligned_alloc(128, 256), 128, 256);
}

int handler_calls = 0;
void handler() {
  ++handler_calls;
  std::set_new_handler(nullptr);
}

TEST(Surface, OperatorNewAndDelete) {
  EXPECT_THROW(sink = ::operator new(kTooBig), std::bad_alloc);
  std::set_new_handler(handler);
  EXPECT_THROW(sink = ::operator new[](kTooBig), std::bad_alloc);
  EXPECT_EQ(handler_calls, 1);
  EXPECT_EQ(::operator new(kTooBig, std::nothrow), nullptr);
  void* a = ::operator new(100, std::align_val_t{4096});
  EXPECT_TRUE(aligned(a, 4096));
  ::operator delete(a, 100, std::align_val_t{4096});
  auto* s = new std::string(1000, 'x');
  delete s;
  int* arr = new int[1000]();
  EXPECT_EQ(arr[999], 0);
  delete[] arr;
}

// glibc's identities, which programs rely on: the arena is its blocks in
// use and its free space, of which keepcost is a part; the heap in use is
// uordblks + hblkhd (each block counted once).
void expect_glibc_identities(const struct mallinfo2& m) {
  EXPECT_EQ(m.arena, m.uordblks + m.fordblks);
  EXPECT_LE(m.keepcost, m.fordblks);
}

TEST(Surface, IntrospectionReportsRealFigures) {
  struct mallinfo2 before = mallinfo2();
  expect_glibc_identities(before);
  void* big = malloc(8 << 20);
  memset(big, 1, 8 << 20);
  std::vector<void*> small(16384);
  for (void*& p : small) p = memset(malloc(64), 2, 64);
  struct mallinfo2 during = mallinfo2();
  expect_glibc_identities(during);
  EXPECT_GE(during.hblkhd, before.hblkhd + (8u << 20));
  EXPECT_GE(during.uordblks, before.uordblks + 16384 * 64);
  EXPECT_LT(during.uordblks, before.uordblks + (4u << 20));  // the large block is not in it
  free(big);
  for (void* p : small) free(p);
  struct mallinfo2 after = mallinfo2();
  expect_glibc_identities(after);
  EXPECT_LT(after.uordblks, during.uordblks);
  // The freed mapping may stay cached for reuse: free memory, not a block.
  EXPECT_LE(after.hblkhd + (8u << 20), during.hblkhd);
  EXPECT_EQ(mallopt(M_ARENA_MAX, 2), 1);
  char* text = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&text, &len);
  ASSERT_EQ(malloc_info(0, f), 0);
  fclose(f);
  EXPECT_NE(strstr(text, "<malloc"), nullptr);
  EXPECT_NE(strstr(text, "</malloc>"), nullptr);
  free(text);
  EXPECT_GE(malloc_trim(0), 0);
}

// glibc 2.36's aligned_alloc is its memalign: alignments of 0 and ones that
// are not powers of two are rounded up, not refused (that came in 2.38).
TEST(Surface, AlignedAllocTakesAnyAlignmentAsGlibc236Does) {
  struct Case {
    size_t align, n, expect;
  } cases[] = {{0, 10, 16}, {3, 10, 16}, {24, 100, 32}, {48, 10, 64}, {100, 1000, 128}, {5000, 10, 8192},
               {(size_t{1} << 20) + 1, 100, size_t{2} << 20}};
  for (const Case& c : cases) {
    errno = 0;
    void* p = aligned_alloc(c.align, c.n);
    ASSERT_NE(p, nullptr) << c.align;
    EXPECT_EQ(errno, 0) << c.align;
    EXPECT_TRUE(aligned(p, c.expect)) << c.align;
    EXPECT_GE(malloc_usable_size(p), c.n);
    memset(p, 1, malloc_usable_size(p));
    free(p);
  }
  errno = 0;
  EXPECT_EQ(aligned_alloc(24, huge(10)), nullptr);
  EXPECT_EQ(errno, ENOMEM);  // glibc's: the size fails, not the alignment
}

// glibc's posix_memalign fails inside its memalign, which sets errno: a
// program that reports the failure with perror says why.
TEST(Surface, PosixMemalignFailureLeavesEnomemInErrno) {
  void* p = reinterpret_cast<void*>(1);
  errno = 0;
  EXPECT_EQ(posix_memalign(&p, 64, huge(10)), ENOMEM);
  EXPECT_EQ(errno, ENOMEM);
  EXPECT_EQ(p, reinterpret_cast<void*>(1));
  errno = 0;
  EXPECT_EQ(posix_memalign(&p, 24, 10), EINVAL);  // refused before any allocation: errno untouched
  EXPECT_EQ(errno, 0);
  EXPECT_EQ(p, reinterpret_cast<void*>(1));
}

// glibc 2.36's results, which programs may test: mallopt accepts every
// parameter but M_MXFAST out of its range; malloc_info returns EINVAL
// itself for options other than 0 and leaves errno alone.
TEST(Surface, MalloptAndMallocInfoReturnWhatGlibcReturns) {
  EXPECT_EQ(mallopt(M_GRAIN, 16), 1);
  EXPECT_EQ(mallopt(M_KEEP, 0), 1);
  EXPECT_EQ(mallopt(12345, 1), 1);
  EXPECT_EQ(mallopt(M_MXFAST, 0), 1);
  EXPECT_EQ(mallopt(M_MXFAST, 160), 1);
  EXPECT_EQ(mallopt(M_MXFAST, 161), 0);
  EXPECT_EQ(mallopt(M_MXFAST, -1), 0);
  auto libc_mallopt = reinterpret_cast<int (*)(int, int)>(dlsym(RTLD_DEFAULT, "__libc_mallopt"));
  ASSERT_NE(libc_mallopt, nullptr);
  EXPECT_EQ(libc_mallopt(M_MXFAST, 1000), 0);
  errno = 0;
  EXPECT_EQ(malloc_info(1, stderr), EINVAL);
  EXPECT_EQ(errno, 0);
}

// std::align_val_t that is not a power of two (undefined behaviour, which
// libstdc++ answers with std::bad_alloc and no new-handler): the core's
// aligned path is only defined for powers of two, and ran past the end of
// its class table (SIGSEGV) or handed out misaligned blocks.
TEST(Surface, OperatorNewWithAnAlignmentNotAPowerOfTwoFails) {
  handler_calls = 0;
  std::set_new_handler(handler);
  for (size_t a : {0, 3, 24, 48, 100, 5000, 65537, (1 << 20) + 16}) {
    for (size_t n : {0, 1, 100, 10000, 300000}) {
      EXPECT_THROW(sink = ::operator new(n, std::align_val_t{a}), std::bad_alloc) << a << " " << n;
      EXPECT_THROW(sink = ::operator new[](n, std::align_val_t{a}), std::bad_alloc) << a << " " << n;
      EXPECT_EQ(::operator new(n, std::align_val_t{a}, std::nothrow), nullptr) << a << " " << n;
      EXPECT_EQ(::operator new[](n, std::align_val_t{a}, std::nothrow), nullptr) << a << " " << n;
    }
  }
  EXPECT_EQ(handler_calls, 0);
  std::set_new_handler(nullptr);
  for (size_t a = 1; a <= (size_t{4} << 20); a *= 2) {
    for (size_t n : {0, 1, 100, 10000, 300000}) {
      void* p = ::operator new(n, std::align_val_t{a});
      EXPECT_TRUE(aligned(p, a)) << a << " " << n;
      memset(p, 1, n);
      ::operator delete(p, n, std::align_val_t{a});
      p = ::operator new[](n, std::align_val_t{a}, std::nothrow);
      ASSERT_NE(p, nullptr);
      EXPECT_TRUE(aligned(p, a)) << a << " " << n;
      ::operator delete[](p, std::align_val_t{a}, std::nothrow);
    }
  }
}

void throwing_handler() {
  ++handler_calls;
  throw std::bad_alloc();
}

// A new-handler may give up by throwing std::bad_alloc. From a nothrow form
// that must come out as nullptr: the library is built without exceptions,
// and the exception left its noexcept frame, which ends the program
// (std::terminate) instead.
TEST(Surface, NothrowNewReturnsNullWhenTheNewHandlerThrows) {
  EXPECT_EXIT(
      {
        handler_calls = 0;
        std::set_new_handler(throwing_handler);
        bool ok = ::operator new(kTooBig, std::nothrow) == nullptr &&
                  ::operator new[](kTooBig, std::nothrow) == nullptr &&
                  ::operator new(kTooBig, std::align_val_t{64}, std::nothrow) == nullptr &&
                  ::operator new[](kTooBig, std::align_val_t{8192}, std::nothrow) == nullptr;
        bool threw = false;
        try {
          sink = ::operator new(kTooBig, std::align_val_t{64});
        } catch (const std::bad_alloc&) {
          threw = true;
        }
        exit(ok && threw && handler_calls == 5 ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
}

}  // namespace
