// operator new and delete, every form. The library does not link the C++
// runtime (C programs should not pay for loading it): the new-handler and
// std::bad_alloc come from it through weak references, present whenever a
// C++ program is the caller, or, for a runtime loaded later (a C program
// that loads a C++ plugin), looked up when memory runs out.
#include <dlfcn.h>
#include <link.h>
#include <errno.h>

#include <atomic>
#include <cstddef>
#include <new>

#include "alloc.h"
#include "check.h"
#include "next_symbol.h"

namespace std {
[[gnu::weak]] new_handler get_new_handler() noexcept;
[[gnu::weak]] void __throw_bad_alloc();  // noreturn, as <new> already declares it
}  // namespace std

namespace {

bool is_pow2(size_t a) noexcept { return a != 0 && (a & (a - 1)) == 0; }

// A symbol of a C++ runtime loaded after this library: the weak references
// were bound when it loaded, to nothing, and a runtime a plugin brought in
// with RTLD_LOCAL is in no scope that dlsym(RTLD_DEFAULT) searches. Only
// when memory has run out.
void* late_runtime_symbol(const char* name) noexcept {
  for (const char* lib : {"libstdc++.so.6", "libc++abi.so.1", "libc++.so.1"}) {
    void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
    if (h == nullptr) continue;
    void* f = dlsym(h, name);
    dlclose(h);
    if (f != nullptr) return f;
  }
  return nullptr;
}

[[noreturn]] void throw_bad_alloc() {
  if (&std::__throw_bad_alloc != nullptr) std::__throw_bad_alloc();
  if (auto f = reinterpret_cast<void (*)()>(late_runtime_symbol("_ZSt17__throw_bad_allocv"))) {
    f();
    __builtin_unreachable();
  }
  pm::fatal("out of memory in operator new and no C++ runtime to throw std::bad_alloc");
}

std::new_handler current_new_handler() noexcept {
  if (&std::get_new_handler != nullptr) return std::get_new_handler();
  auto f = reinterpret_cast<std::new_handler (*)() noexcept>(late_runtime_symbol("_ZSt15get_new_handlerv"));
  return f != nullptr ? f() : nullptr;
}

// Called after an allocation failed: run the new-handler, or throw.
void out_of_memory() {
  std::new_handler handler = current_new_handler();
  if (handler == nullptr) throw_bad_alloc();
  handler();
}

// The operator `name` of a loaded object other than this library that
// defines it itself: with no shared C++ runtime loaded, one that carries
// its own copy (a plugin built with -static-libstdc++). nullptr if none.
// Only when memory has run out: nothing here allocates.
void* own_runtime_operator(const char* name) noexcept {
  struct Objects {
    const char* names[64];
    ElfW(Addr) bases[64];
    unsigned count;
  } objects{};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) {
        auto* o = static_cast<Objects*>(arg);
        if (info->dlpi_name == nullptr || info->dlpi_name[0] == '\0') return 0;  // the executable
        o->names[o->count] = info->dlpi_name;
        o->bases[o->count] = info->dlpi_addr;
        return ++o->count == 64 ? 1 : 0;
      },
      &objects);
  Dl_info mine{};
  if (dladdr(reinterpret_cast<void*>(&own_runtime_operator), &mine) == 0) return nullptr;
  for (unsigned i = 0; i < objects.count; ++i) {
    if (objects.bases[i] == reinterpret_cast<ElfW(Addr)>(mine.dli_fbase)) continue;
    void* h = dlopen(objects.names[i], RTLD_LAZY | RTLD_NOLOAD);
    if (h == nullptr) continue;
    void* f = dlsym(h, name);
    dlclose(h);
    Dl_info found{};
    if (f != nullptr && dladdr(f, &found) != 0 && found.dli_fbase != mine.dli_fbase &&
        reinterpret_cast<ElfW(Addr)>(found.dli_fbase) == objects.bases[i])
      return f;
  }
  return nullptr;
}

bool runtime_reachable() noexcept {
  return &std::get_new_handler != nullptr || late_runtime_symbol("_ZSt15get_new_handlerv") != nullptr;
}

[[gnu::noinline]] void* new_slow(size_t n, size_t align) {
  for (;;) {
    void* p = align <= pm::kMinAlign ? pm::alloc(n) : pm::alloc_aligned(align, n);
    if (p != nullptr) return p;
    // No shared runtime to run the new-handler or throw: a plugin's own
    // copy of the runtime does both, as its code expects, through its
    // operator new (which calls malloc, this library's, again).
    if (!runtime_reachable()) {
      int saved = errno;
      if (align <= pm::kMinAlign) {
        if (auto f = reinterpret_cast<void* (*)(size_t)>(own_runtime_operator("_Znwm"))) return f(n);
      } else if (auto f = reinterpret_cast<void* (*)(size_t, std::align_val_t)>(
                     own_runtime_operator("_ZnwmSt11align_val_t"))) {
        return f(n, std::align_val_t{align});
      }
      errno = saved;
    }
    out_of_memory();
  }
}

// The ways out of operator new's fast path: malloc's, then new_slow when
// they find no memory. Out of line, so that the fast path needs no stack
// frame to keep n across a call.
[[gnu::noinline]] void* new_checked_direct(pm::Heap* h, pm::Pool* pool, size_t g, size_t n) {
  void* p = pm::pool_pop_checked_direct(h, pool, g);
  return p != nullptr ? p : new_slow(n, 0);
}
[[gnu::noinline]] void* new_above_direct(size_t n) {
  void* p = pm::alloc_above_direct(n);
  return p != nullptr ? p : new_slow(n, 0);
}

inline void* new_impl(size_t n) {
  return pm::alloc_with(
      n, [=](pm::Heap* h, pm::Pool* pool, size_t g) { return new_checked_direct(h, pool, g, n); },
      [](size_t m) { return new_above_direct(m); });
}

// An alignment that is not a power of two (undefined by the standard) gets
// std::bad_alloc at once, without the new-handler, as from libstdc++: the
// core's aligned allocation is only defined for powers of two.
[[gnu::noinline]] void* new_aligned_slow(size_t n, size_t align) {
  if (!is_pow2(align)) throw_bad_alloc();
  return new_slow(n, align);
}

inline void* new_aligned(size_t n, std::align_val_t a) {
  size_t align = static_cast<size_t>(a);
  void* p = is_pow2(align) ? pm::alloc_aligned(align, n) : nullptr;
  if (p == nullptr) [[unlikely]]
    return new_aligned_slow(n, align);
  return p;
}

// The C++ runtime's own nothrow forms, looked up once. Each is a call of
// the throwing form (ours, through the runtime's PLT) inside a catch that
// turns what it throws into nullptr.
using NothrowNew = void* (*)(size_t, const std::nothrow_t&) noexcept;
using NothrowAlignedNew = void* (*)(size_t, std::align_val_t, const std::nothrow_t&) noexcept;
std::atomic<NothrowNew> g_runtime_nothrow{nullptr};
std::atomic<NothrowAlignedNew> g_runtime_nothrow_aligned{nullptr};

// A nothrow form found no memory. With a new-handler installed it runs the
// throwing form's loop, and the handler may throw std::bad_alloc (the
// standard's way for a handler to give up), which must come out of the
// nothrow form as nullptr. This library is built without exceptions and
// cannot catch, and an exception leaving a noexcept function terminates
// the program: the runtime's nothrow form does the catching.
[[gnu::noinline]] void* new_nothrow_slow(size_t n, size_t align) noexcept {
  if (current_new_handler() == nullptr) return nullptr;
  const std::nothrow_t nothrow{};  // std::nothrow itself is the runtime's
  if (align == 0) {
    NothrowNew f = pm_preload::next_symbol(g_runtime_nothrow, "_ZnwmRKSt9nothrow_t");
    if (f == nullptr) f = reinterpret_cast<NothrowNew>(late_runtime_symbol("_ZnwmRKSt9nothrow_t"));
    if (f != nullptr) return f(n, nothrow);
  } else {
    NothrowAlignedNew f = pm_preload::next_symbol(g_runtime_nothrow_aligned, "_ZnwmSt11align_val_tRKSt9nothrow_t");
    if (f == nullptr)
      f = reinterpret_cast<NothrowAlignedNew>(late_runtime_symbol("_ZnwmSt11align_val_tRKSt9nothrow_t"));
    if (f != nullptr) return f(n, std::align_val_t{align}, nothrow);
  }
  // No runtime to catch for us (a handler is installed, so there is one
  // unless it is linked into the program whole): the loop, uncaught.
  void* p = nullptr;
  for (std::new_handler handler; p == nullptr && (handler = current_new_handler()) != nullptr;) {
    handler();
    p = align <= pm::kMinAlign ? pm::alloc(n) : pm::alloc_aligned(align, n);
  }
  return p;
}

// align is 0 for the forms without one.
inline void* new_nothrow(size_t n, size_t align) noexcept {
  void* p = align <= pm::kMinAlign ? pm::alloc(n) : pm::alloc_aligned(align, n);
  if (p != nullptr) [[likely]]
    return p;
  return new_nothrow_slow(n, align);
}

// As the throwing form: nullptr for an alignment that is not a power of two.
inline void* new_nothrow_aligned(size_t n, std::align_val_t a) noexcept {
  size_t align = static_cast<size_t>(a);
  return is_pow2(align) ? new_nothrow(n, align) : nullptr;
}

// A program may replace some of the operators alone: operator new(size_t)
// and operator delete(void*) (a counting or tracking allocator), the array
// pair, the aligned pair or the aligned array pair. The standard then has
// the other forms go through them, as the C++ runtime's own do: new[] and
// the nothrow forms call new, the sized and nothrow deletes call the
// delete of their kind (array or not), and delete[] calls delete. The
// program's definitions come before this library's in symbol lookup, so
// this library's forms would otherwise take blocks of the program's
// allocator (a sized delete of a vector's buffer, say) and give out blocks
// it never sees. Each pointer below is the program's definition a form
// goes through, nullptr when the program has none (the library's own code
// runs). An array pointer is the program's array form, or its plain one.
// They are found at the first call of a form that needs one, which may
// come before this library's constructors run (from the static
// initialisers of the program's libraries): until then each holds a
// resolver of its own type, which finds them all and calls again.
using ProgramNew = void* (*)(size_t);
using ProgramDelete = void (*)(void*) noexcept;
using ProgramAlignedNew = void* (*)(size_t, std::align_val_t);
using ProgramAlignedDelete = void (*)(void*, std::align_val_t) noexcept;

void* program_definition(const char* name) noexcept {
  int saved = errno;
  void* f = dlsym(RTLD_DEFAULT, name);
  Dl_info mine{}, found{};
  bool other = f != nullptr && dladdr(reinterpret_cast<void*>(&program_definition), &mine) != 0 &&
               dladdr(f, &found) != 0 && found.dli_fbase != mine.dli_fbase;
  errno = saved;
  return other ? f : nullptr;
}

void find_program_definitions() noexcept;
void* resolve_new(size_t n);
void resolve_delete(void* p) noexcept;
void resolve_delete_array(void* p) noexcept;
void* resolve_aligned_new(size_t n, std::align_val_t a);
void resolve_aligned_delete(void* p, std::align_val_t a) noexcept;
void resolve_aligned_delete_array(void* p, std::align_val_t a) noexcept;

constinit std::atomic<ProgramNew> g_program_new{&resolve_new};
constinit std::atomic<ProgramNew> g_program_new_array{nullptr};  // read after the others are found
constinit std::atomic<ProgramDelete> g_program_delete{&resolve_delete};
constinit std::atomic<ProgramDelete> g_program_delete_array{&resolve_delete_array};
constinit std::atomic<ProgramAlignedNew> g_program_aligned_new{&resolve_aligned_new};
constinit std::atomic<ProgramAlignedNew> g_program_aligned_new_array{nullptr};
constinit std::atomic<ProgramAlignedDelete> g_program_aligned_delete{&resolve_aligned_delete};
constinit std::atomic<ProgramAlignedDelete> g_program_aligned_delete_array{&resolve_aligned_delete_array};
constinit std::atomic<bool> g_program_found{false};

template <class T>
T* either(void* array_form, void* plain_form) noexcept {
  return reinterpret_cast<T*>(array_form != nullptr ? array_form : plain_form);
}

// Idempotent: threads that race here store the same values.
void find_program_definitions() noexcept {
  void* n = program_definition("_Znwm");
  void* na = program_definition("_Znam");
  void* d = program_definition("_ZdlPv");
  void* da = program_definition("_ZdaPv");
  void* an = program_definition("_ZnwmSt11align_val_t");
  void* ana = program_definition("_ZnamSt11align_val_t");
  void* ad = program_definition("_ZdlPvSt11align_val_t");
  void* ada = program_definition("_ZdaPvSt11align_val_t");
  constexpr auto kOrder = std::memory_order_relaxed;
  g_program_new_array.store(either<void*(size_t)>(na, n), kOrder);
  g_program_delete_array.store(either<void(void*) noexcept>(da, d), kOrder);
  g_program_aligned_new_array.store(either<void*(size_t, std::align_val_t)>(ana, an), kOrder);
  g_program_aligned_delete_array.store(either<void(void*, std::align_val_t) noexcept>(ada, ad), kOrder);
  g_program_new.store(reinterpret_cast<ProgramNew>(n), kOrder);
  g_program_delete.store(reinterpret_cast<ProgramDelete>(d), kOrder);
  g_program_aligned_new.store(reinterpret_cast<ProgramAlignedNew>(an), kOrder);
  g_program_aligned_delete.store(reinterpret_cast<ProgramAlignedDelete>(ad), kOrder);
  g_program_found.store(true, std::memory_order_release);
}
[[gnu::constructor(101)]] void find_program_definitions_at_start() noexcept {
  if (!g_program_found.load(std::memory_order_acquire)) find_program_definitions();
}
// For the forms that only test whether the program has a definition.
void ensure_program_definitions() noexcept {
  if (!g_program_found.load(std::memory_order_acquire)) [[unlikely]]
    find_program_definitions();
}

// The resolvers: each is what its pointer holds until the first call.
void* resolve_new(size_t n) {
  find_program_definitions();
  ProgramNew f = g_program_new.load(std::memory_order_relaxed);
  return f != nullptr ? f(n) : new_impl(n);
}
void resolve_delete(void* p) noexcept {
  find_program_definitions();
  ProgramDelete f = g_program_delete.load(std::memory_order_relaxed);
  f != nullptr ? f(p) : pm::dealloc(p);
}
void resolve_delete_array(void* p) noexcept {
  find_program_definitions();
  ProgramDelete f = g_program_delete_array.load(std::memory_order_relaxed);
  f != nullptr ? f(p) : pm::dealloc(p);
}
void* resolve_aligned_new(size_t n, std::align_val_t a) {
  find_program_definitions();
  ProgramAlignedNew f = g_program_aligned_new.load(std::memory_order_relaxed);
  return f != nullptr ? f(n, a) : new_aligned(n, a);
}
void resolve_aligned_delete(void* p, std::align_val_t a) noexcept {
  find_program_definitions();
  ProgramAlignedDelete f = g_program_aligned_delete.load(std::memory_order_relaxed);
  f != nullptr ? f(p, a) : pm::dealloc(p);
}
void resolve_aligned_delete_array(void* p, std::align_val_t a) noexcept {
  find_program_definitions();
  ProgramAlignedDelete f = g_program_aligned_delete_array.load(std::memory_order_relaxed);
  f != nullptr ? f(p, a) : pm::dealloc(p);
}

// The C++ runtime's nothrow forms call the throwing ones inside a catch:
// with the program's operator new in effect, they call it.
std::atomic<NothrowNew> g_runtime_nothrow_array{nullptr};
std::atomic<NothrowAlignedNew> g_runtime_nothrow_aligned_array{nullptr};
[[gnu::noinline]] void* program_nothrow(size_t n, const char* name, std::atomic<NothrowNew>& cache) noexcept {
  if (NothrowNew f = pm_preload::next_symbol(cache, name)) return f(n, std::nothrow_t{});
  return new_nothrow(n, 0);
}
[[gnu::noinline]] void* program_nothrow_aligned(size_t n, std::align_val_t a, const char* name,
                                                std::atomic<NothrowAlignedNew>& cache) noexcept {
  if (NothrowAlignedNew f = pm_preload::next_symbol(cache, name)) return f(n, a, std::nothrow_t{});
  return new_nothrow_aligned(n, a);
}

}  // namespace

#define PM_EXPORT __attribute__((visibility("default")))
// The entry points every C++ program calls most: each starts on its own
// cache line, so that where the linker happens to place them does not move
// their speed from one build to the next.
#define PM_HOT_ENTRY PM_EXPORT __attribute__((aligned(64)))

PM_HOT_ENTRY void* operator new(size_t n) { return new_impl(n); }
// new[] is called only when the program has no new[] of its own.
PM_HOT_ENTRY void* operator new[](size_t n) {
  if (ProgramNew f = g_program_new.load(std::memory_order_relaxed)) [[unlikely]]
    return f(n);
  return new_impl(n);
}
// The nothrow forms go through the runtime's, which call the program's form
// (new, or new[] and then new) inside their catch.
PM_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept {
  ensure_program_definitions();
  if (g_program_new.load(std::memory_order_relaxed) != nullptr) [[unlikely]]
    return program_nothrow(n, "_ZnwmRKSt9nothrow_t", g_runtime_nothrow);
  return new_nothrow(n, 0);
}
PM_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  ensure_program_definitions();
  if (g_program_new_array.load(std::memory_order_relaxed) != nullptr) [[unlikely]]
    return program_nothrow(n, "_ZnamRKSt9nothrow_t", g_runtime_nothrow_array);
  return new_nothrow(n, 0);
}
PM_EXPORT void* operator new(size_t n, std::align_val_t a) { return new_aligned(n, a); }
PM_EXPORT void* operator new[](size_t n, std::align_val_t a) {
  if (ProgramAlignedNew f = g_program_aligned_new.load(std::memory_order_relaxed)) [[unlikely]]
    return f(n, a);
  return new_aligned(n, a);
}
PM_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  ensure_program_definitions();
  if (g_program_aligned_new.load(std::memory_order_relaxed) != nullptr) [[unlikely]]
    return program_nothrow_aligned(n, a, "_ZnwmSt11align_val_tRKSt9nothrow_t", g_runtime_nothrow_aligned);
  return new_nothrow_aligned(n, a);
}
PM_EXPORT void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  ensure_program_definitions();
  if (g_program_aligned_new_array.load(std::memory_order_relaxed) != nullptr) [[unlikely]]
    return program_nothrow_aligned(n, a, "_ZnamSt11align_val_tRKSt9nothrow_t", g_runtime_nothrow_aligned_array);
  return new_nothrow_aligned(n, a);
}

// Every delete form but the two base ones goes to the program's form of
// its kind when it has one (see g_program_delete): one load and a branch.
#define PM_DELETE_VIA(form, ...)                                 \
  do {                                                           \
    if (auto f = form.load(std::memory_order_relaxed)) [[unlikely]] { \
      f(__VA_ARGS__);                                            \
      return;                                                    \
    }                                                            \
  } while (0)

PM_HOT_ENTRY void operator delete(void* p) noexcept { pm::dealloc(p); }
PM_HOT_ENTRY void operator delete[](void* p) noexcept {
  PM_DELETE_VIA(g_program_delete, p);
  pm::dealloc(p);
}
PM_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept {
  PM_DELETE_VIA(g_program_delete, p);
  pm::dealloc(p);
}
PM_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept {
  PM_DELETE_VIA(g_program_delete_array, p);
  pm::dealloc(p);
}
PM_HOT_ENTRY void operator delete(void* p, size_t) noexcept {
  PM_DELETE_VIA(g_program_delete, p);
  pm::dealloc(p);
}
PM_HOT_ENTRY void operator delete[](void* p, size_t) noexcept {
  PM_DELETE_VIA(g_program_delete_array, p);
  pm::dealloc(p);
}
PM_EXPORT void operator delete(void* p, std::align_val_t) noexcept { pm::dealloc(p); }
PM_EXPORT void operator delete[](void* p, std::align_val_t a) noexcept {
  PM_DELETE_VIA(g_program_aligned_delete, p, a);
  pm::dealloc(p);
}
PM_EXPORT void operator delete(void* p, size_t, std::align_val_t a) noexcept {
  PM_DELETE_VIA(g_program_aligned_delete, p, a);
  pm::dealloc(p);
}
PM_EXPORT void operator delete[](void* p, size_t, std::align_val_t a) noexcept {
  PM_DELETE_VIA(g_program_aligned_delete_array, p, a);
  pm::dealloc(p);
}
PM_EXPORT void operator delete(void* p, std::align_val_t a, const std::nothrow_t&) noexcept {
  PM_DELETE_VIA(g_program_aligned_delete, p, a);
  pm::dealloc(p);
}
PM_EXPORT void operator delete[](void* p, std::align_val_t a, const std::nothrow_t&) noexcept {
  PM_DELETE_VIA(g_program_aligned_delete_array, p, a);
  pm::dealloc(p);
}
