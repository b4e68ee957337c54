"""`python -m softthink reproduce --profile ci --executor slurm` end to end against the one-node Slurm (make
test-slurm): `--no-wait` submits one `run-group` job per group and returns without grading; a second call while the
job is queued or running submits nothing; a waiting call follows the job to its end, then grades and runs the
analysis; every run complete with exact counts; the last call finds everything cached and submits nothing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _reproduce(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "softthink", "reproduce", "--profile", "ci", "--executor", "slurm", "--no-report",
           "--runs-dir", str(tmp / "runs"), "--build-dir", str(tmp / "build"), "--figures-dir", str(tmp / "fig"),
           "--slurm-time", "20:00", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)


def test_ci_profile_through_reproduce_executor_slurm(slurm_cluster, tmp_path):
    from softthink.slurm import read_ledger

    first = _reproduce(tmp_path, "--no-wait")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "grading and analysis wait" in first.stdout
    summary = json.loads((tmp_path / "build" / "reproduce.json").read_text())
    assert [j["submitted"] for j in summary["jobs"]] == [True] and not any(s["step"] == "grade"
                                                                           for s in summary["steps"])
    job_id = summary["jobs"][0]["job_id"]

    second = _reproduce(tmp_path, "--no-wait")  # the job is still queued or running
    again = json.loads((tmp_path / "build" / "reproduce.json").read_text())["jobs"]
    if again:  # (empty only if the job already finished all runs)
        assert again[0]["job_id"] == job_id and not again[0]["submitted"], second.stdout[-2000:]

    done = _reproduce(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "build" / "reproduce.json").read_text())
    assert summary["failed"] == 0 and any(s["step"] == "grade" and s["status"] == "ok" for s in summary["steps"])
    ledger = read_ledger(tmp_path / "build" / "slurm")["jobs"]
    assert [(j["job_id"], j["state"]) for j in ledger.values()] == [(job_id, "done")]  # one job, never resubmitted
    for cfg in (tmp_path / "runs").rglob("config.json"):
        recs = [json.loads(x) for x in (cfg.parent / "samples.jsonl").read_text().splitlines() if x.strip()]
        pairs = [(r["item_index"], r["sample_index"]) for r in recs]
        n = json.loads(cfg.read_text())["spec"]["n"]
        assert len(pairs) == len(set(pairs)) == n, cfg.parent.name  # ci: one item per run

    last = _reproduce(tmp_path)
    assert last.returncode == 0
    summary = json.loads((tmp_path / "build" / "reproduce.json").read_text())
    assert summary["jobs"] == [] and summary["counts"]["ok"] == 0, "a complete profile submitted a job"
    assert len(read_ledger(tmp_path / "build" / "slurm")["jobs"]) == 1
