"""The preloaded library's reports: POOLMALLOC_STATS text and JSON at exit
with the leak summary, VERBOSE, RESERVE, bad values, malloc_info XML,
malloc_stats and mallinfo2.  Usage: preload_test.py LIB PROGRAM EXIT_FREE_PROGRAM"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import xml.dom.minidom

LIB, PROG, EXIT_FREE_PROG = sys.argv[1], sys.argv[2], sys.argv[3]
failures = []


def run(mode="work", **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("POOLMALLOC_")}
    e.update(env)
    e["LD_PRELOAD"] = LIB
    r = subprocess.run([PROG, mode], env=e, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        failures.append(f"{mode} {env}: exit {r.returncode}: {r.stderr}")
    return r


def check(cond, what):
    if not cond:
        failures.append(what)


def leaks_ok(d, what):
    by_size = {c["size"]: c["blocks"] for c in d["leaks"]["by_class"]}
    check(by_size.get(112, 0) >= 10, f"{what}: 10 leaked blocks of 100 bytes in class 112: {by_size}")
    check(d["leaks"]["large_blocks"] >= 1 and d["leaks"]["large_bytes"] >= 300000, f"{what}: large leak")
    check(d["total"]["remote_frees"] >= 500, f"{what}: 500 cross-thread frees: {d['total']}")
    check(d["total"]["reallocs"] >= 50, f"{what}: 50 reallocs: {d['total']}")


with tempfile.TemporaryDirectory() as tmp:
    r = run(POOLMALLOC_STATS="1")
    check("Leak summary (still live at exit): " in r.stderr, f"text report: {r.stderr[-2000:]}")
    check("OS memory: reserved" in r.stderr, "text report has OS memory")

    path = os.path.join(tmp, "stats.%p.json")
    r = run(POOLMALLOC_STATS="json:" + path)
    files = os.listdir(tmp)
    check(len(files) == 1 and files[0].startswith("stats.") and files[0] != "stats.%p.json", f"%p expanded: {files}")
    if files:
        with open(os.path.join(tmp, files[0])) as f:
            leaks_ok(json.load(f), "json:PATH")

    r = run(POOLMALLOC_STATS="json")
    leaks_ok(json.loads(r.stderr), "json on stderr")

    # The report comes after the libraries' destructors: the 7 blocks of
    # 500 bytes that one frees there are no leak.
    e = {k: v for k, v in os.environ.items() if not k.startswith("POOLMALLOC_")}
    e.update(LD_PRELOAD=LIB, POOLMALLOC_STATS="json")
    r = subprocess.run([EXIT_FREE_PROG], env=e, capture_output=True, text=True, timeout=30)
    check(r.returncode == 0, f"exit-free program: exit {r.returncode}: {r.stderr}")
    try:
        d = json.loads(r.stderr)
        by_size = {c["size"]: c["blocks"] for c in d["leaks"]["by_class"]}
        check(by_size.get(512, 0) == 0, f"blocks a library frees in its destructor reported as leaks: {by_size}")
        freed = [c for c in d["classes"] if c["size"] == 512]
        check(freed and freed[0]["frees"] >= 7, f"the library's 7 frees at exit counted: {freed}")
    except (ValueError, KeyError) as ex:
        failures.append(f"exit-free report: {ex}: {r.stderr[:500]}")

    # A report to a pipe whose reader is gone: the write fails, the program
    # keeps its exit status (SIGPIPE used to kill it).
    rd, wr = os.pipe()
    os.close(rd)
    e = {k: v for k, v in os.environ.items() if not k.startswith("POOLMALLOC_")}
    e.update(LD_PRELOAD=LIB, POOLMALLOC_STATS="1")
    r = subprocess.run([PROG, "work", "42"], env=e, stdout=subprocess.DEVNULL, stderr=wr, timeout=30)
    os.close(wr)
    check(r.returncode == 42, f"report into a closed pipe: exit {r.returncode}, the program's is 42")

    # A report past the file size limit: the write fails with a warning, the
    # program keeps its exit status (SIGXFSZ used to kill it).
    e = {k: v for k, v in os.environ.items() if not k.startswith("POOLMALLOC_")}
    e.update(LD_PRELOAD=LIB, POOLMALLOC_STATS="json:" + os.path.join(tmp, "limited.json"))
    r = subprocess.run([PROG, "work", "42"], env=e, capture_output=True, text=True, timeout=30,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512)))
    check(r.returncode == 42 and "could not write the whole POOLMALLOC_STATS report" in r.stderr,
          f"report past the file size limit: exit {r.returncode}, the program's is 42: {r.stderr}")

    # A program that closed stderr: the report file takes no standard
    # descriptor's number, so the warning meant for stderr (a profile that
    # cannot be opened) does not land in it.
    e = {k: v for k, v in os.environ.items() if not k.startswith("POOLMALLOC_")}
    e.update(LD_PRELOAD=LIB, POOLMALLOC_STATS="json:" + os.path.join(tmp, "nostderr.json"),
             POOLMALLOC_PROFILE=os.path.join(tmp, "no-such-dir", "p.json"))
    r = subprocess.run([PROG, "work", "0"], env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=30, preexec_fn=lambda: os.close(2))
    try:
        with open(os.path.join(tmp, "nostderr.json")) as f:
            leaks_ok(json.load(f), "json:PATH with stderr closed")
    except (OSError, ValueError) as ex:
        failures.append(f"report with stderr closed: {ex}")

    # "%p" expanded past 512 bytes (the path's own 255 at most): the whole
    # path, never one cut short. Each "%p"*12 directory exists (made in the
    # child before it runs the program, under its own pid) and is left by "..".
    seg = "%p" * 12 + "/../"
    value = os.path.join(tmp, seg * 8 + "final.json")
    check(len(value) <= 255, f"test premise: {len(value)} bytes")
    e = {k: v for k, v in os.environ.items() if not k.startswith("POOLMALLOC_")}
    e.update(LD_PRELOAD=LIB, POOLMALLOC_STATS="json:" + value)
    p = subprocess.Popen([PROG], env=e, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: os.makedirs(os.path.join(tmp, str(os.getpid()) * 12), exist_ok=True))
    _, err = p.communicate(timeout=30)
    check(os.path.exists(os.path.join(tmp, "final.json")),
          f"long %p path ({len(value.replace('%p', str(p.pid)))} bytes expanded) written in full: {os.listdir(tmp)} {err}")

    r = run(POOLMALLOC_VERBOSE="1", POOLMALLOC_RESERVE="256M")
    check("active in pid" in r.stderr and "POOLMALLOC_RESERVE=268435456" in r.stderr, f"verbose: {r.stderr}")

    r = run(POOLMALLOC_RESERVE="64M", POOLMALLOC_RESERVE_PREFAULT="1", POOLMALLOC_STATS="json")
    d = json.loads(r.stderr)
    check(d["os"]["segments"] >= 16, f"64M reserved as 16 segments: {d['os']}")
    check(d["os"]["resident_bytes"] >= 60 << 20, f"prefaulted reservation is resident: {d['os']}")
    r = run("trim", POOLMALLOC_RESERVE="64M", POOLMALLOC_RESERVE_PREFAULT="1", POOLMALLOC_STATS="json")
    d = json.loads(r.stderr)
    check(d["os"]["segments"] >= 16 and d["os"]["resident_bytes"] < 30 << 20,
          f"malloc_trim returns a prefaulted reservation's free slots, keeps the segments: {d['os']}")

    for bad in ("POOLMALLOC_RESERVE=lots", "POOLMALLOC_STATS=xml", "POOLMALLOC_PURGE_DELAY=-1"):
        name, value = bad.split("=")
        r = run(**{name: value})
        lines = [l for l in r.stderr.splitlines() if l]
        check(len(lines) == 1 and name in lines[0], f"{bad}: one warning line: {r.stderr!r}")

    r = run("info")
    try:
        root = xml.dom.minidom.parseString(r.stdout).documentElement
        check(root.tagName == "malloc", "malloc_info root element")
        mmap = [e for e in root.getElementsByTagName("total") if e.getAttribute("type") == "mmap"]
        check(mmap and int(mmap[0].getAttribute("count")) >= 1, "malloc_info counts the large block")
        # The live 300,000-byte block's mapping; not the freed blocks kept cached.
        check(mmap and 300000 <= int(mmap[0].getAttribute("size")) < 600000,
              f"malloc_info mmap total: {mmap[0].toxml() if mmap else None}")
        # As in glibc's output, a heap's "rest" total is the sum of its <size> entries.
        heap = root.getElementsByTagName("heap")[0]
        sizes = heap.getElementsByTagName("size")
        rest = [e for e in heap.getElementsByTagName("total") if e.getAttribute("type") == "rest"][0]
        check(int(rest.getAttribute("count")) == sum(int(e.getAttribute("count")) for e in sizes)
              and int(rest.getAttribute("size")) == sum(int(e.getAttribute("total")) for e in sizes),
              f"malloc_info rest total is the sum of its sizes: {rest.toxml()}")
    except Exception as e:  # noqa: BLE001 - any parse error is a failure to report
        failures.append(f"malloc_info XML: {e}: {r.stdout[:500]}")

    r = run("stats")
    check("statistics" in r.stderr and "Live now:" in r.stderr, f"malloc_stats: {r.stderr[:500]}")

    r = run("mallinfo")
    fields = dict(zip(r.stdout.split()[::2], map(int, r.stdout.split()[1::2])))
    # As glibc's: the small blocks in uordblks, the large ones in hblkhd.
    check(fields.get("uordblks", 0) >= 1000 and fields.get("uordblks", 0) < 300000,
          f"mallinfo2 in-use bytes: {fields}")
    check(fields.get("arena", 0) >= fields.get("uordblks", 0) and
          fields.get("arena", 0) == fields.get("uordblks", 0) + fields.get("fordblks", 0),
          f"mallinfo2 arena is uordblks + fordblks: {fields}")
    check(fields.get("hblks", 0) >= 1 and fields.get("hblkhd", 0) >= 300000, f"mallinfo2 large: {fields}")

for f in failures:
    print("FAIL:", f)
sys.exit(1 if failures else 0)
