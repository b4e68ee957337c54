"""One real SGLang server on the CPU and the pipeline's clients (`softthink.sglang_glue.client`): attaching checks the
server against the spec before anything is written; four runs at once with every sample in flight and bad requests
mixed in; a client killed mid-run and the server killed mid-run, then every run completed by a rerun with no sample
lost or duplicated."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

MODEL = "tiny-random-qwen2"
BASE = {"model": MODEL, "dataset": "gsm8k", "engine": "sglang", "device": "cpu", "limit": 3}
RUNS = {  # four clients of one server: two methods, different sample counts
    "greedy": {"n": 1, "generation": {"method": "cot_greedy", "max_new_tokens": 48}},
    "sample": {"n": 4, "generation": {"method": "cot_sample", "max_new_tokens": 48}},
    "soft": {"n": 2, "generation": {"method": "soft", "max_new_tokens": 48, "think": {"budget": 24},
                                    "cold_stop": {"threshold": 0.5, "length": 4}}},
    "soft_noise": {"n": 8, "generation": {"method": "soft", "max_new_tokens": 96,
                                          "noise": {"kind": "gumbel", "gumbel_tau": 0.5}}},
}


def _start_server(tmp: Path, tag: str):
    from softthink.runspec import RunSpec
    from softthink.serving import launch_options
    from softthink.sglang_glue.server import ServerProcess, free_port

    spec = RunSpec.from_dict(dict(BASE, **RUNS["soft"]))
    opts = launch_options(spec, port=free_port())
    opts.extra["log_level"] = "warning"
    return ServerProcess(opts, tmp / f"server-{tag}.log").start(timeout_s=600)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = _start_server(tmp_path_factory.mktemp("server"), "main")
    try:
        yield s
    finally:
        s.stop()
        assert not s.alive()


def _spec_file(tmp: Path, name: str, url: str, **over) -> Path:
    d = dict(BASE, **RUNS[name], **over)
    d["serving"] = dict(d.get("serving", {}), url=url)
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _client(spec_file: Path, runs_dir: Path, log: Path) -> subprocess.Popen:
    code = ("import sys; from softthink.groups import generate_specs; "
            "rows = generate_specs([sys.argv[1]], sys.argv[2], progress=False); print(rows[0]['status'], "
            "rows[0].get('error', '')); sys.exit(rows[0]['status'] != 'ok')")
    return subprocess.Popen([sys.executable, "-c", code, str(spec_file), str(runs_dir)], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _pairs(runs_dir: Path) -> dict[str, list]:
    out = {}
    for f in runs_dir.rglob("samples.jsonl"):
        cfg = json.loads((f.parent / "config.json").read_text())
        recs = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        out[f"{cfg['spec']['generation']['method']}-n{cfg['spec']['n']}"] = [(r["item_index"], r["sample_index"])
                                                                          for r in recs]
    return out


def _expected(name: str) -> int:
    return BASE["limit"] * RUNS[name]["n"]


def test_attach_checks_the_server_before_writing(server, tmp_path):
    from softthink.groups import generate_specs

    runs = tmp_path / "runs"
    bad_model = _spec_file(tmp_path, "greedy", server.url, model="tiny-random-llama")
    bad_driver = _spec_file(tmp_path, "soft", server.url, serving={"driver": "B"})
    rows = generate_specs([str(bad_model), str(bad_driver)], str(runs), progress=False)
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert "model" in rows[0]["error"] and "tiny-random-llama" in rows[0]["error"]
    assert "serving.driver" in rows[1]["error"] and "Driver A" in rows[1]["error"]
    assert not runs.exists() or not any(runs.iterdir()), "a mismatching server left files behind"
    ok = generate_specs([str(_spec_file(tmp_path, "greedy", server.url))], str(runs), progress=False)
    assert ok[0]["status"] == "ok" and ok[0]["metrics"]["samples"] == _expected("greedy")


def test_four_clients_bad_requests_a_killed_client_then_resume(server, tmp_path):
    from softthink.sglang_glue.client import http_json

    runs = tmp_path / "runs"
    files = {n: _spec_file(tmp_path, n, server.url) for n in RUNS}
    procs = {n: _client(f, runs, tmp_path / f"{n}.log") for n, f in files.items()}
    # bad requests while the clients run: each fails alone
    bad = [{"input_ids": [1, 2, 3], "sampling_params": {"max_new_tokens": 4, "temperature": "hot"}},
           {"input_ids": [1, 2, 3], "sampling_params": {"max_new_tokens": 4, "custom_params": {"st_cfg": "{"}},
            "custom_logit_processor": "not-a-processor"}]
    for body in bad:
        status, out = http_json(server.url + "/generate", body, timeout=120)
        assert status >= 400 or out.get("meta_info", {}).get("finish_reason", {}).get("type") == "abort", out
    # kill the longest client once its run has started (its requests are in flight), before it completes
    victim = runs_file = None
    deadline = time.time() + 600
    while victim is None and time.time() < deadline:
        for cfg_file in runs.rglob("config.json") if runs.exists() else []:
            cfg = json.loads(cfg_file.read_text())
            f = cfg_file.parent / "samples.jsonl"
            n_done = len(f.read_text().splitlines()) if f.exists() else 0
            if cfg["spec"]["n"] == 8 and n_done < _expected("soft_noise"):
                time.sleep(1.0)  # let its requests reach the server
                victim, runs_file = "soft_noise", f
                os.killpg(procs[victim].pid, signal.SIGKILL)
                break
        time.sleep(0.1)
    assert victim, "the long client never started"
    rcs = {n: p.wait(600) for n, p in procs.items()}
    assert rcs["soft_noise"] == -signal.SIGKILL
    assert all(rc == 0 for n, rc in rcs.items() if n != victim), {n: (tmp_path / f"{n}.log").read_text()[-500:]
                                                                  for n in rcs}
    partial = len(runs_file.read_text().splitlines()) if runs_file.exists() else 0
    assert partial < _expected("soft_noise")
    # the server kept serving: a rerun of the killed client completes exactly the missing pairs
    assert _client(files[victim], runs, tmp_path / "rerun.log").wait(600) == 0
    for name, pairs in _pairs(runs).items():
        assert len(pairs) == len(set(pairs)), f"{name}: duplicated samples"
    want = {f"{RUNS[n]['generation']['method']}-n{RUNS[n]['n']}": _expected(n) for n in RUNS}
    assert {k: len(v) for k, v in _pairs(runs).items()} == want


def test_server_killed_mid_run_then_rerun_completes(server, tmp_path):
    """Last in the module: the module's server is the victim."""
    from sglang.srt.utils import kill_process_tree

    runs = tmp_path / "runs"
    client = _client(_spec_file(tmp_path, "soft_noise", server.url), runs, tmp_path / "client.log")
    deadline = time.time() + 600
    while time.time() < deadline and not (runs.exists() and any(runs.rglob("config.json"))):
        time.sleep(0.1)
    time.sleep(1.0)  # its requests are in flight
    kill_process_tree(server.proc.pid, wait_timeout=60)  # the server dies, not through its owner
    assert client.wait(600) != 0
    log = (tmp_path / "client.log").read_text()
    assert "stopped answering" in log or "no SGLang server answers" in log, log[-2000:]
    server.stop()
    assert server.ended.startswith("died")
    partial = _pairs(runs).get("soft-n8", [])
    assert len(partial) < _expected("soft_noise") and len(partial) == len(set(partial))
    s2 = _start_server(tmp_path, "second")
    try:
        assert _client(_spec_file(tmp_path, "soft_noise", s2.url), runs, tmp_path / "client2.log").wait(600) == 0
    finally:
        s2.stop()
    pairs = _pairs(runs)["soft-n8"]
    assert len(pairs) == len(set(pairs)) == _expected("soft_noise")
