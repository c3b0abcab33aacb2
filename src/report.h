// Human- and machine-readable reports of the statistics: a text table, JSON,
// glibc's malloc_info XML, and the settings banner of POOLMALLOC_VERBOSE.
// Everything goes through a Writer: no stdio, no allocation.
#pragma once

#include "stats.h"
#include "writer.h"

namespace pm {

// `at_exit` titles the live blocks as a leak summary.
void report_text(Writer& w, const Stats& s, bool at_exit) noexcept;
// One JSON object; with `profile`, it also holds the sampled live bytes.
void report_json(Writer& w, const Stats& s, bool at_exit, bool profile) noexcept;
// glibc's malloc_info format: <malloc version="1">...</malloc>.
void report_xml(Writer& w, const Stats& s) noexcept;

// What POOLMALLOC_STATS and POOLMALLOC_PROFILE ask for at process exit; runs once.
void report_at_exit() noexcept;
// The announcement of POOLMALLOC_VERBOSE, on stderr.
void report_start() noexcept;

}  // namespace pm
