"""One status line on a terminal: which run, how long so far, and an
estimate of what is left from the runs already timed."""
import sys
import time

from .stats import format_duration


class Progress:
    def __init__(self, total_runs, stream=sys.stderr):
        self.total = total_runs
        self.done = 0
        self.stream = stream
        self.live = stream.isatty()
        self.began = time.monotonic()
        self.durations = []  # of every run so far
        self.current = []  # of the current workload's runs
        self.workload = None
        self.left_in_workload = 0

    def start_workload(self, name, index, count, runs):
        self.workload, self.current, self.left_in_workload = name, [], runs
        if not self.live:
            print(f"compare: {name} ({index}/{count})", file=self.stream, flush=True)

    def estimate_left(self):
        if not self.durations:
            return None
        overall = sum(self.durations) / len(self.durations)
        here = sum(self.current) / len(self.current) if self.current else overall
        rest = self.total - self.done - self.left_in_workload
        return self.left_in_workload * here + rest * overall

    def start_run(self, alloc, round_no, rounds):
        if not self.live:
            return
        left = self.estimate_left()
        eta = f" ~{format_duration(left)} left" if left is not None else ""
        line = (f"[{self.done + 1}/{self.total}] {self.workload} {alloc} round {round_no}/{rounds}"
                f"  {format_duration(time.monotonic() - self.began)} elapsed{eta}")
        self.stream.write("\r\x1b[K" + line)
        self.stream.flush()

    def end_run(self, seconds):
        self.done += 1
        self.left_in_workload -= 1
        self.durations.append(seconds)
        self.current.append(seconds)

    def finish(self):
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
