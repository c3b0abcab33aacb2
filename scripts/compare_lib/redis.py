"""redis-server as a workload: the server runs under the allocator, on a
free loopback port, driven by redis-benchmark (not preloaded). Its output
check is a fixed command script sent with redis-cli afterwards."""
import hashlib
import os
import signal
import socket
import subprocess
import time

from . import runner, stats

TESTS = "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,lrange_100"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(server, port, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and server.alive():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def check_script():
    """Commands whose replies are the same under any correct allocator."""
    lines = ["FLUSHALL"]
    for i in range(300):
        lines.append(f"SET key:{i} {'v' * (i * 7 % 900 + 1)}{i}")
        lines.append(f"RPUSH list {i}{'x' * (i % 50)}")
        lines.append(f"HSET hash f{i} {i * i}")
        lines.append(f"SADD set m{i % 120}")
    lines += [f"GET key:{i}" for i in range(0, 300, 7)]
    lines += ["LRANGE list 0 -1", "HGETALL hash", "SCARD set", "DBSIZE", "APPEND key:1 tail",
              "GETRANGE key:1 0 40", "DEL list", "DBSIZE"]
    return "\n".join(lines) + "\n"


class Redis:
    name = "redis"
    check_output = True

    def __init__(self, tmpdir, requests):
        self.tmpdir = tmpdir
        self.requests = requests

    def missing(self):
        for exe in ("/usr/bin/redis-server", "/usr/bin/redis-benchmark", "/usr/bin/redis-cli"):
            if not os.access(exe, os.X_OK):
                return f"{exe} not found"
        return None

    def run(self, alloc, base_env, timeout):
        port = free_port()
        log_path = os.path.join(self.tmpdir, "redis.log")
        argv = ["/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.tmpdir]
        with open(log_path, "w") as log:
            server = runner.Child(argv, alloc.env(base_env), stdout=log, stderr=subprocess.STDOUT)
        client_env = dict(base_env)
        client_env.pop("LD_PRELOAD", None)
        wall, rps, replies, note = 0.0, None, "", ""
        try:
            if not wait_ready(server, port):
                note = "server did not answer PING"
            else:
                began = time.monotonic()
                bench = subprocess.run(
                    ["/usr/bin/redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-q",
                     "-n", str(self.requests), "-d", "100", "-t", TESTS],
                    env=client_env, capture_output=True, text=True, timeout=timeout, check=False)
                wall = time.monotonic() - began
                rps = stats.parse_redis_rps(bench.stdout)
                replies = subprocess.run(
                    ["/usr/bin/redis-cli", "-p", str(port)], input=check_script(), env=client_env,
                    capture_output=True, text=True, timeout=timeout, check=False).stdout
                if rps is None:
                    note = "redis-benchmark printed no rates: " + bench.stderr.strip()[-200:]
        except subprocess.TimeoutExpired:
            note = "redis-benchmark timed out"
        finally:
            stop(server, port, client_env)
        result = server.wait(30)
        if result.status == "OK" and note:
            result.status, result.detail = "FAIL", note
        result.wall, result.stdout = wall, replies
        if rps is not None:
            result.result, result.unit = rps, "requests/s"
        if result.status == "OK":
            result.digest = hashlib.sha256(replies.encode()).hexdigest()
        return result


def stop(server, port, env):
    """Asks the server to exit, so GNU time above it can write its report;
    a signal to the group would kill time too."""
    if not server.alive():
        return
    subprocess.run(["/usr/bin/redis-cli", "-p", str(port), "SHUTDOWN", "NOSAVE"], env=env,
                   capture_output=True, timeout=30, check=False)
    deadline = time.monotonic() + 10
    while server.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if server.alive():
        os.killpg(server.pid, signal.SIGKILL)
