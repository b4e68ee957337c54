"""The `ci-sglang` profile through `reproduce --executor slurm` in .venv-sglang (make test-slurm): one job per
server group, each running `python -m softthink run-group`, which starts an SGLang server on the CPU inside the
allocation, runs the group's generate notebooks as its clients and stops the server. One job is cancelled once its
runs have started; `reproduce` again submits a new job for that group only, follows both, then grades: every run
complete with exact counts, the greedy runs equal to the transformers engine."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from softthink.slurm import job_info, read_ledger

ROOT = Path(__file__).resolve().parents[2]


def _samples(d: Path) -> list[dict]:
    from softthink.store import read_jsonl

    f = Path(d, "samples.jsonl")  # sorted: a server run appends samples in the order they finish
    return sorted(read_jsonl(f), key=lambda r: (r["item_index"], r["sample_index"])) if f.exists() else []


def _runs_of(runs: Path, model: str) -> list[Path]:
    return [c.parent for c in runs.rglob("config.json") if json.loads(c.read_text())["spec"]["model"] == model]


def test_ci_sglang_through_reproduce_executor_slurm(slurm_cluster, tmp_path):
    py = os.environ.get("SOFTTHINK_SGLANG_PY") or str(ROOT / ".venv-sglang" / "bin" / "python")
    if not Path(py).exists():
        pytest.skip(f"no SGLang environment at {py}: make test-sglang builds .venv-sglang")
    runs, build = tmp_path / "runs", tmp_path / "build"

    def reproduce(*extra: str) -> subprocess.CompletedProcess:
        cmd = [py, "-m", "softthink", "reproduce", "--profile", "ci-sglang", "--executor", "slurm", "--no-report",
               "--runs-dir", str(runs), "--build-dir", str(build), "--slurm-time", "30:00", *extra]
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=2400)

    first = reproduce("--no-wait")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    jobs = json.loads((build / "reproduce.json").read_text())["jobs"]
    assert len(jobs) == 2 and all(j["submitted"] for j in jobs)  # one job (one server) per model
    victim = jobs[0]
    from softthink.profiles import load_profile

    model = next(e.spec["model"] for e in load_profile("ci-sglang").experiments if e.name in victim["experiments"])
    t0 = time.time()
    while not (runs.exists() and _runs_of(runs, model)):  # its server answered and a client started its run
        state = (job_info(victim["job_id"]) or {}).get("JobState")
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {victim['job_id']} ended ({state}) early"
        assert time.time() - t0 < 600, "no run started in 10 minutes"
        time.sleep(0.5)
    subprocess.run(["scancel", victim["job_id"]], check=True)  # mid-run: its server is up, its clients sending

    done = reproduce()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    summary = json.loads((build / "reproduce.json").read_text())
    assert summary["failed"] == 0 and any(s["step"] == "grade" and s["status"] == "ok" for s in summary["steps"])
    led = read_ledger(build / "slurm")["jobs"]
    assert all(j["state"] == "done" for j in led.values()) and len(led) == 2
    assert [p["job_id"] for p in led[victim["group"]].get("previous", [])] == [victim["job_id"]]
    assert "CANCELLED" in led[victim["group"]]["previous"][0]["error"]
    run_dirs = [c.parent for c in runs.rglob("config.json")]
    assert len(run_dirs) == 4
    for d in run_dirs:
        pairs = [(s["item_index"], s["sample_index"]) for s in _samples(d)]
        assert len(pairs) == len(set(pairs)) == 2, (d.name, pairs)

    from softthink.runs import RunSpec, generate_run

    for exp in load_profile("ci-sglang").experiments:
        if exp.name.endswith("greedy"):  # the same tokens as the transformers engine
            spec = {k: v for k, v in exp.spec.items() if k != "serving"}
            hf = generate_run(RunSpec.from_dict(dict(spec, engine="hf")), progress=False, runs_dir=tmp_path / "hf")
            sg = next(d for d in _runs_of(runs, exp.spec["model"])
                      if json.loads((d / "config.json").read_text())["spec"]["generation"]["method"] == "cot_greedy")
            assert [s["token_ids"] for s in _samples(hf.path)] == [s["token_ids"] for s in _samples(sg)], exp.name
