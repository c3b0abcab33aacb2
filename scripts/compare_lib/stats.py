"""Pure functions: parsing program output and summarising rounds.

Nothing here runs a process, so all of it is unit tested directly."""
import math
import os
import re
import signal

_RESULT = re.compile(r"^result:\s*([-+0-9.eE]+)\s*(\S*)\s*$", re.M)
# Extra figures a workload may print, e.g. `final-rss: 1234 kB`.
_METRIC = re.compile(r"^([a-z][a-z0-9-]*):\s*([-+0-9.eE]+)\s*(\S*)\s*$", re.M)
_REDIS_RPS = re.compile(r"([0-9.]+) requests per second")
_CALLGRIND_TOTAL = re.compile(r"^(?:summary|totals):\s*(\d+)", re.M)


def parse_result(text):
    """The last `result: <number> <unit>` line as (value, unit), or None."""
    found = _RESULT.findall(text)
    if not found:
        return None
    try:
        return float(found[-1][0]), found[-1][1]
    except ValueError:
        return None


def parse_metrics(text):
    """Every `name: <number> <unit>` line except result, as
    {"name (unit)": value}."""
    out = {}
    for name, value, unit in _METRIC.findall(text):
        if name == "result":
            continue
        try:
            out[f"{name} ({unit})" if unit else name] = float(value)
        except ValueError:
            pass
    return out


def parse_redis_rps(text):
    """Requests/s over all tests of `redis-benchmark -q`: the harmonic mean,
    which is total requests over total time when every test sends the same
    number of requests. None when no test line was printed."""
    # -q rewrites a progress line with \r before printing the final one.
    finals = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
    rates = [float(m.group(1)) for line in finals for m in [_REDIS_RPS.search(line)] if m]
    rates = [r for r in rates if r > 0]
    if not rates:
        return None
    return len(rates) / sum(1.0 / r for r in rates)


def parse_callgrind_total(text):
    """Instructions executed, from a callgrind output file."""
    m = _CALLGRIND_TOTAL.search(text)
    return int(m.group(1)) if m else None


def per_step(total_n, total_2n, n):
    """Cost of one step from runs of n and 2n steps: start-up cancels out."""
    return (total_2n - total_n) / n


def parse_time_report(text):
    """(peak RSS kB, signal or None, exit code or None) from the file GNU
    time writes with -f '%M %x'. A signal shows as an extra line before."""
    sig = re.search(r"Command terminated by signal (\d+)", text)
    last = re.search(r"^(\d+) (-?\d+)\s*\Z", text, re.M)
    rss = int(last.group(1)) if last else None
    if sig:
        return rss, int(sig.group(1)), None
    return rss, None, int(last.group(2)) if last else None


def signal_name(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def classify_child(sig, code, timed_out=False):
    """(status, detail) from a child's terminating signal or exit code."""
    if timed_out:
        return "TIMEOUT", "killed after the time limit"
    if sig is not None:
        return "CRASH", signal_name(sig)
    if code:
        return "FAIL", f"exit status {code}"
    return "OK", ""


def classify(wait_status, timed_out=False):
    """(status, detail) of a finished child from its os.wait4 status."""
    if os.WIFSIGNALED(wait_status):
        return classify_child(os.WTERMSIG(wait_status), None, timed_out)
    return classify_child(None, os.waitstatus_to_exitcode(wait_status), timed_out)


def median(values):
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def geomean(values):
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def ratio(value, base):
    if value is None or base is None or base <= 0:
        return None
    return value / base


# Worse statuses win when rounds of one cell disagree.
_SEVERITY = {"OK": 0, "FAIL": 1, "TIMEOUT": 2, "CRASH": 3}


def worst_status(statuses):
    return max(statuses, key=lambda s: _SEVERITY.get(s, 1), default="OK")


def reference_digest(digests_by_alloc, baseline):
    """The output every allocator must reproduce: the baseline's when it
    produced one, else the most common digest (ties: first seen)."""
    if digests_by_alloc.get(baseline):
        return digests_by_alloc[baseline][0]
    seen = [d for ds in digests_by_alloc.values() for d in ds]
    if not seen:
        return None
    return max(dict.fromkeys(seen), key=seen.count)


def format_duration(seconds):
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
