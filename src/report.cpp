#include "report.h"

#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "check.h"
#include "config.h"
#include "heap.h"
#include "options.h"
#include "poolmalloc_version.h"
#include "profile.h"

namespace pm {
namespace {

bool class_in_use(const ClassStats& c) noexcept { return c.allocs != 0 || c.pools != 0; }

uint64_t frag_of(const ClassStats& c, unsigned cls) noexcept {
  uint64_t live = c.live_blocks * kClasses.size[cls];
  return c.pool_bytes > live ? c.pool_bytes - live : 0;
}

// Upper bound of large-histogram bucket b: 2^b bytes.
uint64_t bucket_max(unsigned b) noexcept { return uint64_t{1} << b; }

void text_header(Writer& w) noexcept {
  w.put("  class", 7).put("size", 8).put("requests", 13).put("frees", 13).put("remote", 11);
  w.put("live", 11).put("live bytes", 13).put("peak", 11).put("peak bytes", 13);
  w.put("pools", 7).put("pool bytes", 12).put("frag bytes", 12).put('\n');
}

void text_leaks(Writer& w, const Stats& s, bool at_exit) noexcept {
  w.put(at_exit ? "Leak summary (still live at exit): " : "Live now: ");
  w.dec(s.small_live_blocks + s.large.live_blocks).put(" blocks, ").human(s.live_bytes).put('\n');
  if (s.small_live_blocks + s.large.live_blocks == 0) return;
  w.put("size", 10).put("blocks", 12).put("bytes", 14).put('\n');
  for (unsigned c = 0; c < kNumClasses; ++c) {
    const ClassStats& cs = s.cls[c];
    if (cs.live_blocks == 0) continue;
    w.dec(kClasses.size[c], 10).dec(cs.live_blocks, 12).dec(cs.live_blocks * kClasses.size[c], 14).put('\n');
  }
  if (s.large.live_blocks != 0)
    w.put("large", 10).dec(s.large.live_blocks, 12).dec(s.large.live_bytes, 14).put('\n');
}

}  // namespace

void report_text(Writer& w, const Stats& s, bool at_exit) noexcept {
  w.put("poolmalloc ").put(POOLMALLOC_VERSION_STRING).put(" statistics, pid ").dec(static_cast<uint64_t>(getpid()));
  w.put(at_exit ? " (at exit)\n" : "\n");
  text_header(w);
  for (unsigned c = 0; c < kNumClasses; ++c) {
    const ClassStats& cs = s.cls[c];
    if (!class_in_use(cs)) continue;
    uint64_t size = kClasses.size[c];
    w.dec(c, 7).dec(size, 8).dec(cs.allocs, 13).dec(cs.frees, 13).dec(cs.remote_frees, 11);
    w.dec(cs.live_blocks, 11).dec(cs.live_blocks * size, 13).dec(cs.peak_blocks, 11).dec(cs.peak_blocks * size, 13);
    w.dec(cs.pools, 7).dec(cs.pool_bytes, 12).dec(frag_of(cs, c), 12).put('\n');
  }
  w.put("  small", 15).dec(s.small_allocs, 13).dec(s.small_frees, 13).dec(s.remote_frees, 11);
  w.dec(s.small_live_blocks, 11).dec(s.small_live_bytes, 13).put("", 11).dec(s.small_peak_bytes, 13);
  w.dec(s.arena.pools_in_use, 7).dec(s.pool_bytes, 12).dec(s.fragmentation, 12).put("\n\n");

  w.put("Large blocks (> ").dec(kSmallMax).put(" bytes): ").dec(s.large.allocs).put(" allocated, ");
  w.dec(s.large.frees).put(" freed, ").dec(s.large.live_blocks).put(" live (").human(s.large.live_bytes);
  w.put("), peak ").human(s.large.peak_live_bytes).put(", mapped ").human(s.large.mapped_bytes);
  w.put(" (cached ").human(s.large.cached_bytes).put(", of which ").human(s.large.thread_cached_bytes);
  w.put(" in thread caches, which served ").dec(s.large.thread_cache_allocs).put(" requests)\n");
  w.put("Totals: live ").human(s.live_bytes).put(" (peak ").human(s.peak_live_bytes).put("), requests ");
  w.dec(s.small_allocs + s.large.allocs).put(", frees ").dec(s.small_frees + s.large.frees);
  w.put(", remote frees ").dec(s.remote_frees).put(" (").percent(s.remote_frees, s.small_frees);
  w.put(" of small frees), reallocs ").dec(s.reallocs).put(", threads ").dec(s.threads).put('\n');
  w.put("Pools: ").dec(s.arena.pools_in_use).put(" in use, ").human(s.pool_bytes).put(", fragmentation ");
  w.human(s.fragmentation).put(" (").percent(s.fragmentation, s.pool_bytes).put(" of pool bytes), ");
  w.dec(s.arena.pools_dropped).put(" returned to the OS whole while their idle owner held them\n");
  w.put("OS memory: reserved ").human(s.os_reserved).put(", committed ").human(s.os_committed);
  w.put(", resident (whole process) ").human(s.os_resident).put(", segments ").dec(s.arena.segments).put('\n');
  text_leaks(w, s, at_exit);
}

void report_json(Writer& w, const Stats& s, bool at_exit, bool profile) noexcept {
  w.put("{\"poolmalloc\":").json(POOLMALLOC_VERSION_STRING).put(",\"pid\":").dec(static_cast<uint64_t>(getpid()));
  w.put(",\"at_exit\":").put(at_exit ? "true" : "false").put(",\n\"classes\":[");
  bool first = true;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    const ClassStats& cs = s.cls[c];
    if (!class_in_use(cs)) continue;
    uint64_t size = kClasses.size[c];
    w.put(first ? "\n" : ",\n");
    first = false;
    w.put("{\"class\":").dec(c).put(",\"size\":").dec(size).put(",\"requests\":").dec(cs.allocs);
    w.put(",\"frees\":").dec(cs.frees).put(",\"remote_frees\":").dec(cs.remote_frees);
    w.put(",\"live_blocks\":").dec(cs.live_blocks).put(",\"live_bytes\":").dec(cs.live_blocks * size);
    w.put(",\"peak_live_blocks\":").dec(cs.peak_blocks).put(",\"peak_live_bytes\":").dec(cs.peak_blocks * size);
    w.put(",\"pools\":").dec(cs.pools).put(",\"pool_bytes\":").dec(cs.pool_bytes);
    w.put(",\"fragmentation_bytes\":").dec(frag_of(cs, c)).put('}');
  }
  w.put("],\n\"small\":{\"requests\":").dec(s.small_allocs).put(",\"frees\":").dec(s.small_frees);
  w.put(",\"remote_frees\":").dec(s.remote_frees).put(",\"live_blocks\":").dec(s.small_live_blocks);
  w.put(",\"live_bytes\":").dec(s.small_live_bytes).put(",\"peak_live_bytes\":").dec(s.small_peak_bytes);
  w.put(",\"pools\":").dec(s.arena.pools_in_use).put(",\"pool_bytes\":").dec(s.pool_bytes);
  w.put(",\"fragmentation_bytes\":").dec(s.fragmentation).put("},\n");
  w.put("\"large\":{\"requests\":").dec(s.large.allocs).put(",\"frees\":").dec(s.large.frees);
  w.put(",\"live_blocks\":").dec(s.large.live_blocks).put(",\"live_bytes\":").dec(s.large.live_bytes);
  w.put(",\"peak_live_bytes\":").dec(s.large.peak_live_bytes).put(",\"mapped_bytes\":").dec(s.large.mapped_bytes);
  w.put(",\"cached_bytes\":").dec(s.large.cached_bytes).put(",\"thread_cached_bytes\":").dec(s.large.thread_cached_bytes);
  w.put(",\"thread_cache_requests\":").dec(s.large.thread_cache_allocs).put(",\"histogram\":[");
  first = true;
  for (unsigned b = 0; b < kLargeBuckets; ++b) {
    if (s.large.hist[b] == 0) continue;
    w.put(first ? "" : ",").put("{\"max_size\":").dec(bucket_max(b)).put(",\"count\":").dec(s.large.hist[b]).put('}');
    first = false;
  }
  w.put("]},\n\"total\":{\"requests\":").dec(s.small_allocs + s.large.allocs);
  w.put(",\"frees\":").dec(s.small_frees + s.large.frees).put(",\"remote_frees\":").dec(s.remote_frees);
  w.put(",\"reallocs\":").dec(s.reallocs).put(",\"live_bytes\":").dec(s.live_bytes);
  w.put(",\"peak_live_bytes\":").dec(s.peak_live_bytes).put(",\"threads\":").dec(s.threads).put("},\n");
  w.put("\"os\":{\"reserved_bytes\":").dec(s.os_reserved).put(",\"committed_bytes\":").dec(s.os_committed);
  w.put(",\"resident_bytes\":").dec(s.os_resident).put(",\"segments\":").dec(s.arena.segments);
  w.put(",\"dirty_bytes\":").dec(s.arena.dirty_bytes).put(",\"pools_dropped\":").dec(s.arena.pools_dropped);
  w.put("},\n");
  w.put("\"leaks\":{\"blocks\":").dec(s.small_live_blocks + s.large.live_blocks).put(",\"bytes\":").dec(s.live_bytes);
  w.put(",\"large_blocks\":").dec(s.large.live_blocks).put(",\"large_bytes\":").dec(s.large.live_bytes);
  w.put(",\"by_class\":[");
  first = true;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    const ClassStats& cs = s.cls[c];
    if (cs.live_blocks == 0) continue;
    w.put(first ? "" : ",").put("{\"size\":").dec(kClasses.size[c]).put(",\"blocks\":").dec(cs.live_blocks);
    w.put(",\"bytes\":").dec(cs.live_blocks * kClasses.size[c]).put('}');
    first = false;
  }
  w.put("]}");
  if (profile) {
    w.put(",\n\"profile\":");
    profile_write(w);
  }
  w.put("}\n");
}

void report_start() noexcept {
  Writer w(2);
  w.put("poolmalloc ").put(POOLMALLOC_VERSION_STRING).put(": active in pid ").dec(static_cast<uint64_t>(getpid()));
  w.put(kHardened ? ", hardened" : ", not hardened").put(kDebug ? ", debug build\n" : "\n");
  options_describe(w);
}

void report_at_exit() noexcept {
  static constinit std::atomic<bool> done{false};
  if (done.exchange(true, std::memory_order_acq_rel)) return;
  process_init();  // a program that never allocated has not read its options yet
  const Options& o = options();
  if (o.stats == StatsMode::kOff && !profile_enabled()) return;
  NoWriteSignals quiet;
  Stats s;
  stats_collect(&s);
  if (o.stats == StatsMode::kText) {
    Writer w(2);
    report_text(w, s, true);
  } else if (o.stats == StatsMode::kJson) {
    int fd = o.stats_path[0] != '\0' ? open_output(o.stats_path) : 2;
    if (fd < 0) {
      warn("cannot open the POOLMALLOC_STATS file", o.stats_path);
    } else {
      Writer w(fd);
      report_json(w, s, true, false);
      w.flush();
      bool written = w.ok();
      if (fd != 2 && ::close(fd) != 0) written = false;
      if (!written) warn("could not write the whole POOLMALLOC_STATS report to", o.stats_path[0] != '\0' ? o.stats_path : "stderr");
    }
  }
  if (profile_enabled()) {
    int fd = open_output(o.profile_path);
    if (fd < 0) {
      warn("cannot open the POOLMALLOC_PROFILE file", o.profile_path);
      return;
    }
    bool written;
    {
      Writer w(fd);
      report_json(w, s, true, true);
      w.flush();
      written = w.ok();
    }
    if (::close(fd) != 0) written = false;
    if (!written) warn("could not write the whole POOLMALLOC_PROFILE report to", o.profile_path);
  }
}

}  // namespace pm
