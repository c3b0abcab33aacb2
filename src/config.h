// Compile-time configuration of the allocator: geometry of segments, slots and
// size classes, and the build flavour. Runtime options live in options.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pm {

// On the declaration of a global the fast paths read: the library's own
// data is then addressed directly, not through the GOT (the build's
// -fvisibility=hidden covers definitions only).
#define PM_HIDDEN __attribute__((visibility("hidden")))

// Segments are what the arena takes from the OS: kSegmentSize bytes aligned to
// kSegmentSize, so a block finds its segment by masking its address.
inline constexpr unsigned kSegmentShift = 22;
inline constexpr size_t kSegmentSize = size_t{1} << kSegmentShift;

// A segment is cut into slots. Slot 0 holds the segment header and the pool
// descriptors (metadata apart from user blocks); a pool spans 1, 2, 4, 8, 16
// or 32 slots.
inline constexpr unsigned kSlotShift = 16;
inline constexpr size_t kSlotSize = size_t{1} << kSlotShift;
inline constexpr unsigned kSlotsPerSegment = kSegmentSize / kSlotSize;
static_assert(kSlotsPerSegment == 64, "free-slot sets are one 64-bit word");

// Requests up to kSmallMax bytes come from pools; larger ones are large blocks.
inline constexpr size_t kSmallMax = 256 * 1024;
// A pool of n slots starts at a slot index that is a multiple of
// pool_align_slots(n): its own span up to 8 slots (512 KiB), so that the
// blocks of a power-of-two class are aligned to their size; no more above
// that, so that a pool of 16 or 32 slots has several places in a segment.
constexpr unsigned pool_align_slots(unsigned slots) noexcept { return slots < 8 ? slots : 8; }
inline constexpr size_t kMinAlign = 16;  // x86-64 alignof(max_align_t)
inline constexpr size_t kPageSize = 4096;
inline constexpr size_t kCacheLine = 64;

// Free pool memory kept resident for reuse (dirty slots) is returned once it
// has waited the purge delay, and at once beyond this many bytes, so that a
// program that frees a lot and then goes idle where no purge runs keeps at
// most this much.
inline constexpr size_t kMaxDirtyBytes = size_t{64} << 20;

// Every request above this is refused with ENOMEM (glibc's limit).
inline constexpr size_t kMaxRequest = size_t{PTRDIFF_MAX};

#ifdef NDEBUG
inline constexpr bool kDebug = false;
#else
inline constexpr bool kDebug = true;
#endif

// ThreadSanitizer does not intercept mremap: a moved range keeps the shadow of
// its previous life there and later accesses are reported as races. Its
// builds resize large blocks by copying instead.
#ifdef __SANITIZE_THREAD__
inline constexpr bool kThreadSanitizer = true;
#else
inline constexpr bool kThreadSanitizer = false;
#endif

// Sanitizer builds: code that the tools cannot see (inline asm) is replaced
// by portable equivalents.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define PM_SANITIZER_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define PM_SANITIZER_BUILD 1
#endif
#endif

#ifdef POOLMALLOC_NO_HARDENING
inline constexpr bool kHardened = false;
#else
inline constexpr bool kHardened = true;
#endif

}  // namespace pm
