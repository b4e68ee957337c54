"""The notebooks through the SGLang engine: `reproduce --profile ci-sglang` (papermill, generation with
`engine: sglang` + `device: cpu`, grading, tables) on the CPU, into the results store; its greedy run gives the
same samples as the same spec on the transformers engine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def profile_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ci-sglang")
    cmd = [sys.executable, "-m", "softthink", "reproduce", "--profile", "ci-sglang", "--no-report",
           "--runs-dir", str(tmp / "runs"), "--build-dir", str(tmp / "build")]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return tmp, p.stdout


def _samples(run_dir: Path) -> list:
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines() if line.strip()]


def _run_dirs(root: Path) -> dict:
    out = {}
    for cfg in root.rglob("config.json"):
        body = json.loads(cfg.read_text())
        method = body["generation"]["method"]
        out.setdefault(method, []).append(cfg.parent)
    return out


def test_profile_generates_grades_and_tabulates(profile_run):
    tmp, stdout = profile_run
    runs = _run_dirs(tmp / "runs")
    assert set(runs) >= {"cot_greedy", "soft"}, runs
    for dirs in runs.values():
        for d in dirs:
            samples = _samples(d)
            assert len(samples) == 2 and all(s["token_ids"] for s in samples)
            assert json.loads((d / "config.json").read_text())["run_key"]["engine"]["name"] == "sglang"
    assert any((tmp / "build").rglob("*tables*.ipynb")), "the tables notebook did not run"


def test_greedy_samples_equal_the_transformers_engine(profile_run, tmp_path):
    from softthink import profiles
    from softthink.runs import RunSpec, generate_run

    tmp, _ = profile_run
    exp = next(e for e in profiles.load_profile("ci-sglang").experiments if e.name.endswith("greedy"))
    hf_dir = generate_run(RunSpec.from_dict(dict(exp.spec, engine="hf")), progress=False, runs_dir=tmp_path).path
    sg_dir = _run_dirs(tmp / "runs")["cot_greedy"][0]
    a, b = _samples(Path(hf_dir)), _samples(sg_dir)
    assert [s["token_ids"] for s in a] == [s["token_ids"] for s in b]
    assert [s["text"] for s in a] == [s["text"] for s in b]
