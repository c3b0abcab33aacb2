// malloc_info's XML, in the shape glibc gives it, so that tools reading
// glibc's output find the same elements: one <heap> (the pool arena) whose
// <sizes> list the free blocks of each size class, then the totals.
#include "report.h"

namespace pm {
namespace {

void total(Writer& w, const char* type, uint64_t count, uint64_t size) noexcept {
  w.put("<total type=\"").put(type).put("\" count=\"").dec(count).put("\" size=\"").dec(size).put("\"/>\n");
}

void system(Writer& w, const char* element, const char* type, uint64_t size) noexcept {
  w.put('<').put(element).put(" type=\"").put(type).put("\" size=\"").dec(size).put("\"/>\n");
}

}  // namespace

void report_xml(Writer& w, const Stats& s) noexcept {
  uint64_t free_blocks = 0;
  uint64_t free_bytes = 0;
  w.put("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n");
  uint64_t from = 1;
  for (unsigned c = 0; c < kNumClasses; ++c) {
    const ClassStats& cs = s.cls[c];
    uint64_t size = kClasses.size[c];
    uint64_t capacity = cs.pools * kClasses.capacity[c];
    uint64_t count = capacity > cs.live_blocks ? capacity - cs.live_blocks : 0;
    if (count != 0) {
      w.put("<size from=\"").dec(from).put("\" to=\"").dec(size).put("\" total=\"").dec(count * size);
      w.put("\" count=\"").dec(count).put("\"/>\n");
      free_blocks += count;
      free_bytes += count * size;
    }
    from = size + 1;
  }
  w.put("</sizes>\n");
  total(w, "fast", 0, 0);
  total(w, "rest", free_blocks, free_bytes);  // as glibc: the sum of <sizes>
  system(w, "system", "current", s.arena.reserved);
  system(w, "system", "max", s.arena.reserved);
  system(w, "aspace", "total", s.arena.reserved);
  system(w, "aspace", "mprotect", s.arena.reserved);
  w.put("</heap>\n");
  total(w, "fast", 0, 0);
  total(w, "rest", free_blocks, free_bytes);  // as glibc: the sum of <sizes>
  // Live large blocks' mappings, not the freed ones kept cached (as mallinfo2's hblkhd).
  total(w, "mmap", s.large.live_blocks,
        s.large.mapped_bytes > s.large.cached_bytes ? s.large.mapped_bytes - s.large.cached_bytes : 0);
  system(w, "system", "current", s.os_reserved);
  system(w, "system", "max", s.os_reserved);
  system(w, "aspace", "total", s.os_reserved);
  system(w, "aspace", "mprotect", s.os_reserved);
  // poolmalloc's own figures, in elements glibc's readers skip.
  w.put("<poolmalloc live_bytes=\"").dec(s.live_bytes).put("\" peak_live_bytes=\"").dec(s.peak_live_bytes);
  w.put("\" committed=\"").dec(s.os_committed).put("\" resident=\"").dec(s.os_resident);
  w.put("\" remote_frees=\"").dec(s.remote_frees).put("\" free_block_bytes=\"").dec(free_bytes).put("\"/>\n");
  w.put("</malloc>\n");
}

}  // namespace pm
