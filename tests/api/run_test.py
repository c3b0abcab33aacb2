"""scripts/poolmalloc-run: the program runs with the library preloaded, a
program named like an option is run as a program (never read as an option of
the shell's exec), and a library path ld.so cannot preload is refused.
Usage: run_test.py SCRIPT LIB"""
import os
import subprocess
import sys
import tempfile

SCRIPT, LIB = sys.argv[1:3]
failures = []


def run(args, lib=LIB, path=None):
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "POOLMALLOC_BUILD")}
    env["POOLMALLOC_LIB"] = lib
    if path:
        env["PATH"] = path + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    return subprocess.run([SCRIPT, *args], env=env, capture_output=True, text=True, timeout=30)


r = run(["sh", "-c", 'echo "$LD_PRELOAD"'])
if r.returncode != 0 or r.stdout.strip() != LIB:
    failures.append(f"sh: exit {r.returncode}, LD_PRELOAD {r.stdout.strip()!r}, expected {LIB!r}: {r.stderr}")

with tempfile.TemporaryDirectory() as tmp:
    prog = os.path.join(tmp, "-x")
    with open(prog, "w") as f:
        f.write('#!/bin/sh\necho "$LD_PRELOAD"\n')
    os.chmod(prog, 0o755)
    r = run(["-x"], path=tmp)
    if r.returncode != 0 or r.stdout.strip() != LIB:
        failures.append(f"-x: exit {r.returncode}, LD_PRELOAD {r.stdout.strip()!r}, expected {LIB!r}: {r.stderr}")

    # No such programs: the status of a command not found, and nothing run in their place.
    for args in (["--help"], ["-h"], ["-c", "/bin/sh", "-c", 'echo "$LD_PRELOAD"']):
        r = run(args, path=tmp)
        if r.returncode != 127 or r.stdout or "not found" not in r.stderr:
            failures.append(f"{args}: exit {r.returncode}, expected 127 with nothing run: {r.stdout}{r.stderr}")

    spaced = os.path.join(tmp, "with space")
    os.mkdir(spaced)
    os.symlink(LIB, os.path.join(spaced, "libpoolmalloc.so"))
    r = run(["sh", "-c", "echo ran"], lib=os.path.join(spaced, "libpoolmalloc.so"))
    if r.returncode != 2 or r.stdout or "ld.so cannot preload a path with a space or a colon" not in r.stderr:
        failures.append(f"library path with a space: exit {r.returncode}: {r.stdout}{r.stderr}")

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
