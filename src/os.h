// The one interface to the operating system. Only os.cpp calls mmap, munmap,
// mremap, madvise and the clock; everything above it asks here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pm::os {

// Fresh zeroed read-write memory, or nullptr (errno untouched by callers' rules).
[[nodiscard]] void* map(size_t size) noexcept;
// Like map(), with the start aligned to `align` (a power of two >= page size).
[[nodiscard]] void* map_aligned(size_t size, size_t align) noexcept;
// False when the kernel refused (ENOMEM: splitting the mapping would pass
// vm.max_map_count); the range is then still mapped.
bool unmap(void* p, size_t size) noexcept;
// Unmaps a range that nothing will use again. When the kernel refuses the
// munmap, the range's pages go back all the same (as purge), so that only
// its address space stays behind.
void give_back(void* p, size_t size) noexcept;
// Fresh zeroed read-write memory at exactly [p, p + size), never over an
// existing mapping. kTaken when something is mapped there already (or the
// kernel would only map elsewhere); kNoMemory when the system refuses
// (address-space limit, injected failure).
enum class MapAt { kMapped, kTaken, kNoMemory };
[[nodiscard]] MapAt map_at(void* p, size_t size) noexcept;
// Resize a mapping, moving it if needed; nullptr when the kernel refuses.
[[nodiscard]] void* remap(void* p, size_t old_size, size_t new_size) noexcept;
// Grow a mapping where it is; false when the pages after it are taken.
[[nodiscard]] bool remap_in_place(void* p, size_t old_size, size_t new_size) noexcept;
// Move a mapping onto `target`, new_size bytes of this process's own mapped
// memory, which the kernel discards; false when it refuses, after which
// the target may or may not still be mapped (the caller unmaps it).
[[nodiscard]] bool remap_onto(void* p, size_t old_size, size_t new_size, void* target) noexcept;
// Give the pages back to the OS; the range stays mapped and reads as zero.
void purge(void* p, size_t size) noexcept;
// Make the pages inaccessible (guard pages); they stay mapped.
void protect_none(void* p, size_t size) noexcept;
// Make the pages read-only.
void protect_read(void* p, size_t size) noexcept;
// Touch every page now (for pre-faulted reservations).
void prefault(void* p, size_t size) noexcept;

// Milliseconds on a monotonic clock, cheap (vDSO, coarse).
[[nodiscard]] uint64_t now_ms() noexcept;
// How far now_ms moves at a time (the kernel's tick), in whole ms, at least 1.
[[nodiscard]] uint64_t now_ms_resolution() noexcept;
// Fills `out` with bytes from the kernel's random source; never allocates.
void random_bytes(void* out, size_t n) noexcept;
void write_stderr(const char* s, size_t n) noexcept;
[[nodiscard]] int thread_id() noexcept;
// Records the calling process's id (at load, and in a fork child).
void note_process() noexcept;
// True when the caller runs on this process's memory and thread-local
// storage under another process id: a vfork child (posix_spawn's child, a
// clone(CLONE_VM) child without CLONE_THREAD). Such a child may end at
// any moment (exec, _exit, a signal) without running anything, so it must
// neither create threads nor hold the allocator's locks for longer than a
// request needs. One getpid system call: for cold paths only.
[[nodiscard]] bool in_vfork_child() noexcept;
// Makes every running thread of the process execute a full memory barrier
// (membarrier's private expedited command), so that threads may pair their
// own plain stores and loads with it instead of a fence of their own. False
// when the kernel does not offer it, or when the process runs under a
// seccomp filter (which might kill it for a system call it does not expect).
[[nodiscard]] bool barrier_all_threads() noexcept;
// True when the process runs under no seccomp filter (the "Seccomp:" line
// of /proc/thread-self/status is 0; false when it cannot be read).
[[nodiscard]] bool outside_seccomp() noexcept;
// The program is installing a seccomp filter, or asked for no new
// privileges, which an unprivileged filter needs first (libseccomp then
// installs it with the seccomp system call, which nothing here sees, and a
// look at /proc after it might be what the filter kills the process for):
// from now on outside_seccomp() is false without a look.
void note_seccomp_filter() noexcept;
[[nodiscard]] bool seccomp_filter_noted() noexcept;

// Fault injection for tests: the next `count` calls to map*/remap fail.
void inject_map_failures(long count) noexcept;
// The same for unmap: the next `count` calls leave the range mapped and
// return false, as the kernel's ENOMEM does.
void inject_unmap_failures(long count) noexcept;
// Bytes currently mapped through this interface.
[[nodiscard]] size_t mapped_bytes() noexcept;

}  // namespace pm::os
