"""scripts/poolmalloc-profile end to end: tables, JSON profile, PNG charts,
and the program's exit status.  Usage: profile_test.py SCRIPT LIB PROGRAM"""
import json
import os
import subprocess
import sys
import tempfile

SCRIPT, LIB, PROG = sys.argv[1:4]
failures = []

with tempfile.TemporaryDirectory() as out:
    r = subprocess.run([sys.executable, SCRIPT, "--lib", LIB, "-o", out, "--interval", "1", PROG, "work", "7"],
                       capture_output=True, text=True, timeout=60)
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

for f in failures:
    print("FAIL:", f)
print(r.stderr[-3000:])
sys.exit(1 if failures else 0)
