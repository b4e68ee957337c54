"""The `ci-sglang` profile's server groups as Slurm jobs (make test-slurm): each job runs `python -m softthink
run-group` in .venv-sglang, which starts an SGLang server on the CPU inside the allocation, runs the group's
generate notebooks as its clients and stops the server. The first job is cancelled once its server has written a
sample, then submitted again: the runs complete, no sample twice, the greedy run equal to the transformers engine."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from softthink.slurm import job_info, read_ledger, run_groups_slurm
from softthink.slurm_config import slurm_options

ROOT = Path(__file__).resolve().parents[2]


def _samples(d: str | Path) -> list[dict]:
    from softthink.store import read_jsonl

    return read_jsonl(Path(d, "samples.jsonl"))


def test_ci_sglang_groups_on_slurm(slurm_cluster, tmp_path):
    py = os.environ.get("SOFTTHINK_SGLANG_PY") or str(ROOT / ".venv-sglang" / "bin" / "python")
    if not Path(py).exists():
        pytest.skip(f"no SGLang environment at {py}: make test-sglang builds .venv-sglang")
    groups_mod = pytest.importorskip("softthink.groups", reason="needs softthink.groups (the serving layer)")
    if subprocess.run([py, "-m", "softthink", "run-group", "--help"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("needs `python -m softthink run-group` (the serving layer)")
    runs, build, state = str(tmp_path / "runs"), str(tmp_path / "build"), tmp_path / "slurm"

    def command_for(g):
        return [py, "-m", "softthink", "run-group", "--profile", "ci-sglang", "--group", g.key, "--runs-dir", runs,
                "--build-dir", build]

    def plan():
        return groups_mod.plan_groups("ci-sglang", runs, build_root=build)

    opts = slurm_options({"time": "30:00", "cpus_per_task": 1})
    groups = plan()
    assert len(groups) == 2 and all(g.engine == "sglang" and g.gpus == 0 for g in groups)  # one server per model
    first = run_groups_slurm(groups, command_for, opts, state, wait=False)
    jid, key = first[0]["job_id"], first[0]["group"]
    exp_dirs = _experiment_dirs(groups[0], runs)
    t0 = time.time()
    while not any(_samples(d) for d in exp_dirs if Path(d, "samples.jsonl").exists()):
        state_now = (job_info(jid) or {}).get("JobState")
        assert state_now in ("PENDING", "RUNNING", "CONFIGURING"), \
            f"job {jid} ended ({state_now}) before a sample: {Path(first[0]['log']).read_text()[-3000:]}"
        assert time.time() - t0 < 420, "no sample in 7 minutes"
        time.sleep(0.5)
    subprocess.run(["scancel", jid], check=True)  # mid-run: the server is up and has answered

    final = run_groups_slurm(plan(), command_for, opts, state, wait=True, poll_s=3)
    assert final and all(r["state"] == "done" for r in final), final
    led = read_ledger(state)["jobs"]
    assert led[key]["job_id"] != jid and [p["job_id"] for p in led[key]["previous"]] == [jid]
    assert all(j["state"] == "done" for j in led.values())
    assert plan() == []  # every run of the profile complete

    from softthink.profiles import load_profile
    from softthink.runs import RunSpec, generate_run

    for d in Path(runs).glob("*"):
        if (d / "config.json").exists():
            pairs = [(s["item_index"], s["sample_index"]) for s in _samples(d)]
            assert len(pairs) == len(set(pairs)) == 2, (d, pairs)
    for exp in load_profile("ci-sglang").experiments:
        if exp.name.endswith("greedy"):  # the same tokens as the transformers engine
            hf = generate_run(RunSpec.from_dict(dict(exp.spec, engine="hf")), progress=False, runs_dir=tmp_path / "hf")
            sg = _experiment_dirs(type("G", (), {"experiments": [exp.name]}), runs)[0]
            assert [s["token_ids"] for s in _samples(hf.path)] == [s["token_ids"] for s in _samples(sg)], exp.name


def _experiment_dirs(group, runs: str) -> list[str]:
    from softthink.pipeline import run_status
    from softthink.profiles import load_profile, write_experiment_specs

    specs = write_experiment_specs(load_profile("ci-sglang"), Path(runs).parent / "specs")
    return [run_status(specs[e], runs)[1] for e in group.experiments]
