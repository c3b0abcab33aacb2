// POOLMALLOC_* parsing: good values apply, bad ones warn on one line and
// keep the default, nothing crashes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "options.h"

namespace pm {
namespace {

// Parses env into `parsed` (not the settings in force, which other threads
// of this process read) and returns what was written on stderr.
Options parsed;
std::string parse(std::initializer_list<const char*> vars, bool secure = false) {
  std::vector<char*> env;
  for (const char* v : vars) env.push_back(const_cast<char*>(v));
  env.push_back(nullptr);
  testing::internal::CaptureStderr();
  options_parse(env.data(), &parsed, secure);
  return testing::internal::GetCapturedStderr();
}

class OptionsEnv : public testing::Test {};

TEST_F(OptionsEnv, GoodValuesApply) {
  EXPECT_EQ(parse({"POOLMALLOC_RESERVE=256M", "POOLMALLOC_RESERVE_PREFAULT=1", "POOLMALLOC_VERBOSE=yes",
                   "POOLMALLOC_STATS=json:/tmp/x.%p.json", "POOLMALLOC_PURGE_DELAY=250",
                   "POOLMALLOC_LARGE_CACHE=1G", "POOLMALLOC_LARGE_THREAD_CACHE=512K", "POOLMALLOC_PROFILE=/tmp/p.json", "POOLMALLOC_PROFILE_INTERVAL=5", "POOLMALLOC_REGION=0",
                   "PATH=/bin", "POOLMALLOC_CHECK=full"}),
            "");
  const Options& o = parsed;
  EXPECT_EQ(o.reserve, size_t{256} << 20);
  EXPECT_TRUE(o.reserve_prefault);
  EXPECT_TRUE(o.verbose);
  EXPECT_EQ(o.stats, StatsMode::kJson);
  EXPECT_STREQ(o.stats_path, "/tmp/x.%p.json");
  EXPECT_EQ(o.purge_delay_ms, 250u);
  EXPECT_EQ(o.large_cache, size_t{1} << 30);
  EXPECT_EQ(o.large_thread_cache, size_t{512} << 10);
  EXPECT_STREQ(o.profile_path, "/tmp/p.json");
  EXPECT_EQ(o.profile_interval_ms, 5u);
  EXPECT_EQ(o.check, CheckLevel::kFull);
  EXPECT_FALSE(o.region);
  parse({"POOLMALLOC_STATS=1"});
  EXPECT_EQ(parsed.stats, StatsMode::kText);
  parse({"POOLMALLOC_STATS=json"});
  EXPECT_EQ(parsed.stats, StatsMode::kJson);
  EXPECT_STREQ(parsed.stats_path, "");
}

// A set-user-ID program takes no setting from the user who runs it: not
// the files its reports would write as its owner, nor anything else, and
// says nothing about the variables it ignores.
TEST_F(OptionsEnv, SecureExecutionIgnoresEveryVariable) {
  const Options defaults{};
  EXPECT_EQ(parse({"POOLMALLOC_STATS=json:/etc/victim", "POOLMALLOC_PROFILE=/etc/other", "POOLMALLOC_CHECK=full",
                   "POOLMALLOC_RESERVE=1G", "POOLMALLOC_BOGUS=1", "POOLMALLOC_PURGE_DELAY=x"},
                  true),
            "");
  EXPECT_EQ(parsed.stats, StatsMode::kOff);
  EXPECT_STREQ(parsed.stats_path, "");
  EXPECT_STREQ(parsed.profile_path, "");
  EXPECT_EQ(parsed.check, defaults.check);
  EXPECT_EQ(parsed.reserve, defaults.reserve);
  EXPECT_EQ(parsed.purge_delay_ms, defaults.purge_delay_ms);
  parse({"POOLMALLOC_STATS=json:/tmp/x.json"}, false);
  EXPECT_EQ(parsed.stats, StatsMode::kJson);  // the same variable, not secure
}

TEST_F(OptionsEnv, BadValuesWarnAndKeepDefaults) {
  const Options defaults{};
  struct Case {
    const char* var;
    const char* name;
  };
  for (Case c : {Case{"POOLMALLOC_RESERVE=12Q", "RESERVE"}, Case{"POOLMALLOC_RESERVE=-1", "RESERVE"},
                 Case{"POOLMALLOC_RESERVE=99999999999999999999G", "RESERVE"}, Case{"POOLMALLOC_RESERVE=", "RESERVE"},
                 Case{"POOLMALLOC_RESERVE=16EB", "RESERVE"}, Case{"POOLMALLOC_STATS=jsonx", "STATS"},
                 Case{"POOLMALLOC_STATS=maybe", "STATS"}, Case{"POOLMALLOC_VERBOSE=2", "VERBOSE"},
                 Case{"POOLMALLOC_PURGE_DELAY=soon", "PURGE_DELAY"}, Case{"POOLMALLOC_PURGE_DELAY=99999999", "PURGE_DELAY"},
                 Case{"POOLMALLOC_PROFILE_INTERVAL=0", "PROFILE_INTERVAL"},
                 Case{"POOLMALLOC_RESERVE_PREFAULT=sure", "RESERVE_PREFAULT"}, Case{"POOLMALLOC_CHECK=paranoid", "CHECK"},
                 Case{"POOLMALLOC_LARGE_CACHE=lots", "LARGE_CACHE"},
                 Case{"POOLMALLOC_LARGE_THREAD_CACHE=4X", "LARGE_THREAD_CACHE"}, Case{"POOLMALLOC_NO_SUCH=1", "NO_SUCH"},
                 // An empty boolean is no value (it turned a default-on option off).
                 Case{"POOLMALLOC_REGION=", "REGION"}, Case{"POOLMALLOC_PURGE_THREAD=", "PURGE_THREAD"},
                 Case{"POOLMALLOC_VERBOSE=", "VERBOSE"},
                 // Suffixes are K, KB, KiB (M, G alike), nothing else.
                 Case{"POOLMALLOC_LARGE_CACHE=64KBB", "LARGE_CACHE"}, Case{"POOLMALLOC_LARGE_CACHE=64Ki", "LARGE_CACHE"},
                 // Milliseconds take no size suffix.
                 Case{"POOLMALLOC_PURGE_DELAY=3K", "PURGE_DELAY"}, Case{"POOLMALLOC_PROFILE_INTERVAL=5K", "PROFILE_INTERVAL"},
                 // A reservation beyond the region's 64 GiB.
                 Case{"POOLMALLOC_RESERVE=65G", "RESERVE"}, Case{"POOLMALLOC_RESERVE=18446744073709551615", "RESERVE"}}) {
    std::string err = parse({c.var});
    EXPECT_NE(err.find(std::string("POOLMALLOC_") + c.name), std::string::npos) << c.var << ": " << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << c.var << ": " << err;
    const Options& o = parsed;
    EXPECT_EQ(o.reserve, defaults.reserve) << c.var;
    EXPECT_EQ(o.stats, defaults.stats) << c.var;
    EXPECT_EQ(o.verbose, defaults.verbose) << c.var;
    EXPECT_EQ(o.purge_delay_ms, defaults.purge_delay_ms) << c.var;
    EXPECT_EQ(o.profile_interval_ms, defaults.profile_interval_ms) << c.var;
    EXPECT_EQ(o.large_cache, defaults.large_cache) << c.var;
    EXPECT_EQ(o.large_thread_cache, defaults.large_thread_cache) << c.var;
    EXPECT_EQ(o.region, defaults.region) << c.var;
    EXPECT_EQ(o.purge_thread, defaults.purge_thread) << c.var;
  }
}

TEST_F(OptionsEnv, OddEntriesAreHarmless) {
  // A path too long for the options is refused, not cut short (the report
  // would go to another file); a name too long for any option is unknown.
  std::string long_path(1000, 'a');
  std::string var = "POOLMALLOC_STATS=json:" + long_path;
  std::string profile = "POOLMALLOC_PROFILE=" + long_path;
  std::string long_name = "POOLMALLOC_" + std::string(200, 'X') + "=1";
  std::string err = parse({var.c_str(), profile.c_str(), "POOLMALLOC_VERBOSE", "POOLMALLOC_=1", long_name.c_str()});
  EXPECT_EQ(parsed.stats, Options{}.stats);
  EXPECT_STREQ(parsed.stats_path, "");
  EXPECT_STREQ(parsed.profile_path, "");
  EXPECT_FALSE(parsed.verbose);
  EXPECT_NE(err.find("POOLMALLOC_STATS=json:aaa"), std::string::npos) << err;
  EXPECT_NE(err.find("POOLMALLOC_PROFILE=aaa"), std::string::npos) << err;
  EXPECT_NE(err.find("unknown option ignored: POOLMALLOC_XXXX"), std::string::npos) << err;
}

TEST(ParseSize, Suffixes) {
  size_t v = 0;
  EXPECT_TRUE(parse_size("4k", &v));
  EXPECT_EQ(v, 4096u);
  EXPECT_TRUE(parse_size("3MiB", &v));
  EXPECT_EQ(v, size_t{3} << 20);
  EXPECT_TRUE(parse_size("2GB", &v));
  EXPECT_EQ(v, size_t{2} << 30);
  // In either case, as docs/CONFIG.md says.
  EXPECT_TRUE(parse_size("5KIB", &v));
  EXPECT_EQ(v, size_t{5} << 10);
  EXPECT_TRUE(parse_size("6mib", &v));
  EXPECT_EQ(v, size_t{6} << 20);
  EXPECT_FALSE(parse_size("1KI", &v));
  EXPECT_FALSE(parse_size("1T", &v));
  EXPECT_FALSE(parse_size(" 1", &v));
  EXPECT_FALSE(parse_size(nullptr, &v));
}

}  // namespace
}  // namespace pm
