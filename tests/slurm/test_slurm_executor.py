"""The Slurm executor against a real one-node Slurm (make test-slurm): the `ci` profile (transformers engine), one
job per group; one job requeued with `scontrol requeue` mid-run, one cancelled with `scancel` mid-run, one sent
submitit's USR2 (what a time limit or a preemption notice sends) mid-run; then the same call again: every run complete,
no sample lost or duplicated, greedy runs equal to a local run, and no job submitted twice."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from standin import command_for, plan_groups  # noqa: E402

from softthink.slurm import job_info, read_ledger, run_groups_slurm  # noqa: E402
from softthink.slurm_config import slurm_options  # noqa: E402

LOG: list[str] = []


def say(msg: str) -> None:
    LOG.append(msg)
    print(msg, flush=True)


def _samples(run_dir: str | None) -> list[dict]:
    from softthink.store import read_jsonl

    return read_jsonl(Path(run_dir, "samples.jsonl")) if run_dir and Path(run_dir, "samples.jsonl").exists() else []


def _run_dirs(profile: str, specs_dir: Path, runs_dir: str) -> dict[str, str]:
    from softthink.pipeline import run_status

    return {p.stem: run_status(p, runs_dir)[1] for p in sorted(specs_dir.glob("*.yaml"))}


def _interrupt_mid_run(targets: dict[str, tuple[list[str], list[str]]], timeout_s: float = 300) -> dict:
    """For each job id -> (command, its runs): as soon as the job runs and has written a sample into one of its runs,
    run the command on it (scancel, scontrol requeue, ...). Returns job id -> samples per run at that moment."""
    done: dict[str, list[int]] = {}
    t0 = time.time()
    while len(done) < len(targets):
        assert time.time() - t0 < timeout_s, f"no sample within {timeout_s} s: {targets}"
        for jid, (action, dirs) in targets.items():
            if jid in done:
                continue
            state = (job_info(jid) or {}).get("JobState")
            assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {jid} ended before it was interrupted"
            counts = [len(_samples(d)) for d in dirs]
            if state == "RUNNING" and any(counts):
                subprocess.run([*action, jid], check=True)
                done[jid] = counts
                say(f"  test     {' '.join(action)} {jid} with samples per run {counts}")
        time.sleep(0.2)
    return done


def test_ci_profile_on_slurm_with_requeue_and_cancel(slurm_cluster, tmp_path):
    runs, specs, state = str(tmp_path / "runs"), tmp_path / "params", tmp_path / "slurm"
    opts = slurm_options({"time": "30:00"})
    cmd = lambda g: command_for(g, runs)  # noqa: E731 - the integrator's: python -m softthink run-group ...
    t0 = time.time()

    groups = plan_groups("ci", runs, specs)
    by_key = {g.key: g for g in groups}
    assert sorted(by_key) == ["hf-tiny-random-qwen2-aime2024", "hf-tiny-random-qwen2-gpqa_diamond",
                              "hf-tiny-random-qwen2-gsm8k", "hf-tiny-random-qwen2-humaneval"]
    rd = _run_dirs("ci", specs, runs)
    first = run_groups_slurm(groups, cmd, opts, state, wait=False, say=say)
    assert all(r["submitted"] and r["state"] == "pending" for r in first)
    ids = {r["group"]: r["job_id"] for r in first}
    assert len(set(ids.values())) == 4

    again = run_groups_slurm(plan_groups("ci", runs, specs), cmd, opts, state, wait=False, say=say)
    assert not any(r["submitted"] for r in again), "a queued or running group got a second job"
    assert {r["group"]: r["job_id"] for r in again} == ids

    gsm, aime, code = (ids[f"hf-tiny-random-qwen2-{d}"] for d in ("gsm8k", "aime2024", "humaneval"))
    dirs = {k: [rd[e] for e in by_key[f"hf-tiny-random-qwen2-{k}"].experiments] for k in ("gsm8k", "aime2024",
                                                                                          "humaneval")}
    interrupted = _interrupt_mid_run({gsm: (["scontrol", "requeue"], dirs["gsm8k"]),
                                      aime: (["scancel"], dirs["aime2024"]),
                                      code: (["scancel", "--signal=USR2"], dirs["humaneval"])})  # USR2: submitit
    assert 0 in interrupted[gsm] and 0 in interrupted[aime], f"not interrupted mid-group: {interrupted}"

    final = run_groups_slurm(plan_groups("ci", runs, specs), cmd, opts, state, wait=True, say=say, poll_s=2)
    seconds = time.time() - t0
    by_group = {r["group"]: r for r in final}
    assert all(r["state"] == "done" for r in final), final
    # the requeued jobs kept their ids and were not submitted again; the cancelled one was
    for key, jid in (("hf-tiny-random-qwen2-gsm8k", gsm), ("hf-tiny-random-qwen2-humaneval", code)):
        if key in by_group:  # (a group whose job finished before the last plan is not in it)
            assert by_group[key]["job_id"] == jid and not by_group[key]["submitted"]
    led = read_ledger(state)["jobs"]
    assert led["hf-tiny-random-qwen2-gsm8k"]["job_id"] == gsm and led["hf-tiny-random-qwen2-gsm8k"]["requeues"] >= 1
    assert led["hf-tiny-random-qwen2-humaneval"]["job_id"] == code
    assert led["hf-tiny-random-qwen2-humaneval"]["requeues"] >= 1
    assert led["hf-tiny-random-qwen2-aime2024"]["job_id"] != aime
    assert [p["job_id"] for p in led["hf-tiny-random-qwen2-aime2024"]["previous"]] == [aime]
    assert "CANCELLED" in led["hf-tiny-random-qwen2-aime2024"]["previous"][0]["error"]
    log = Path(led["hf-tiny-random-qwen2-humaneval"]["log"]).read_text()
    assert "Requeued job" in log, log[-2000:]

    # every run complete, sample counts exact, no (item, sample) twice
    from softthink.pipeline import run_status
    from softthink.store import RunDir, expected_samples

    for p in sorted(specs.glob("*.yaml")):
        status, run_dir, err = run_status(p, runs)
        assert status == "cached", (p.stem, status, err)
        recs = _samples(run_dir)
        pairs = [(r["item_index"], r["sample_index"]) for r in recs]
        assert len(pairs) == len(set(pairs)), f"{p.stem}: a sample twice"
        key = json.loads(Path(run_dir, "config.json").read_text())["run_key"]
        assert len(recs) == expected_samples(RunDir(Path(run_dir), key=key)), (p.stem, len(recs))

    # greedy runs: the same tokens as a local run of the same specs
    from softthink.generate import generate_run
    from softthink.runspec import RunSpec

    for name in ("ci-gsm8k-greedy", "ci-humaneval-greedy"):
        local = generate_run(RunSpec.from_yaml(specs / f"{name}.yaml"), progress=False, runs_dir=tmp_path / "local")
        a = {(r["item_index"], r["sample_index"]): (r["token_ids"], r["text"]) for r in _samples(str(local.path))}
        b = {(r["item_index"], r["sample_index"]): (r["token_ids"], r["text"]) for r in _samples(rd[name])}
        assert a == b, name

    report = {"jobs_submitted": 4 + 1, "requeued_scontrol": 1, "requeued_usr2": 1, "cancelled": 1,
              "samples_at_interrupt": interrupted, "seconds_slurm_part": round(seconds, 1),
              "jobs": {k: {x: v.get(x) for x in ("job_id", "state", "requeues", "history")} for k, v in led.items()}}
    out = Path(os.environ.get("SOFTTHINK_SLURM_REPORT", tmp_path / "slurm-test.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
