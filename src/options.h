// Runtime options, read once from POOLMALLOC_* environment variables at
// process start, without allocating. Bad values warn and keep the default.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pm {

class Writer;

enum class CheckLevel : uint8_t { kDefault, kFull };
enum class StatsMode : uint8_t { kOff, kText, kJson };

// When the background purger runs: never, always, or (the default) only in a
// program that already has more than one thread, so that a single-threaded
// program is never switched into glibc's and libstdc++'s multi-threaded
// modes (locked stdio, atomic reference counts) by the allocator.
enum class PurgeThread : uint8_t { kOff, kOn, kAuto };

struct Options {
  uint64_t purge_delay_ms = 1000;      // POOLMALLOC_PURGE_DELAY (ms)
  CheckLevel check = CheckLevel::kDefault;  // POOLMALLOC_CHECK=default|full
  StatsMode stats = StatsMode::kOff;   // POOLMALLOC_STATS=0|1|json|json:PATH
  char stats_path[256] = {};           // target of json:PATH
  bool verbose = false;                // POOLMALLOC_VERBOSE=1
  size_t reserve = 0;                  // POOLMALLOC_RESERVE=256M
  bool reserve_prefault = false;       // POOLMALLOC_RESERVE_PREFAULT=1
  size_t large_cache = 128u << 20;     // POOLMALLOC_LARGE_CACHE (bytes of freed large blocks kept)
  size_t large_thread_cache = 2u << 20;  // POOLMALLOC_LARGE_THREAD_CACHE (bytes per thread)
  PurgeThread purge_thread = PurgeThread::kAuto;  // POOLMALLOC_PURGE_THREAD
  bool region = true;                  // POOLMALLOC_REGION=0: segments where the kernel puts them
  char profile_path[256] = {};         // POOLMALLOC_PROFILE=PATH: write an allocation profile at exit
  uint64_t profile_interval_ms = 10;   // POOLMALLOC_PROFILE_INTERVAL (ms between live-bytes samples)
};

[[nodiscard]] const Options& options() noexcept;
// Parses the environment into `out`, warning once per bad variable; `env`
// is a NULL-terminated array like environ. With `secure` (a set-user-ID or
// set-group-ID program, or one that gained capabilities at exec), every
// POOLMALLOC_* variable is ignored: the user who runs such a program must
// not choose the files it writes as its owner, nor any other setting.
void options_parse(char** env, Options* out, bool secure = false) noexcept;
// options_parse into the settings in force (process start-up, and tests that
// run before any other thread reads them), secure when the kernel says so
// (AT_SECURE).
void options_init(char** env) noexcept;
// The settings in force, one "poolmalloc:   NAME=value" line each.
void options_describe(Writer& w) noexcept;
// Parses a size with an optional K/M/G suffix; false on a malformed value.
bool parse_size(const char* s, size_t* out) noexcept;

}  // namespace pm
