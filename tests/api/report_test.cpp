// The report formats: JSON that parses, malloc_info XML that is well formed,
// the text table, and the writer under them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "alloc.h"
#include "poolmalloc.h"
#include "report.h"

namespace pm {
namespace {

std::string temp_path(const char* name) {
  const char* dir = getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/pm_report_" + std::to_string(getpid()) + "_" + name;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs a python3 check over the file; true when it exits 0.
bool python_accepts(const std::string& path, const char* code) {
  const char* py = getenv("PYTHON3");
  std::string cmd = std::string(py != nullptr ? py : "python3") + " -c '" + code + "' " + path;
  return system(cmd.c_str()) == 0;
}

template <class F>
std::string write_file(const char* name, F fn) {
  std::string path = temp_path(name);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  EXPECT_GE(fd, 0);
  {
    Writer w(fd);
    fn(w);
  }
  close(fd);
  return path;
}

TEST(Report, JsonParsesAndCarriesTheFigures) {
  void* small = alloc(100);
  void* large = alloc(600000);
  Stats s;
  stats_collect(&s);
  std::string path = write_file("stats.json", [&](Writer& w) { report_json(w, s, true, false); });
  EXPECT_TRUE(python_accepts(path,
                             "import json, sys\n"
                             "d = json.load(open(sys.argv[1]))\n"
                             "assert d[\"at_exit\"] is True\n"
                             "c = [c for c in d[\"classes\"] if c[\"size\"] == 112][0]\n"
                             "assert c[\"live_blocks\"] >= 1 and c[\"live_bytes\"] == 112 * c[\"live_blocks\"]\n"
                             "assert d[\"large\"][\"live_blocks\"] >= 1\n"
                             "assert d[\"leaks\"][\"bytes\"] == d[\"total\"][\"live_bytes\"]\n"
                             "assert sum(c[\"bytes\"] for c in d[\"leaks\"][\"by_class\"]) == d[\"small\"][\"live_bytes\"]\n"
                             "assert d[\"os\"][\"reserved_bytes\"] >= d[\"os\"][\"committed_bytes\"]\n"));
  unlink(path.c_str());
  dealloc(small);
  dealloc(large);
}

TEST(Report, PublicPrintWritesJsonAndText) {
  std::string path = temp_path("public.json");
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_EQ(poolmalloc_stats_print(fd, POOLMALLOC_FORMAT_JSON), 0);
  EXPECT_EQ(poolmalloc_stats_print(fd, 7), -1);
  close(fd);
  EXPECT_TRUE(python_accepts(path, "import json, sys; json.load(open(sys.argv[1]))"));
  EXPECT_EQ(poolmalloc_stats_print(-1, POOLMALLOC_FORMAT_TEXT), -1);  // a failed write is reported
  unlink(path.c_str());
}

TEST(Report, XmlIsWellFormed) {
  void* p = alloc(64);
  Stats s;
  stats_collect(&s);
  std::string path = write_file("info.xml", [&](Writer& w) { report_xml(w, s); });
  EXPECT_TRUE(python_accepts(path,
                             "import sys, xml.dom.minidom as m\n"
                             "d = m.parse(sys.argv[1]).documentElement\n"
                             "assert d.tagName == \"malloc\" and d.getAttribute(\"version\") == \"1\"\n"
                             "assert len(d.getElementsByTagName(\"heap\")) == 1\n"
                             "assert any(e.getAttribute(\"type\") == \"mmap\" for e in d.getElementsByTagName(\"total\"))\n"));
  unlink(path.c_str());
  dealloc(p);
}

TEST(Report, TextHasTableTotalsAndLeaks) {
  void* p = alloc(5000);
  Stats s;
  stats_collect(&s);
  std::string text = slurp(write_file("stats.txt", [&](Writer& w) { report_text(w, s, true); }));
  EXPECT_NE(text.find("requests"), std::string::npos);
  EXPECT_NE(text.find("Leak summary (still live at exit)"), std::string::npos);
  EXPECT_NE(text.find("OS memory: reserved"), std::string::npos);
  EXPECT_NE(text.find("  5120 "), std::string::npos) << text;  // 5000 bytes live in the 5120 class
  dealloc(p);
}

TEST(Writer, Formats) {
  std::string path = write_file("fmt.txt", [](Writer& w) {
    w.dec(0).put('|').dec(18446744073709551615ull).put('|').dec(42, 5).put('|').put("ab", 4).put('|');
    w.human(1023).put('|').human(1536).put('|').human(uint64_t{3} << 30).put('|');
    w.percent(1, 3).put('|').percent(5, 0).put('|').json("a\"b\\c\n\x01");
  });
  EXPECT_EQ(slurp(path), "0|18446744073709551615|   42|  ab|1023 B|1.5 KiB|3.0 GiB|33.3%|0.0%|\"a\\\"b\\\\c\\u000a\\u0001\"");
  unlink(path.c_str());
}

TEST(Writer, LongOutputIsFlushedWhole) {
  std::string path = write_file("long.txt", [](Writer& w) {
    for (int i = 0; i < 10000; ++i) w.dec(i % 10);
  });
  std::string s = slurp(path);
  ASSERT_EQ(s.size(), 10000u);
  EXPECT_EQ(s.substr(9990), "0123456789");
  unlink(path.c_str());
}

TEST(Writer, OpenOutputExpandsPid) {
  int fd = open_output((temp_path("pid.%p")).c_str());
  ASSERT_GE(fd, 0);
  close(fd);
  std::string expect = temp_path("pid.") + std::to_string(getpid());
  EXPECT_EQ(access(expect.c_str(), F_OK), 0);
  unlink(expect.c_str());
}

}  // namespace
}  // namespace pm
