"""Runs one command and measures it: wall time, user+sys CPU and peak RSS.

Peak RSS comes from GNU time between us and the program: a child forked
straight from this Python process would inherit Python's RSS high-water mark
(Linux keeps it across exec), so every small program would seem to use
~20 MB. CPU time comes from os.wait4, which is finer than time's."""
import dataclasses
import os
import signal
import subprocess
import tempfile
import threading
import time

from . import stats

TIME = "/usr/bin/time"


@dataclasses.dataclass
class Run:
    status: str  # OK, FAIL, CRASH or TIMEOUT
    detail: str
    wall: float
    cpu: float
    rss_kb: int | None
    stdout: str = ""
    stderr: str = ""
    result: float | None = None
    unit: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)
    digest: str | None = None  # of the output, for workloads that check it


class Child:
    """A started command in its own process group (so a timeout kills its
    children too), with no standard input."""

    def __init__(self, argv, env, stdout=None, stderr=None):
        fd, self.report = tempfile.mkstemp(prefix="compare-time-")
        os.close(fd)
        self.began = time.monotonic()
        self.proc = subprocess.Popen([TIME, "-o", self.report, "-f", "%M %x", "--"] + argv,
                                     env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=stderr, start_new_session=True)
        self.pid = self.proc.pid

    def alive(self):
        """True while running; does not reap it (wait() must do that)."""
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, self.pid, flags) is None

    def wait(self, timeout):
        """Returns a Run without output, killing the group after timeout s."""
        fired = threading.Event()

        def expire():
            fired.set()
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, expire)
        timer.start()
        try:
            _, status, usage = os.wait4(self.pid, 0)
        except BaseException:  # e.g. Ctrl-C: do not leave the run behind
            expire()
            raise
        finally:
            timer.cancel()
        wall = time.monotonic() - self.began
        self.proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        with open(self.report) as f:
            rss, sig, code = stats.parse_time_report(f.read())
        os.remove(self.report)
        if code is None and sig is None:  # time itself died: use its own status
            state, detail = stats.classify(status, fired.is_set())
        else:
            state, detail = stats.classify_child(sig, code, fired.is_set())
        return Run(state, detail, wall, usage.ru_utime + usage.ru_stime, rss)


def run(argv, env, timeout):
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        result = Child(argv, env, out, err).wait(timeout)
        out.seek(0)
        err.seek(0)
        result.stdout, result.stderr = (f.read().decode(errors="replace") for f in (out, err))
    if result.status == "FAIL" and "cannot run" in result.stderr:
        result.detail = result.stderr.strip().splitlines()[-1]
    parsed = stats.parse_result(result.stdout)
    if parsed:
        result.result, result.unit = parsed
    result.metrics = stats.parse_metrics(result.stdout)
    return result
