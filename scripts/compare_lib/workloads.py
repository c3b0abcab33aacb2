"""The built-in suite: the bench/ programs, real programs from Debian
packages, and a user's own command. Each workload runs once per call under
one allocator and returns a runner.Run."""
import dataclasses
import hashlib
import os
import shutil

from . import runner

BENCH_PROGRAMS = ["churn", "lifo", "larson", "prodcons", "threadchurn",
                  "falseshare", "large", "realloc", "frag", "powerlaw"]
REAL_PROGRAMS = ["python", "perl", "lua", "sqlite", "gxx", "redis"]
SUITE = BENCH_PROGRAMS + REAL_PROGRAMS
# Run only when named with --workloads: patterns the default suite's
# programs make too rarely to move its figures.
EXTRA_PROGRAMS = ["midsize"]
KNOWN = SUITE + EXTRA_PROGRAMS


@dataclasses.dataclass
class Command:
    name: str
    argv: list
    env: dict = dataclasses.field(default_factory=dict)
    check_output: bool = False  # every allocator must print the same
    output_file: str | None = None  # compare this file instead of stdout

    def missing(self):
        """Why this cannot run here, or None."""
        exe = self.argv[0]
        if os.sep in exe:
            return None if os.access(exe, os.X_OK) else f"{exe} not found"
        return None if shutil.which(exe) else f"{exe} not found on PATH"

    def run(self, alloc, base_env, timeout):
        env = alloc.env(base_env)
        env.update(self.env)
        if self.output_file and os.path.exists(self.output_file):
            os.remove(self.output_file)  # a stale file must not pass the check
        result = runner.run(self.argv, env, timeout)
        if result.status == "OK" and self.check_output:
            result.digest = digest(result, self.output_file)
        return result


def digest(result, output_file):
    if output_file is None:
        return hashlib.sha256(result.stdout.encode()).hexdigest()
    try:
        with open(output_file, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return "missing output file"


def sqlite_script(rows):
    """Inserts, an index, updates and aggregate queries on generated rows."""
    return f"""
CREATE TABLE item(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, price REAL, note TEXT);
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {rows})
INSERT INTO item SELECT x, printf('item-%08x', (x * 2654435761) % 4294967296), x % 97,
  (x * 37 % 1000) / 10.0, printf('%.*c', x % 200, 'n') FROM n;
CREATE INDEX item_name ON item(name);
CREATE INDEX item_grp ON item(grp, price);
UPDATE item SET note = note || name WHERE grp % 3 = 0;
SELECT grp, count(*), round(sum(price), 1), max(length(note)) FROM item GROUP BY grp ORDER BY grp;
SELECT name FROM item WHERE name > 'item-8' ORDER BY name LIMIT 20;
SELECT count(*) FROM item a JOIN item b ON a.grp = b.grp AND b.id = a.id + 97;
SELECT group_concat(name, ',') FROM (SELECT name FROM item ORDER BY price DESC, id LIMIT 50);
DELETE FROM item WHERE grp < 50;
SELECT count(*), sum(length(note)) FROM item;
"""


def suite(top, build, tmpdir, quick, names):
    """Workloads of the built-in suite named in names, in suite order."""
    from . import redis  # keeps the server's start/stop code apart
    quick_arg = ["--quick"] if quick else []
    real = os.path.join(top, "bench", "real")
    sql = os.path.join(tmpdir, "bench.sql")
    with open(sql, "w") as f:
        f.write(sqlite_script(2000 if quick else 120000))
    made = {name: Command(name, [os.path.join(build, "bench", name)] + quick_arg)
            for name in BENCH_PROGRAMS + EXTRA_PROGRAMS}
    made.update({
        # PYTHONMALLOC=malloc: objects come from malloc, not pymalloc's arenas.
        "python": Command("python", ["/usr/bin/python3", os.path.join(real, "objects.py"),
                                     "1" if quick else "15"],
                          {"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0"}, True),
        "perl": Command("perl", ["/usr/bin/perl", os.path.join(real, "hashes.pl"),
                                 "1" if quick else "12"], {}, True),
        "lua": Command("lua", ["/usr/bin/lua5.4", os.path.join(real, "tables.lua")]
                       + (["1", "8000"] if quick else ["4", "50000"]), {}, True),
        "sqlite": Command("sqlite", ["/usr/bin/sqlite3", ":memory:", f".read {sql}"], {}, True),
        "gxx": Command("gxx", ["/usr/bin/g++", "-std=c++20", "-O1", "-frandom-seed=poolmalloc"]
                       + (["-DSMALL"] if quick else [])
                       + ["-c", os.path.join(real, "stl_heavy.cpp"), "-o",
                          os.path.join(tmpdir, "stl_heavy.o")],
                       {}, True, os.path.join(tmpdir, "stl_heavy.o")),
        "redis": redis.Redis(tmpdir, 1000 if quick else 5000),
    })
    return [made[n] for n in KNOWN if n in names]
