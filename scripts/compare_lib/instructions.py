"""Instructions per malloc+free pair under callgrind, for each allocator:
bench/pairs runs with N and 2N steps and the difference over N removes
start-up and set-up. Two loops: malloc(32)/free and a mixed-size ring."""
import os
import subprocess

from . import stats

LOOPS = [("malloc(32)+free", []), ("mixed ring step", ["--mixed"])]


def callgrind_total(pairs, extra, steps, alloc, base_env, tmpdir):
    out = os.path.join(tmpdir, f"callgrind.{alloc.name}.{steps}{''.join(extra)}")
    proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", pairs,
                           "--steps", str(steps)] + extra,
                          env=alloc.env(base_env), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"valgrind failed for {alloc.name}: {proc.stderr.strip()[-400:]}")
    with open(out) as f:
        total = stats.parse_callgrind_total(f.read())
    if total is None:
        raise RuntimeError(f"no instruction total in {out}")
    return total


def measure(allocators, pairs, base_env, tmpdir, steps):
    """{allocator: {loop label: instructions per step or error text}}."""
    table = {}
    for alloc in allocators:
        row = {}
        for label, extra in LOOPS:
            try:
                one = callgrind_total(pairs, extra, steps, alloc, base_env, tmpdir)
                two = callgrind_total(pairs, extra, 2 * steps, alloc, base_env, tmpdir)
                row[label] = round(stats.per_step(one, two, steps), 1)
            except RuntimeError as e:
                row[label] = f"error: {e}"
        table[alloc.name] = row
    return table


def render(table):
    labels = [label for label, _ in LOOPS]
    name_w = max(len(a) for a in table) + 2
    lines = ["Instructions per step (callgrind; includes a few loop instructions)",
             f"{'allocator':<{name_w}}" + "".join(f"{label:>18}" for label in labels)]
    for alloc, row in table.items():
        cells = [row[label] if isinstance(row[label], float) else "ERROR" for label in labels]
        lines.append(f"{alloc:<{name_w}}" + "".join(f"{c:>18}" for c in cells))
    errors = [f"{a}: {v}" for a, row in table.items() for v in row.values() if isinstance(v, str)]
    return "\n".join(lines + errors)
