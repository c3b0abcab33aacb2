"""Command line of scripts/compare: set-up, the run loop, and the reports.
Exit status: 0 all cells OK, 1 some cell failed, 2 set-up or usage error."""
import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import tempfile

from . import allocators, charts, instructions, report, runner, summary, workloads
from .progress import Progress

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def warn(msg):
    print(f"compare: {msg}", file=sys.stderr, flush=True)


def parse_args(argv):
    command, dashes = [], "--" in argv
    if dashes:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(
        prog="scripts/compare",
        usage="scripts/compare [options] [-- COMMAND ARGS...]",
        description="Run the workload suite (or COMMAND) under poolmalloc and other allocators "
                    "and report median wall time, CPU time and peak RSS.",
        epilog="Exit status: 0 every run passed, 1 some cell failed or crashed, "
               "2 set-up or usage error. Results go to results.csv, results.json, "
               "table.txt, time.png and rss.png in the output directory.")
    p.add_argument("--allocators", help="comma list, default: " + ",".join(allocators.DEFAULT_ORDER))
    p.add_argument("--workloads", help="comma list of built-in workloads (see --list)")
    p.add_argument("--rounds", type=int, help="rounds per cell; default 5, 1 with --quick")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--out", help="output directory, default out/compare-<date>")
    p.add_argument("--lib", help="poolmalloc library (default build/preload/libpoolmalloc.so)")
    p.add_argument("--baseline", action="append", default=[], metavar="NAME=PATH",
                   help="add an allocator, or override a baseline's library")
    p.add_argument("--build", default=os.environ.get("POOLMALLOC_BUILD", os.path.join(TOP, "build")),
                   help="meson build directory holding bench/")
    p.add_argument("--no-setup", action="store_true", help="skip scripts/setup (use the build as is)")
    p.add_argument("--timeout", type=float, help="seconds per run before it is killed (300; 60 quick)")
    p.add_argument("--check-output", action="store_true",
                   help="with -- COMMAND: its stdout must be the same under every allocator")
    p.add_argument("--instructions", action="store_true",
                   help="count instructions per malloc+free pair with callgrind instead")
    p.add_argument("--list", action="store_true", help="list the built-in workloads and exit")
    args = p.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        p.error("--rounds must be at least 1")
    if dashes and not command:
        p.error("no COMMAND after --")
    if command and args.workloads:
        p.error("--workloads and -- COMMAND exclude each other")
    args.command = command
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.timeout = args.timeout or (60 if args.quick else 300)
    return args


def compile_targets(build, targets):
    return subprocess.run(["meson", "compile", "-C", build] + targets,
                          capture_output=True, text=True, check=False).returncode == 0


def setup(build):
    """scripts/setup. When the whole tree does not build (say, a test is
    broken), builds just the bench programs and the library so the
    comparison can still run. Returns False when the poolmalloc library
    itself did not build: the file on disk, if any, is then stale."""
    env = dict(os.environ, POOLMALLOC_BUILD=build)
    proc = subprocess.run([os.path.join(TOP, "scripts", "setup")], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return True
    if not compile_targets(build, [f"bench/{n}" for n in workloads.BENCH_PROGRAMS + workloads.EXTRA_PROGRAMS + ["pairs"]]):
        sys.stderr.write(proc.stdout + proc.stderr)
        raise allocators.SetupError("scripts/setup failed (output above)")
    fresh = compile_targets(build, ["preload/poolmalloc"])
    warn("scripts/setup failed; built only the bench programs"
         + (" and the library" if fresh else " (the poolmalloc library does not build)")
         + ":\n" + proc.stderr.strip()[-600:])
    return fresh


def host_info():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release()}


def pick_workloads(args, tmpdir):
    if args.command:
        name = os.path.basename(args.command[0])
        return [workloads.Command(name, args.command, check_output=args.check_output)]
    names = args.workloads.split(",") if args.workloads else workloads.SUITE
    unknown = [n for n in names if n not in workloads.KNOWN]
    if unknown:
        raise allocators.SetupError(f"unknown workload(s) {', '.join(unknown)}; see --list")
    chosen = []
    for w in workloads.suite(TOP, args.build, tmpdir, args.quick, names):
        why = w.missing()
        if why and args.workloads:
            raise allocators.SetupError(f"workload {w.name}: {why}")
        if why:
            warn(f"skipping workload {w.name}: {why}")
        else:
            chosen.append(w)
    return chosen


def save_log(outdir, w, alloc, round_no, run):
    logs = os.path.join(outdir, "logs")
    os.makedirs(logs, exist_ok=True)
    with open(os.path.join(logs, f"{w}.{alloc}.{round_no}.log"), "w") as f:
        f.write(f"status: {run.status} {run.detail}\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}")


class Interrupted(Exception):
    """Ctrl-C during the runs: `raw` holds the workloads finished before it."""

    def __init__(self, raw):
        super().__init__("interrupted")
        self.raw = raw


def run_all(args, allocs, chosen, base_env, outdir):
    """{workload: {allocator: [Run]}}; rounds alternate the allocator order
    so slow drift of the machine hits every allocator alike. Interrupted
    raised on Ctrl-C, with the workloads whose rounds were all run."""
    raw = {w.name: {a.name: [] for a in allocs} for w in chosen}
    progress = Progress(len(chosen) * len(allocs) * args.rounds)
    finished = []
    try:
        for i, w in enumerate(chosen, 1):
            progress.start_workload(w.name, i, len(chosen), len(allocs) * args.rounds)
            for r in range(args.rounds):
                for alloc in allocs if r % 2 == 0 else allocs[::-1]:
                    runs = raw[w.name][alloc.name]
                    if runs and runs[-1].status != "OK":
                        progress.end_run(0)  # a failed cell is not run again
                        continue
                    progress.start_run(alloc.name, r + 1, args.rounds)
                    run = w.run(alloc, base_env, args.timeout)
                    progress.end_run(run.wall)
                    runs.append(run)
                    if run.status != "OK":
                        save_log(outdir, w.name, alloc.name, r + 1, run)
            finished.append(w.name)
    except KeyboardInterrupt:
        progress.finish()
        raise Interrupted({name: raw[name] for name in finished})
    progress.finish()
    return raw


def resolve_allocators(args, fresh):
    extra = {}
    for item in args.baseline:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise allocators.SetupError(f"--baseline wants NAME=PATH, got {item!r}")
        extra[name] = path
    names = args.allocators.split(",") if args.allocators else (
        allocators.DEFAULT_ORDER + [n for n in extra if n not in allocators.DEFAULT_ORDER])
    if not fresh and not args.lib and "poolmalloc" in names:
        if args.allocators:
            raise allocators.SetupError("poolmalloc was asked for but its library does not build")
        warn("skipping poolmalloc: its library does not build")
        names = [n for n in names if n != "poolmalloc"]
    lib = args.lib or os.path.join(args.build, "preload", "libpoolmalloc.so")
    return allocators.choose(names, bool(args.allocators), lib, bool(args.lib), extra, warn)


def main(argv):
    args = parse_args(argv)
    if args.list:
        print("\n".join(workloads.SUITE))
        print("\n".join(f"{n} (only with --workloads)" for n in workloads.EXTRA_PROGRAMS))
        return 0
    try:
        if not os.access(runner.TIME, os.X_OK):
            raise allocators.SetupError(f"{runner.TIME} is needed (Debian package time)")
        fresh = args.no_setup or setup(args.build)
        allocs = resolve_allocators(args, fresh)
        base_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        for alloc in allocs:
            allocators.verify_loaded(alloc, base_env)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        outdir = os.path.abspath(args.out or os.path.join(TOP, "out", f"compare-{stamp}"))
        try:
            os.makedirs(outdir, exist_ok=True)
            with tempfile.TemporaryFile(dir=outdir):
                pass
        except OSError as e:
            raise allocators.SetupError(f"--out {outdir}: {e.strerror}")
        with tempfile.TemporaryDirectory(prefix="compare-") as tmpdir:
            if args.instructions:
                return count_instructions(args, allocs, base_env, outdir, tmpdir)
            chosen = pick_workloads(args, tmpdir)
            if not chosen:
                raise allocators.SetupError("no workload left to run")
            interrupted = False
            try:
                raw = run_all(args, allocs, chosen, base_env, outdir)
            except Interrupted as e:
                if not e.raw:
                    raise KeyboardInterrupt from None
                print(f"\ncompare: interrupted; reporting the {len(e.raw)} workload(s) finished before it",
                      file=sys.stderr)
                raw, interrupted = e.raw, True
                chosen = [w for w in chosen if w.name in raw]
    except allocators.SetupError as e:
        print(f"compare: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncompare: interrupted", file=sys.stderr)
        return 130
    names = [a.name for a in allocs]
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": shlex.join(["scripts/compare"] + argv), "rounds": args.rounds,
            "quick": args.quick, "interrupted": interrupted, "host": host_info(),
            "libraries": {a.name: a.lib for a in allocs}}
    doc = summary.build(raw, [w.name for w in chosen], names,
                        "glibc" if "glibc" in names else names[0],
                        {w.name for w in chosen if w.check_output}, meta)
    for w, by_alloc in raw.items():  # runs the output check failed after the fact
        for a, runs in by_alloc.items():
            for i, r in enumerate(runs, 1):
                if r.detail.startswith("output differs"):
                    save_log(outdir, w, a, i, r)
    status = write_reports(doc, outdir)
    return 130 if interrupted else status


def write_reports(doc, outdir):
    text = report.table(doc)
    figures = report.figures_table(doc)
    print(text + ("\n\n" + figures if figures else ""))
    with open(os.path.join(outdir, "table.txt"), "w") as f:
        f.write(text + "\n\n" + figures + "\n")
    report.write_csv(doc, os.path.join(outdir, "results.csv"))
    report.write_json(doc, os.path.join(outdir, "results.json"))
    if any(c["time_ratio"] for row in doc["cells"].values() for c in row.values()):
        charts.draw(doc, outdir, warn)
    else:
        warn("no charts: no cell has a time to plot")
    bad = summary.failures(doc)
    for w, a, status, detail in bad:
        print(f"{status}: {w} under {a}: {detail} (log in {outdir}/logs)")
    print(f"results in {outdir}")
    return 1 if bad else 0


def count_instructions(args, allocs, base_env, outdir, tmpdir):
    pairs = os.path.join(args.build, "bench", "pairs")
    if not os.access(pairs, os.X_OK):
        raise allocators.SetupError(f"{pairs} is not built")
    table = instructions.measure(allocs, pairs, base_env, tmpdir, 20000 if args.quick else 200000)
    text = instructions.render(table)
    print(text)
    report.write_json({"instructions_per_step": table}, os.path.join(outdir, "instructions.json"))
    with open(os.path.join(outdir, "instructions.txt"), "w") as f:
        f.write(text + "\n")
    return 1 if "ERROR" in text else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
