#include "options.h"

#include <sys/auxv.h>

#include "check.h"
#include "segment.h"
#include "writer.h"

namespace pm {
namespace {

constinit Options g_options{};

bool starts_with(const char* s, const char* prefix) noexcept {
  while (*prefix != '\0')
    if (*s++ != *prefix++) return false;
  return true;
}

bool equals(const char* a, const char* b) noexcept {
  while (*a != '\0' && *a == *b) ++a, ++b;
  return *a == *b;
}

bool parse_bool(const char* v, bool* out) noexcept {
  if (equals(v, "1") || equals(v, "yes") || equals(v, "true") || equals(v, "on")) return *out = true, true;
  if (equals(v, "0") || equals(v, "no") || equals(v, "false") || equals(v, "off")) return *out = false, true;
  return false;
}

// False, leaving dst as it was, when v does not fit: a path cut short
// would write somewhere else.
bool copy_path(char* dst, size_t cap, const char* v) noexcept {
  size_t n = 0;
  while (v[n] != '\0') ++n;
  if (n + 1 > cap) return false;
  for (size_t i = 0; i <= n; ++i) dst[i] = v[i];
  return true;
}

// Milliseconds: a number as parse_size reads it, without a suffix.
bool parse_ms(const char* s, size_t max, size_t* out) noexcept {
  for (const char* c = s; *c != '\0'; ++c)
    if (*c < '0' || *c > '9') return false;
  size_t v = 0;
  if (!parse_size(s, &v) || v > max) return false;
  *out = v;
  return true;
}

// One line: "poolmalloc: <what>: POOLMALLOC_<name>=<value>", the value cut short if long.
void warn_about(const char* what, const char* name, const char* v) noexcept {
  char var[160];
  size_t i = 0;
  for (const char* c = "POOLMALLOC_"; *c != '\0'; ++c) var[i++] = *c;
  for (const char* c = name; *c != '\0' && i < 80; ++c) var[i++] = *c;
  var[i++] = '=';
  for (const char* c = v; *c != '\0' && *c != '\n' && i + 1 < sizeof var; ++c) var[i++] = *c;
  var[i] = '\0';
  warn(what, var);
}

void apply(Options& o, const char* name, const char* v) noexcept {
  bool ok = true;
  if (equals(name, "PURGE_DELAY")) {
    size_t ms = 0;
    ok = parse_ms(v, 3600u * 1000u, &ms);
    if (ok) o.purge_delay_ms = ms;
  } else if (equals(name, "CHECK")) {
    if (equals(v, "full")) o.check = CheckLevel::kFull;
    else if (equals(v, "default") || equals(v, "1") || *v == '\0') o.check = CheckLevel::kDefault;
    else ok = false;
  } else if (equals(name, "STATS")) {
    bool b = false;
    if (starts_with(v, "json") && (v[4] == ':' || v[4] == '\0')) {
      ok = v[4] == '\0' || copy_path(o.stats_path, sizeof o.stats_path, v + 5);
      if (ok) o.stats = StatsMode::kJson;
    } else if (parse_bool(v, &b)) {
      o.stats = b ? StatsMode::kText : StatsMode::kOff;
    } else {
      ok = false;
    }
  } else if (equals(name, "VERBOSE")) {
    ok = parse_bool(v, &o.verbose);
  } else if (equals(name, "RESERVE")) {
    // At most the region's size: a larger value would map segments, one
    // system call each, for minutes before the OS said no.
    size_t bytes = 0;
    ok = parse_size(v, &bytes) && bytes <= kRegionMaxSize;
    if (ok) o.reserve = bytes;
  } else if (equals(name, "RESERVE_PREFAULT")) {
    ok = parse_bool(v, &o.reserve_prefault);
  } else if (equals(name, "PURGE_THREAD")) {
    bool b = false;
    if (equals(v, "auto")) {
      o.purge_thread = PurgeThread::kAuto;
    } else if (parse_bool(v, &b)) {
      o.purge_thread = b ? PurgeThread::kOn : PurgeThread::kOff;
    } else {
      ok = false;
    }
  } else if (equals(name, "REGION")) {
    ok = parse_bool(v, &o.region);
  } else if (equals(name, "LARGE_CACHE")) {
    ok = parse_size(v, &o.large_cache);
  } else if (equals(name, "LARGE_THREAD_CACHE")) {
    ok = parse_size(v, &o.large_thread_cache);
  } else if (equals(name, "PROFILE")) {
    ok = copy_path(o.profile_path, sizeof o.profile_path, v);
  } else if (equals(name, "PROFILE_INTERVAL")) {
    size_t ms = 0;
    ok = parse_ms(v, 60u * 1000u, &ms) && ms >= 1;
    if (ok) o.profile_interval_ms = ms;
  } else if (equals(name, "LIB") || equals(name, "BUILD")) {
    return;  // the project's scripts' own settings (scripts/poolmalloc-run, scripts/setup)
  } else {
    warn_about("unknown option ignored", name, v);
    return;
  }
  if (!ok) warn_about("invalid value ignored, using the default", name, v);
}

}  // namespace

const Options& options() noexcept { return g_options; }

bool parse_size(const char* s, size_t* out) noexcept {
  if (s == nullptr || *s < '0' || *s > '9') return false;
  size_t v = 0;
  for (; *s >= '0' && *s <= '9'; ++s) {
    size_t d = static_cast<size_t>(*s - '0');
    if (v > (SIZE_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  unsigned shift = 0;
  switch (*s) {
    case '\0': break;
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: return false;
  }
  if (*s != '\0') {  // K, KB, KiB (and the same for M and G)
    ++s;
    if (*s == 'i' || *s == 'I') ++s;
    if (*s == 'B' || *s == 'b') ++s;
    if (*s != '\0' || s[-1] == 'i' || s[-1] == 'I') return false;
  }
  if (shift != 0 && v > (SIZE_MAX >> shift)) return false;
  *out = v << shift;
  return true;
}

void options_parse(char** env, Options* out, bool secure) noexcept {
  *out = Options{};
  if (env == nullptr || secure) return;
  constexpr const char kPrefix[] = "POOLMALLOC_";
  for (char** e = env; *e != nullptr; ++e) {
    if (!starts_with(*e, kPrefix)) continue;
    // Split NAME=value into a bounded copy of NAME; never touch the environment.
    char name[64];
    const char* c = *e + sizeof kPrefix - 1;
    size_t i = 0;
    while (*c != '\0' && *c != '=' && i + 1 < sizeof name) name[i++] = *c++;
    name[i] = '\0';
    if (*c != '=') {
      const char* eq = c;
      while (*eq != '\0' && *eq != '=') ++eq;
      // A name longer than any option's: unknown (its first 63 characters shown).
      if (*eq == '=') warn_about("unknown option ignored", name, eq + 1);
      continue;
    }
    apply(*out, name, c + 1);
  }
}

void options_init(char** env) noexcept { options_parse(env, &g_options, getauxval(AT_SECURE) != 0); }

void options_describe(Writer& w) noexcept {
  const Options& o = g_options;
  auto line = [&w](const char* name) -> Writer& { return w.put("poolmalloc:   POOLMALLOC_").put(name).put('='); };
  line("PURGE_DELAY").dec(o.purge_delay_ms).put(" (ms)\n");
  line("CHECK").put(o.check == CheckLevel::kFull ? "full" : "default").put('\n');
  line("STATS").put(o.stats == StatsMode::kOff ? "0" : o.stats == StatsMode::kText ? "1" : "json");
  if (o.stats == StatsMode::kJson && o.stats_path[0] != '\0') w.put(':').put(o.stats_path);
  w.put('\n');
  line("VERBOSE").put(o.verbose ? "1\n" : "0\n");
  line("RESERVE").dec(o.reserve).put(" (bytes)\n");
  line("RESERVE_PREFAULT").put(o.reserve_prefault ? "1\n" : "0\n");
  line("LARGE_CACHE").dec(o.large_cache).put(" (bytes)\n");
  line("LARGE_THREAD_CACHE").dec(o.large_thread_cache).put(" (bytes)\n");
  line("PURGE_THREAD").put(o.purge_thread == PurgeThread::kAuto ? "auto\n" : o.purge_thread == PurgeThread::kOn ? "1\n" : "0\n");
  line("REGION").put(o.region ? "1\n" : "0\n");
  line("PROFILE").put(o.profile_path[0] != '\0' ? o.profile_path : "(off)").put('\n');
  line("PROFILE_INTERVAL").dec(o.profile_interval_ms).put(" (ms)\n");
}

}  // namespace pm
