/* poolmalloc's C API, for programs that link libpoolmalloc (-lpoolmalloc or
 * pkg-config poolmalloc) rather than only preloading it.
 *
 *  - statistics: read them into a struct, or print them (text or JSON) to a
 *    file descriptor at any moment; purge free memory; version information;
 *  - allocation with the real usable size: at least n bytes, or a size within
 *    a range;
 *  - fixed-size pools: blocks of one size with an optional cap, their own
 *    memory and their own metrics.
 *
 * Every function is thread-safe unless its comment says otherwise. See
 * docs/API.md for the meaning of every figure. */
#ifndef POOLMALLOC_H
#define POOLMALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "poolmalloc_version.h"

#if defined(__GNUC__)
#define POOLMALLOC_API __attribute__((visibility("default")))
#else
#define POOLMALLOC_API
#endif

#ifdef __cplusplus
#define POOLMALLOC_NOEXCEPT noexcept
extern "C" {
#else
#define POOLMALLOC_NOEXCEPT
#endif

/* ---- version ---- */

/* "major.minor.patch" of the library actually loaded (the macros in
 * poolmalloc_version.h give the version compiled against). */
POOLMALLOC_API const char* poolmalloc_version(void) POOLMALLOC_NOEXCEPT;
/* major * 10000 + minor * 100 + patch */
POOLMALLOC_API int poolmalloc_version_number(void) POOLMALLOC_NOEXCEPT;

/* ---- statistics ---- */

/* Room for every size class; num_classes says how many are filled in. */
#define POOLMALLOC_MAX_CLASSES 96

typedef struct poolmalloc_class_stats {
  uint64_t block_size;          /* bytes of each block of the class */
  uint64_t requests;            /* allocations served */
  uint64_t frees;               /* frees, by any thread */
  uint64_t remote_frees;        /* of which by a thread that did not own the block's pool */
  uint64_t live_blocks;         /* requests - frees */
  uint64_t live_bytes;          /* live_blocks * block_size */
  uint64_t peak_live_blocks;    /* highest live_blocks sampled (docs/API.md) */
  uint64_t peak_live_bytes;     /* peak_live_blocks * block_size */
  uint64_t pools;               /* pools of the class in use */
  uint64_t pool_bytes;          /* bytes of those pools */
  uint64_t fragmentation_bytes; /* pool_bytes not holding a live block */
} poolmalloc_class_stats;

typedef struct poolmalloc_stats {
  uint32_t num_classes;
  uint32_t small_max; /* larger requests are large blocks */
  poolmalloc_class_stats classes[POOLMALLOC_MAX_CLASSES];
  /* all size classes together */
  uint64_t small_requests, small_frees, small_live_blocks, small_live_bytes, small_peak_live_bytes;
  uint64_t pools, pool_bytes, fragmentation_bytes;
  uint64_t remote_frees; /* frees into another thread's pool */
  uint64_t reallocs;     /* realloc calls */
  uint64_t threads;      /* threads with a heap now */
  /* large blocks (own mappings) */
  uint64_t large_requests, large_frees, large_live_blocks, large_live_bytes, large_peak_live_bytes;
  uint64_t large_mapped_bytes, large_cached_bytes;
  /* everything */
  uint64_t live_bytes, peak_live_bytes;
  /* memory from the OS: mapped, possibly resident (mapped less purged and
   * never-used pool slots), and resident (the process's whole RSS). */
  uint64_t os_reserved_bytes, os_committed_bytes, os_resident_bytes;
  uint64_t segments;
} poolmalloc_stats;

/* Fills *out with figures summed over all threads now. 0, or -1 if out is NULL. */
POOLMALLOC_API int poolmalloc_stats_get(poolmalloc_stats* out) POOLMALLOC_NOEXCEPT;

enum { POOLMALLOC_FORMAT_TEXT = 0, POOLMALLOC_FORMAT_JSON = 1 };
/* Writes the statistics to fd, as a table or one JSON object. 0, or -1 when
 * the format is unknown or a write failed. Never allocates. */
POOLMALLOC_API int poolmalloc_stats_print(int fd, int format) POOLMALLOC_NOEXCEPT;

/* Returns all free memory that can go back to the OS now: empty pools,
 * cached large mappings. Bytes released. */
POOLMALLOC_API size_t poolmalloc_purge(void) POOLMALLOC_NOEXCEPT;

/* ---- allocation with sizes ---- */

typedef struct poolmalloc_allocation {
  void* ptr;   /* NULL on failure */
  size_t size; /* usable bytes at ptr (0 on failure) */
} poolmalloc_allocation;

/* Blocks from these functions are freed with poolmalloc_free() (or free(),
 * when libpoolmalloc is the program's malloc). On failure they return NULL
 * with errno ENOMEM; poolmalloc_aligned_alloc with an alignment that is not
 * a power of two, EINVAL (the exported aligned_alloc rounds it up, as
 * glibc 2.36's does). */
POOLMALLOC_API void* poolmalloc_malloc(size_t n) POOLMALLOC_NOEXCEPT;
POOLMALLOC_API void* poolmalloc_aligned_alloc(size_t align, size_t n) POOLMALLOC_NOEXCEPT;
POOLMALLOC_API void poolmalloc_free(void* p) POOLMALLOC_NOEXCEPT;
POOLMALLOC_API size_t poolmalloc_usable_size(const void* p) POOLMALLOC_NOEXCEPT;

/* At least n bytes (n == 0 counts as 1); .size is the usable size, which
 * the caller may use in full. */
POOLMALLOC_API poolmalloc_allocation poolmalloc_alloc_at_least(size_t n) POOLMALLOC_NOEXCEPT;
/* A block whose usable size lies in [min, max]: the smallest block the
 * allocator has for min bytes, provided it is not larger than max. {NULL, 0}
 * with errno EINVAL when min > max or no block size falls in the range (for
 * instance [17, 20]: the nearest sizes are 16 and 32), ENOMEM when memory
 * is short. */
POOLMALLOC_API poolmalloc_allocation poolmalloc_alloc_range(size_t min, size_t max) POOLMALLOC_NOEXCEPT;

/* ---- fixed-size pools ---- */

typedef struct poolmalloc_fixed_pool poolmalloc_fixed_pool;

typedef struct poolmalloc_fixed_options {
  size_t block_size;     /* bytes per block (> 0) */
  size_t align;          /* power of two up to 4096; 0 means 16 */
  size_t initial_blocks; /* blocks made ready at creation */
  size_t max_blocks;     /* cap on blocks in use at once; 0: no cap, grow on demand */
  int thread_safe;       /* nonzero: may be used from several threads at once */
} poolmalloc_fixed_options;

typedef struct poolmalloc_fixed_stats {
  size_t block_size;     /* bytes per block, after rounding to the alignment */
  size_t in_use;         /* blocks handed out and not freed */
  size_t peak_in_use;    /* highest in_use so far */
  size_t capacity;       /* blocks the pool's memory holds */
  size_t max_blocks;     /* the cap, 0 if none */
  size_t grows;          /* times the pool mapped more memory after creation */
  size_t reserved_bytes; /* bytes mapped for blocks */
  size_t failures;       /* allocations refused at the cap or for lack of memory */
} poolmalloc_fixed_stats;

/* NULL with errno EINVAL when the options are invalid, ENOMEM when memory
 * is short (initial_blocks are mapped at once). */
POOLMALLOC_API poolmalloc_fixed_pool* poolmalloc_fixed_create(const poolmalloc_fixed_options* options)
    POOLMALLOC_NOEXCEPT;
/* Releases all of the pool's memory; blocks still in use become invalid.
 * No other call on the pool may overlap it, even on a thread-safe pool. A
 * pool destroyed already aborts with a message (unless its memory went to
 * a new pool in the meantime); so does every other call on a destroyed
 * pool. */
POOLMALLOC_API void poolmalloc_fixed_destroy(poolmalloc_fixed_pool* pool) POOLMALLOC_NOEXCEPT;
/* A block, or NULL with errno ENOMEM when the pool is at its cap or memory
 * is short (the pool stays usable), EINVAL when pool is NULL. */
POOLMALLOC_API void* poolmalloc_fixed_alloc(poolmalloc_fixed_pool* pool) POOLMALLOC_NOEXCEPT;
/* p must be a block this pool handed out (or NULL). Aborts with a message
 * when pool is NULL and p is not, when p is not the start of one of the
 * pool's blocks (a block of another
 * pool, of malloc, an interior pointer, a block never handed out), and on a
 * double free: always for blocks of 16 bytes or more, for smaller ones when
 * no block of the pool is in use. */
POOLMALLOC_API void poolmalloc_fixed_free(poolmalloc_fixed_pool* pool, void* p) POOLMALLOC_NOEXCEPT;
/* Nonzero when p is the start of one of this pool's blocks (in use or not).
 * Logarithmic in the number of times the pool grew. */
POOLMALLOC_API int poolmalloc_fixed_owns(const poolmalloc_fixed_pool* pool, const void* p) POOLMALLOC_NOEXCEPT;
POOLMALLOC_API void poolmalloc_fixed_get_stats(const poolmalloc_fixed_pool* pool, poolmalloc_fixed_stats* out)
    POOLMALLOC_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* POOLMALLOC_H */
