"""Whole runs of scripts/compare in --quick mode: the report files, the
table, and the error paths (bad library, crashing command, missing
baseline, output that differs). Uses the build in $POOLMALLOC_BUILD (or
build/) as it is; poolmalloc joins when its library has been built."""
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest

TOP = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("POOLMALLOC_BUILD", os.path.join(TOP, "build"))
COMPARE = os.path.join(TOP, "scripts", "compare")
sys.path.insert(0, os.path.join(TOP, "scripts"))
from compare_lib import workloads  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAVE_POOLMALLOC = os.path.isfile(os.path.join(BUILD, "preload", "libpoolmalloc.so"))
ALLOCS = (["poolmalloc"] if HAVE_POOLMALLOC else []) + ["glibc", "jemalloc"]


def compare(*args):
    return subprocess.run([COMPARE, "--no-setup", "--build", BUILD, "--quick", *args],
                          capture_output=True, text=True, timeout=240, check=False)


class FullQuickRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = os.path.join(cls.tmp.name, "out")
        cls.proc = compare("--allocators", ",".join(ALLOCS), "--out", cls.out)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_runs(self):
        # 1 is allowed: poolmalloc failing a workload is its bug, not this tool's.
        self.assertIn(self.proc.returncode, (0, 1), self.proc.stderr)

    def test_table(self):
        lines = self.proc.stdout.splitlines()
        for a in ALLOCS:
            self.assertIn(a, lines[0])
        for w in workloads.SUITE:
            self.assertTrue(any(l.startswith(w + " ") for l in lines), f"no row for {w}")
        self.assertTrue(any(l.startswith("geomean") for l in lines))

    def test_csv_and_json(self):
        with open(os.path.join(self.out, "results.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual(len(rows), len(workloads.SUITE) * len(ALLOCS))
        with open(os.path.join(self.out, "results.json")) as f:
            doc = json.load(f)
        self.assertEqual(doc["allocators"], ALLOCS)
        self.assertEqual(doc["workloads"], workloads.SUITE)
        for w in workloads.SUITE:
            for base in ("glibc", "jemalloc"):
                cell = doc["cells"][w][base]
                self.assertEqual(cell["status"], "OK", f"{w} under {base}: {cell['detail']}")
                self.assertGreater(cell["wall_s"], 0)
                self.assertGreater(cell["rss_kb"], 0)
        self.assertIsNotNone(doc["cells"]["churn"]["glibc"]["result"])
        self.assertIsNotNone(doc["cells"]["redis"]["glibc"]["result"])

    def test_charts_are_png(self):
        for name in ("time.png", "rss.png"):
            with open(os.path.join(self.out, name), "rb") as f:
                self.assertEqual(f.read(8), PNG_MAGIC, name)


class ErrorPaths(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.tmp.name, "out")

    def tearDown(self):
        self.tmp.cleanup()

    def test_wrong_library_is_an_error(self):
        proc = compare("--lib", "/nonexistent.so", "--workloads", "churn", "--out", self.out)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("/nonexistent.so does not exist", proc.stderr)

    def test_library_that_does_not_load_is_an_error(self):
        proc = compare("--allocators", "glibc,bogus", "--baseline", "bogus=/etc/hostname",
                       "--workloads", "churn", "--out", self.out)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("was not loaded", proc.stderr)

    def test_crash_is_shown(self):
        proc = compare("--allocators", "glibc,jemalloc", "--out", self.out,
                       "--", "sh", "-c", "kill -SEGV $$")
        self.assertEqual(proc.returncode, 1)
        row = next(l for l in proc.stdout.splitlines() if l.startswith("sh "))
        self.assertEqual(row.count("CRASH SIGSEGV"), 2)

    def test_missing_baseline_is_skipped_with_a_message(self):
        proc = compare("--baseline", "jemalloc=/nonexistent/libjemalloc.so",
                       "--workloads", "churn", "--out", self.out)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("jemalloc: library /nonexistent/libjemalloc.so does not exist; skipping",
                      proc.stderr)
        self.assertNotIn("jemalloc", proc.stdout.splitlines()[0])
        self.assertIn("glibc", proc.stdout.splitlines()[0])

    def test_missing_baseline_named_explicitly_is_an_error(self):
        proc = compare("--allocators", "glibc,jemalloc", "--baseline",
                       "jemalloc=/nonexistent/libjemalloc.so", "--workloads", "churn",
                       "--out", self.out)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("/nonexistent/libjemalloc.so", proc.stderr)

    def test_differing_output_fails(self):
        proc = compare("--allocators", "glibc,jemalloc", "--check-output", "--out", self.out,
                       "--", "sh", "-c", 'echo "$LD_PRELOAD"')
        self.assertEqual(proc.returncode, 1)
        self.assertIn("FAIL: sh under jemalloc: output differs from glibc", proc.stdout)

    def test_ctrl_c_reports_the_workloads_finished(self):
        proc = subprocess.Popen([COMPARE, "--no-setup", "--build", BUILD, "--quick", "--allocators", "glibc",
                                 "--workloads", "churn,lifo,larson", "--rounds", "2", "--out", self.out],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:  # one line per workload as it starts (stderr is no terminal)
            if line.startswith("compare: lifo"):
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 130, err)
        self.assertIn("reporting the 1 workload(s) finished", err)
        rows = [l.split()[0] for l in out.splitlines()[3:] if l and not l.startswith(("-", "geomean"))]
        self.assertIn("churn", rows)
        self.assertNotIn("larson", rows)
        with open(os.path.join(self.out, "results.json")) as f:
            self.assertEqual(json.load(f)["workloads"], ["churn"])

    def test_instruction_counts(self):
        proc = compare("--instructions", "--allocators", "glibc", "--out", self.out)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        row = next(l for l in proc.stdout.splitlines() if l.startswith("glibc"))
        counts = [float(x) for x in row.split()[1:]]
        self.assertEqual(len(counts), 2)
        self.assertTrue(all(10 < c < 2000 for c in counts), row)


if __name__ == "__main__":
    unittest.main()
