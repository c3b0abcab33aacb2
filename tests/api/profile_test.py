"""scripts/poolmalloc-profile end to end: tables, JSON profile, PNG charts,
the program's exit status, the output directories and libraries it refuses
before running anything, and its temporary directory removed in every case.
Usage: profile_test.py SCRIPT LIB PROGRAM"""
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

SCRIPT, LIB, PROG = sys.argv[1:4]
failures = []


def profile(args, tmp):
    """Runs the script with TMPDIR=tmp, and checks that it left no temporary directory there."""
    r = subprocess.run([sys.executable, SCRIPT, *args], env=dict(os.environ, TMPDIR=tmp),
                       capture_output=True, text=True, timeout=60)
    left = [n for n in os.listdir(tmp) if n.startswith("poolmalloc-profile.")]
    if left:
        failures.append(f"{args}: temporary directories left behind: {left}")
    for n in left:
        shutil.rmtree(os.path.join(tmp, n))
    return r


with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as out:
    r = profile(["--lib", LIB, "-o", out, "--interval", "1", PROG, "work", "7"], tmp)
    if r.returncode != 7:
        failures.append(f"exit status {r.returncode}, expected the program's 7: {r.stderr}")
    for text in ("Request sizes", "Peak live bytes by size class", "cross-thread frees", "reallocs 50",
                 "Live bytes over time", "Leak summary: ", "       112         10 blocks"):
        if text not in r.stderr:
            failures.append(f"report lacks {text!r}")
    with open(os.path.join(out, "profile.json")) as f:
        prof = json.load(f)
    samples = prof["profile"]["samples"]
    if not samples or any(len(s) != 2 for s in samples):
        failures.append(f"samples: {samples}")
    elif samples[-1][1] != prof["leaks"]["bytes"]:  # both at exit; a cached large block is not live
        failures.append(f"last sample {samples[-1]} against {prof['leaks']['bytes']} live bytes at exit")
    if prof["total"]["remote_frees"] < 500:
        failures.append(f"remote frees: {prof['total']}")
    for png in ("sizes.png", "peak_by_class.png", "live.png"):
        path = os.path.join(out, png)
        if not os.path.exists(path):
            failures.append(f"{png} missing")
            continue
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                failures.append(f"{png} is not a PNG")

# A profile cut short by the file size limit: the script says so and
# returns the program's status (or 1), with no traceback.
with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as out:
    r2 = subprocess.run([sys.executable, SCRIPT, "--lib", LIB, "-o", out, "--no-charts", PROG, "work", "7"],
                        env=dict(os.environ, TMPDIR=tmp), capture_output=True, text=True, timeout=60,
                        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024)))
    if r2.returncode != 7 or "unreadable" not in r2.stderr or "Traceback" in r2.stderr:
        failures.append(f"profile past the file size limit: exit {r2.returncode}, expected 7: {r2.stderr[-500:]}")

# A run longer than the sample table at 1 ms: the interval is the clock's
# tick at least (the allocator's clock moves by it), the table thins out and
# the interval doubles, and the profile says which interval its samples
# have; their times only go up.
tick = max(1, math.ceil(time.clock_getres(getattr(time, "CLOCK_MONOTONIC_COARSE", 6)) * 1000))
with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as out:
    lr = profile(["--lib", LIB, "-o", out, "--interval", "1", "--no-charts", PROG, "long"], tmp)
    with open(os.path.join(out, "profile.json")) as f:
        prof = json.load(f)["profile"]
    times = [s[0] for s in prof["samples"]]
    if lr.returncode != 0 or prof["interval_ms"] != 2 * tick or not 1024 <= len(times) <= 2049:
        failures.append(f"long run: exit {lr.returncode}, interval {prof['interval_ms']} (expected {2 * tick}), "
                        f"{len(times)} samples ending at {times[-1] if times else None} ms")
    elif min(b - a for a, b in zip(times[:-2], times[1:-1])) < 2 * tick:  # the last one is taken at exit
        failures.append(f"long run: samples closer than the {2 * tick} ms interval: {times[:20]}")
    if any(b <= a for a, b in zip(times, times[1:])):
        failures.append(f"long run: sample times not increasing: {times[-10:]}")

# Refused with one line and status 2, before the program runs (it would create the marker).
with tempfile.TemporaryDirectory() as tmp:
    marker = os.path.join(tmp, "ran")
    regular = os.path.join(tmp, "file")
    open(regular, "w").close()
    dangling = os.path.join(tmp, "dangling")
    os.symlink(os.path.join(tmp, "nowhere"), dangling)
    spaced = os.path.join(tmp, "with space")
    os.mkdir(spaced)
    os.symlink(LIB, os.path.join(spaced, "libpoolmalloc.so"))
    cases = [
        ("-o a regular file", ["--lib", LIB, "-o", regular], "not a directory"),
        ("-o under a regular file", ["--lib", LIB, "-o", os.path.join(regular, "out")], "is not a directory"),
        ("-o a dangling link", ["--lib", LIB, "-o", dangling], "not a directory"),
        ("--lib with a space", ["--lib", os.path.join(spaced, "libpoolmalloc.so")],
         "ld.so cannot preload a path with a space or a colon"),
    ]
    if os.geteuid() != 0:  # root writes into any directory
        locked = os.path.join(tmp, "locked")
        os.mkdir(locked, 0o500)
        cases.append(("-o a directory not writable", ["--lib", LIB, "-o", locked], "not writable"))
    for what, args, reason in cases:
        e = profile([*args, "--no-charts", "touch", marker], tmp)
        lines = e.stderr.splitlines()
        if e.returncode != 2 or len(lines) != 1 or not lines[0].startswith("poolmalloc-profile: ") \
                or reason not in lines[0]:
            failures.append(f"{what}: exit {e.returncode}, expected 2 and one line with {reason!r}: {e.stderr}")
        if os.path.exists(marker):
            failures.append(f"{what}: the program ran")
            os.unlink(marker)
    e = profile(["--lib", LIB, os.path.join(tmp, "no-such-program")], tmp)
    if e.returncode != 127 or "cannot run" not in e.stderr or "Traceback" in e.stderr:
        failures.append(f"missing program: exit {e.returncode}, expected 127: {e.stderr}")
    e = profile(["--lib", LIB, regular], tmp)  # not executable
    if e.returncode != 126 or "cannot run" not in e.stderr or "Traceback" in e.stderr:
        failures.append(f"program not executable: exit {e.returncode}, expected 126: {e.stderr}")
    for bad in ("0", "60001"):
        e = profile(["--lib", LIB, "--interval", bad, "touch", marker], tmp)
        if e.returncode != 2 or "--interval" not in e.stderr or os.path.exists(marker):
            failures.append(f"--interval {bad}: exit {e.returncode}, expected 2 before running: {e.stderr}")

for f in failures:
    print("FAIL:", f)
print(r.stderr[-3000:])
sys.exit(1 if failures else 0)
