"""Who can get into an SGLang server that softthink starts (docs/sglang.md, "Server security"); no SGLang needed.

Driver A needs SGLang's `--enable-custom-logit-processor`, which runs `dill.loads` on a string every client sends:
such a server may only listen on loopback unless the user opts in by name. The API key comes from the environment
only and never shows up in the options or in a printed command line. (That a Driver B server refuses a crafted
processor payload is tested against the real server: tests/sglang_real/test_tp.py.)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from softthink.sglang_glue.launch import (API_KEY_ENV, LaunchOptions, UnsafeServer, api_key_from_env, is_loopback,
                                          masked_command)

ROOT = Path(__file__).resolve().parent.parent
KEY = "-".join(["test", "key", "not", "a", "secret"])


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True),
                                       ("[::1]", True), ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
                                       ("gpu-node-7", False), ("", False)])
def test_is_loopback(host, loop):
    assert is_loopback(host) is loop


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "gpu-node-7"])
def test_driver_a_beyond_loopback_is_refused(host):
    with pytest.raises(UnsafeServer, match="run code") as info:
        LaunchOptions(model_path="m", host=host)
    assert "--driver B" in str(info.value) and "--allow-remote-code-execution" in str(info.value)
    # a custom logit processor switched on through `extra` is the same hole
    with pytest.raises(UnsafeServer):
        LaunchOptions(model_path="m", host=host, driver="B", extra={"enable_custom_logit_processor": True})


def test_what_may_listen_beyond_loopback():
    b = LaunchOptions(model_path="m", host="0.0.0.0", driver="B")
    assert "enable_custom_logit_processor" not in b.server_kwargs()  # Driver B deserialises nothing from clients
    a = LaunchOptions(model_path="m", host="0.0.0.0", allow_remote_code_execution=True)
    assert a.server_kwargs()["enable_custom_logit_processor"] is True
    assert LaunchOptions(model_path="m").server_kwargs()["enable_custom_logit_processor"] is True  # loopback


def test_host_and_key_cannot_slip_in_through_extra():
    with pytest.raises(ValueError, match="host"):  # would override --host after the check
        LaunchOptions(model_path="m", extra={"host": "0.0.0.0"})
    with pytest.raises(ValueError, match=API_KEY_ENV):  # would be stored with the options
        LaunchOptions(model_path="m", driver="B", extra={"api_key": KEY})


def test_api_key_from_the_environment_only(monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert api_key_from_env() is None
    opts = LaunchOptions(model_path="m", driver="B", host="0.0.0.0")
    assert "--api-key" not in opts.server_command()
    monkeypatch.setenv(API_KEY_ENV, "  ")
    assert api_key_from_env() is None
    monkeypatch.setenv(API_KEY_ENV, KEY)
    assert api_key_from_env() == KEY and api_key_from_env({API_KEY_ENV: "x"}) == "x"
    cmd = opts.server_command()
    assert cmd[cmd.index("--api-key") + 1] == KEY  # SGLang gets it ...
    assert KEY not in repr(opts) and KEY not in str(opts.server_kwargs()) and KEY not in str(opts.env())
    assert KEY not in " ".join(masked_command(cmd)) and "***" in masked_command(cmd)  # ... nobody reads it
    assert masked_command(["x", "--api-key=" + KEY]) == ["x", "--api-key=***"]


def _serve(*args, env=None):
    e = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    return subprocess.run([sys.executable, "-m", "softthink", "sglang-serve", "--model", "m", "--dry-run", *args],
                          capture_output=True, text=True, env=e, timeout=120)


def test_sglang_serve_refuses_driver_a_beyond_loopback_and_never_prints_the_key():
    p = _serve("--host", "0.0.0.0")
    assert p.returncode == 2 and "run code" in p.stderr and "sglang.launch_server" not in p.stdout, p.stderr
    p = _serve("--host", "0.0.0.0", "--driver", "B", env={API_KEY_ENV: KEY})
    assert p.returncode == 0, p.stderr
    assert KEY not in p.stdout + p.stderr and "--api-key '***'" in p.stdout
    assert "--enable-custom-logit-processor" not in p.stdout and "beyond loopback" in p.stderr
    p = _serve("--host", "0.0.0.0", "--allow-remote-code-execution")
    assert p.returncode == 0 and "--enable-custom-logit-processor" in p.stdout
    assert "run code" in p.stderr and API_KEY_ENV in p.stderr  # the warning names both risks
    p = _serve()  # the default: loopback, Driver A, no warning
    assert p.returncode == 0 and "--host 127.0.0.1" in p.stdout and not p.stderr.strip(), p.stderr
