"""The malloc implementations compared, and the check that a preloaded
library really is in the process (ld.so only warns when it is not)."""
import atexit
import dataclasses
import os
import shutil
import subprocess
import tempfile

LIBDIR = "/usr/lib/x86_64-linux-gnu"
BASELINES = {
    # The C library's own malloc, preloaded so that it comes first even in a
    # program linked with another allocator: Debian's redis-server links
    # jemalloc, which would otherwise serve its mallocs in the glibc column.
    "glibc": f"{LIBDIR}/libc.so.6",
    "jemalloc": f"{LIBDIR}/libjemalloc.so.2",
    "mimalloc": f"{LIBDIR}/libmimalloc.so.2",
    "tcmalloc": f"{LIBDIR}/libtcmalloc_minimal.so.4",
}
DEFAULT_ORDER = ["poolmalloc", "glibc", "jemalloc", "mimalloc", "tcmalloc"]


class SetupError(Exception):
    """A problem that makes the comparison meaningless: stop, exit 2."""


@dataclasses.dataclass
class Allocator:
    name: str
    lib: str | None

    def env(self, base):
        env = dict(base)
        env.pop("LD_PRELOAD", None)
        if self.lib:
            env["LD_PRELOAD"] = self.lib
        return env


_LINKS = []


def preloadable(path):
    """path, or a link to it that LD_PRELOAD can name: ld.so splits the
    variable at spaces and colons, so a library under such a directory is
    reached through a link in a temporary directory of its own."""
    if not any(c in path for c in " :"):
        return path
    if not _LINKS:
        _LINKS.append(tempfile.mkdtemp(prefix="compare-libs-"))
        atexit.register(shutil.rmtree, _LINKS[0], True)
    link = os.path.join(_LINKS[0], f"{len(os.listdir(_LINKS[0]))}-{os.path.basename(path).replace(' ', '_').replace(':', '_')}")
    os.symlink(path, link)
    return link


def choose(names, explicit, poolmalloc_lib, lib_given, extra, warn):
    """Allocators to run, in order. names: requested names; explicit: the
    user named them (a missing library is then an error, not a skip), as is
    a missing poolmalloc library that was given with --lib; extra:
    {name: path} added or overriding baselines."""
    libs = dict(BASELINES, poolmalloc=poolmalloc_lib, **extra)
    chosen = []
    for name in names:
        if name not in libs:
            raise SetupError(f"unknown allocator {name!r}; known: {', '.join(sorted(libs))}")
        lib = libs[name]
        if lib is not None and not os.path.isfile(lib):
            msg = f"{name}: library {lib} does not exist"
            if explicit or (name == "poolmalloc" and lib_given):
                raise SetupError(msg)
            hint = " (not built? see scripts/setup, or pass --lib)" if name == "poolmalloc" else ""
            warn(f"{msg}; skipping {name}{hint}")
            continue
        chosen.append(Allocator(name, preloadable(os.path.abspath(lib)) if lib else None))
    if not chosen:
        raise SetupError("no allocator left to compare")
    return chosen


def verify_loaded(alloc, base_env):
    """Raises SetupError unless a preloaded process maps alloc's library."""
    proc = subprocess.run(["/bin/cat", "/proc/self/maps"], env=alloc.env(base_env),
                          capture_output=True, text=True, check=False)
    if alloc.lib is None:
        return
    real = os.path.realpath(alloc.lib)
    if proc.returncode != 0 or real not in proc.stdout:
        why = proc.stderr.strip() or "not in /proc/self/maps"
        raise SetupError(f"{alloc.name}: {alloc.lib} was not loaded by LD_PRELOAD: {why}")
