"""One SGLang server that the pipeline starts and always stops: SGLang's own launcher, health wait and process-tree
kill, with softthink's plugin environment (`LaunchOptions.env`) and the log in a file."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


LIVE: set = set()  # servers started by this process and not yet stopped (stop_all ends them on Ctrl-C / SIGTERM)


def stop_all(how: str) -> None:
    """Stop every server this process started that is still running (from the main thread on an interrupt, while
    the groups' threads are still waiting on them)."""
    for server in list(LIVE):
        server.stop(how)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`start()` launches `python -m sglang.launch_server` for `opts` (its own session, output to `log_path`) and
    waits until `/health` answers; `stop()` kills the whole process tree (schedulers, detokenizer, TP ranks).
    Use as a context manager so that a failure, Ctrl-C or SIGTERM (raised as SystemExit by the caller) stops it."""

    def __init__(self, opts: Any, log_path: str | os.PathLike, env: dict[str, str] | None = None,
                 command: list[str] | None = None):
        from softthink.sglang_glue.cpu import materialize

        self.opts = opts
        self.opts.model_path = materialize(opts.model_path)  # bundled aliases -> an HF-format folder
        self.log_path = Path(log_path)
        self.env = env or {}
        self.command = command  # this node's command of a multi-node server (softthink.slurm.node_launch)
        self.proc: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self.ended: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.opts.host}:{self.opts.port}"

    def start(self, timeout_s: float = 1800, wait: bool = True) -> "ServerProcess":
        """Launch; with `wait`, return once `/health` answers (a multi-node server's other ranks serve no HTTP)."""
        from sglang.utils import wait_for_http_ready

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **self.opts.env(), **self.env)
        t0 = time.time()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command or self.opts.server_command(), stdout=log,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        LIVE.add(self)
        if not wait:
            return self
        try:
            wait_for_http_ready(self.url + "/health", timeout=timeout_s, process=self.proc)
        except BaseException as e:
            self.stop("failed to start")
            raise RuntimeError(f"the SGLang server did not start ({type(e).__name__}: {e}); log: {self.log_path}"
                               ) from None
        self.start_seconds = time.time() - t0
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, how: str = "stopped") -> None:
        """Kill the process tree (SGLang's `kill_process_tree`) unless it already ended; records how it ended."""
        if self.proc is None:
            return
        LIVE.discard(self)
        if self.proc.poll() is not None:
            self.ended = self.ended or f"died (exit {self.proc.returncode})"
            return
        from sglang.srt.utils import kill_process_tree

        try:
            kill_process_tree(self.proc.pid, wait_timeout=60)
        finally:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
            self.ended = self.ended or how

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        self.stop("stopped" if exc_type is None else f"stopped after {exc_type.__name__}")
