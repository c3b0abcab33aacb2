"""Unit tests of scripts/compare_lib's pure parts: parsing, statistics,
the result document and its rendering, allocator selection."""
import csv
import io
import json
import shlex
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from compare_lib import allocators, charts, report, stats, summary, workloads  # noqa: E402
from compare_lib.progress import Progress  # noqa: E402
from compare_lib.runner import Run  # noqa: E402


class Parsing(unittest.TestCase):
    def test_result_line(self):
        self.assertEqual(stats.parse_result("x\nresult: 12.5 ops/s\n"), (12.5, "ops/s"))
        self.assertEqual(stats.parse_result("result: 1 a\nresult: 2e3 b\n"), (2000.0, "b"))
        self.assertIsNone(stats.parse_result("no result here\nresult: fast\n"))

    def test_metrics(self):
        text = "live: 10 kB\nfinal-rss: 1234 kB\nresult: 5 ops/s\nnote: hello\ncount: 3\n"
        self.assertEqual(stats.parse_metrics(text),
                         {"live (kB)": 10.0, "final-rss (kB)": 1234.0, "count": 3.0})

    def test_redis_rates_harmonic_mean(self):
        text = ("SET: rps=0.0 (overall: nan) avg_msec=nan\r"
                "SET: 100000.00 requests per second, p50=0.2 msec\n"
                "GET: 50000.00 requests per second, p50=0.3 msec\n")
        self.assertAlmostEqual(stats.parse_redis_rps(text), 2 / (1 / 100000 + 1 / 50000))
        self.assertIsNone(stats.parse_redis_rps("Could not connect\n"))

    def test_callgrind(self):
        self.assertEqual(stats.parse_callgrind_total("events: Ir\nsummary: 12345\n"), 12345)
        self.assertEqual(stats.parse_callgrind_total("totals: 77\n"), 77)
        self.assertIsNone(stats.parse_callgrind_total("events: Ir\n"))
        self.assertEqual(stats.per_step(1000, 1500, 10), 50)

    def test_time_report(self):
        self.assertEqual(stats.parse_time_report("2048 0\n"), (2048, None, 0))
        self.assertEqual(stats.parse_time_report("Command exited with non-zero status 3\n900 3\n"),
                         (900, None, 3))
        self.assertEqual(stats.parse_time_report("Command terminated by signal 11\n1432 0\n"),
                         (1432, 11, None))
        self.assertEqual(stats.parse_time_report(""), (None, None, None))

    def test_classify(self):
        self.assertEqual(stats.classify_child(None, 0), ("OK", ""))
        self.assertEqual(stats.classify_child(None, 2), ("FAIL", "exit status 2"))
        self.assertEqual(stats.classify_child(11, None), ("CRASH", "SIGSEGV"))
        self.assertEqual(stats.classify_child(None, 0, True)[0], "TIMEOUT")
        self.assertEqual(stats.classify(6), ("CRASH", "SIGABRT"))  # raw wait status
        self.assertEqual(stats.classify(3 << 8), ("FAIL", "exit status 3"))


class Statistics(unittest.TestCase):
    def test_median(self):
        self.assertEqual(stats.median([3, 1, 2]), 2)
        self.assertEqual(stats.median([4, 1, 2, 3]), 2.5)
        self.assertEqual(stats.median([None, 5]), 5)
        self.assertIsNone(stats.median([]))

    def test_geomean_and_ratio(self):
        self.assertAlmostEqual(stats.geomean([1, 4]), 2)
        self.assertAlmostEqual(stats.geomean([2, None, 8]), 4)
        self.assertIsNone(stats.geomean([None]))
        self.assertEqual(stats.ratio(3, 2), 1.5)
        self.assertIsNone(stats.ratio(None, 2))
        self.assertIsNone(stats.ratio(1, 0))

    def test_worst_status_and_reference(self):
        self.assertEqual(stats.worst_status(["OK", "FAIL", "OK"]), "FAIL")
        self.assertEqual(stats.worst_status(["FAIL", "CRASH"]), "CRASH")
        self.assertEqual(stats.reference_digest({"glibc": ["a"], "x": ["b", "b"]}, "glibc"), "a")
        self.assertEqual(stats.reference_digest({"glibc": [], "x": ["b"], "y": ["b", "c"]}, "glibc"), "b")
        self.assertIsNone(stats.reference_digest({"x": []}, "glibc"))

    def test_format_duration(self):
        self.assertEqual(stats.format_duration(75), "1:15")
        self.assertEqual(stats.format_duration(3725), "1:02:05")


def ok(wall, rss=1000, result=None, digest=None):
    return Run("OK", "", wall, wall, rss, result=result, unit="ops/s" if result else "",
               digest=digest)


class Document(unittest.TestCase):
    def make(self):
        raw = {
            "a": {"glibc": [ok(2.0, 100, 5), ok(4.0, 300, 7), ok(3.0, 200, 6)],
                  "pm": [ok(1.0, 100, 9), ok(1.5, 100, 9), ok(2.0, 100, 9)]},
            "b": {"glibc": [ok(1.0, digest="x"), ok(1.0, digest="x")],
                  "pm": [ok(0.5, digest="x"), Run("CRASH", "SIGSEGV", 0.1, 0.1, 5)]},
            "c": {"glibc": [ok(1.0, digest="same")], "pm": [ok(1.0, digest="other")]},
        }
        return summary.build(raw, ["a", "b", "c"], ["pm", "glibc"], "glibc", {"c"}, {"rounds": 3})

    def test_cells(self):
        doc = self.make()
        a = doc["cells"]["a"]
        self.assertEqual(a["glibc"]["wall_s"], 3.0)
        self.assertEqual(a["glibc"]["rss_kb"], 200)
        self.assertEqual(a["pm"]["time_ratio"], 0.5)
        self.assertEqual(a["pm"]["rss_ratio"], 0.5)
        self.assertEqual(a["pm"]["result"], 9)

    def test_failure_is_never_averaged(self):
        doc = self.make()
        b = doc["cells"]["b"]["pm"]
        self.assertEqual((b["status"], b["detail"], b["rounds_ok"]), ("CRASH", "SIGSEGV", 1))
        self.assertIsNone(b["wall_s"])
        c = doc["cells"]["c"]["pm"]
        self.assertEqual(c["status"], "FAIL")
        self.assertIn("output differs", c["detail"])
        self.assertEqual(doc["geomean"]["pm"]["workloads"], 1)
        self.assertAlmostEqual(doc["geomean"]["pm"]["time_ratio"], 0.5)
        self.assertEqual(len(summary.failures(doc)), 2)

    def test_geomean_only_over_workloads_every_allocator_completed(self):
        # pm failed b and c: glibc's figure must not take them in either,
        # or an allocator would gain by crashing on its slowest workloads.
        doc = self.make()
        for a in ("pm", "glibc"):
            self.assertEqual((doc["geomean"][a]["workloads"], doc["geomean"][a]["of"]), (1, 3))
        self.assertIn("geomean over the 1 of 3 workloads that every allocator completed", report.table(doc))

    def test_chart_data_quotes_workload_names(self):
        doc = self.make()
        doc["cells"] = {"my prog_v2": doc["cells"]["a"]}
        doc["workloads"] = ["my prog_v2"]
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.dat")
            charts.data_file(doc, "time_ratio", path)
            with open(path) as f:
                rows = f.read().splitlines()
        self.assertTrue(rows[1].startswith('"my prog_v2" '))
        self.assertEqual(len(shlex.split(rows[1])), 1 + len(doc["allocators"]))

    def test_table_and_files(self):
        doc = self.make()
        text = report.table(doc)
        lines = text.splitlines()
        self.assertIn("pm", lines[0])
        self.assertTrue(any(l.startswith("b ") and "CRASH SIGSEGV" in l for l in lines))
        self.assertTrue(any(l.startswith("geomean") for l in lines))
        self.assertIn("a (ops/s)", report.figures_table(doc))
        with tempfile.TemporaryDirectory() as d:
            report.write_csv(doc, os.path.join(d, "r.csv"))
            report.write_json(doc, os.path.join(d, "r.json"))
            with open(os.path.join(d, "r.csv")) as f:
                rows = list(csv.DictReader(f))
            with open(os.path.join(d, "r.json")) as f:
                back = json.load(f)
        self.assertEqual(len(rows), 6)
        self.assertEqual(rows[0]["workload"], "a")
        self.assertEqual(back["cells"]["b"]["pm"]["status"], "CRASH")


class Choosing(unittest.TestCase):
    def test_missing_baseline_is_skipped_unless_named(self):
        notes = []
        extra = {"jemalloc": "/nonexistent/libjemalloc.so"}
        got = allocators.choose(["glibc", "jemalloc"], False, "/x.so", False, extra, notes.append)
        self.assertEqual([a.name for a in got], ["glibc"])
        self.assertIn("jemalloc", notes[0])
        with self.assertRaises(allocators.SetupError):
            allocators.choose(["glibc", "jemalloc"], True, "/x.so", False, extra, notes.append)

    def test_library_under_a_path_with_a_space_is_reached_by_a_link(self):
        with tempfile.TemporaryDirectory() as d:
            odd = os.path.join(d, "a dir:x")
            os.mkdir(odd)
            lib = os.path.join(odd, "lib.so")
            open(lib, "w").close()
            link = allocators.preloadable(lib)
            self.assertFalse(any(c in link for c in " :"))
            self.assertEqual(os.path.realpath(link), os.path.realpath(lib))
            plain = os.path.join(d, "lib.so")
            self.assertEqual(allocators.preloadable(plain), plain)

    def test_poolmalloc_library(self):
        with self.assertRaises(allocators.SetupError):
            allocators.choose(["poolmalloc"], False, "/nonexistent.so", True, {}, print)
        with self.assertRaises(allocators.SetupError):
            allocators.choose(["nosuch"], False, "/x.so", False, {}, print)

    def test_env(self):
        env = allocators.Allocator("x", "/lib/x.so").env({"LD_PRELOAD": "/old.so", "A": "1"})
        self.assertEqual(env, {"LD_PRELOAD": "/lib/x.so", "A": "1"})
        self.assertNotIn("LD_PRELOAD", allocators.Allocator("glibc", None).env({"LD_PRELOAD": "y"}))


class Misc(unittest.TestCase):
    def test_sqlite_script(self):
        self.assertIn("x < 123", workloads.sqlite_script(123))

    def test_extra_workloads_run_only_when_named(self):
        with tempfile.TemporaryDirectory() as tmp:
            default = [w.name for w in workloads.suite("/top", "/build", tmp, True, workloads.SUITE)]
            named = [w.name for w in workloads.suite("/top", "/build", tmp, True, ["churn", "midsize"])]
        self.assertNotIn("midsize", default)
        self.assertEqual(named, ["churn", "midsize"])
        self.assertIn("midsize", workloads.KNOWN)

    def test_progress_estimate(self):
        p = Progress(10, stream=io.StringIO())
        self.assertIsNone(p.estimate_left())
        p.start_workload("a", 1, 2, 5)
        p.end_run(2.0)
        # 4 left here at 2 s, 5 in later workloads at the overall mean of 2 s.
        self.assertEqual(p.estimate_left(), 18.0)


class PairedRatios(unittest.TestCase):
    """scripts/paired-ratios on a made-up run whose rounds alternate between a
    fast and a slow machine: the per-round ratio sees through it, the ratio
    of medians does not."""

    def run_script(self, doc, *extra):
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "paired-ratios")
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "results.json"), "w") as f:
                json.dump(doc, f)
            return subprocess.run([sys.executable, script, d, *extra], capture_output=True, text=True)

    def doc(self):
        def runs(times):
            return {"runs": [{"status": "OK", "wall_s": t} for t in times]}
        # w1: b is 10 % faster than a in every round, and the machine's speed
        # halves in rounds 1, 3 and 4 for both. w2: b's runs are the same, but
        # the speed changes between the two runs of some rounds, so that a's
        # median is a fast run and b's a slow one.
        b = [0.9, 1.8, 0.9, 1.8, 1.8]
        return {"baseline": "a", "allocators": ["a", "b"], "workloads": ["w1", "w2"],
                "cells": {"w1": {"a": runs([1.0, 2.0, 1.0, 2.0, 2.0]), "b": runs(b)},
                          "w2": {"a": runs([1.0, 1.0, 2.0, 1.0, 2.0]), "b": runs(b)}}}

    def test_pairs_rounds(self):
        out = self.run_script(self.doc())
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = {l.split()[0]: l for l in out.stdout.splitlines()[2:]}
        # w1: both medians are slow runs, 1.8 / 2.0; paired 0.9 in every round.
        self.assertIn("0.900 / 0.900", lines["w1"])
        # w2: 1.8 / 1.0 by medians; per round 0.9, 1.8, 0.45, 1.8, 0.9.
        self.assertIn("1.800 / 0.900", lines["w2"])
        self.assertIn("/ 0.9000", lines["geomean"])

    def test_unknown_baseline(self):
        out = self.run_script(self.doc(), "nobody")
        self.assertEqual(out.returncode, 2)
        self.assertIn("no allocator 'nobody'", out.stderr)


class GlibcBaseline(unittest.TestCase):
    def test_glibc_serves_malloc_in_a_program_linked_with_jemalloc(self):
        # Debian's redis-server links libjemalloc; under the glibc baseline
        # its malloc must still bind to the C library.
        alloc = allocators.Allocator("glibc", allocators.BASELINES["glibc"])
        env = alloc.env(dict(os.environ, LD_DEBUG="bindings"))
        proc = subprocess.run(["/usr/bin/redis-server", "--version"], env=env,
                              capture_output=True, text=True, check=True)
        binds = [l for l in proc.stderr.splitlines() if "normal symbol `malloc'" in l]
        self.assertTrue(binds)
        for line in binds:
            self.assertIn("to /lib/x86_64-linux-gnu/libc.so.6", line.replace("/usr/lib/", "/lib/"))


if __name__ == "__main__":
    unittest.main()
