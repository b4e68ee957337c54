"""The notebooks through SGLang servers: `reproduce --profile ci-sglang` (papermill; one server per model started
by the pipeline, the runs as its clients with every sample in flight; grading, tables) on the CPU, into the results
store; each greedy run gives the same samples as the same spec on the transformers engine, and no server is left
running."""
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
    """In (item, sample) order: a server run appends samples in the order they finish."""
    recs = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines() if line.strip()]
    return sorted(recs, key=lambda r: (r["item_index"], r["sample_index"]))


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
        assert len(dirs) == 2  # two models
        for d in dirs:
            samples = _samples(d)
            assert len(samples) == 2 and all(s["token_ids"] for s in samples)
            assert json.loads((d / "config.json").read_text())["run_key"]["engine"]["name"] == "sglang"
    assert any((tmp / "build").rglob("*tables*.ipynb")), "the tables notebook did not run"


def test_one_server_per_model_and_none_left(profile_run):
    import psutil

    tmp, _ = profile_run
    summary = json.loads((tmp / "build" / "reproduce.json").read_text())
    servers = summary["servers"]
    assert sorted(s["model"] for s in servers) == ["smollm2-135m", "tiny-random-qwen2"]
    for s in servers:
        assert len(s["runs"]) == 2 and s["ended"] == "stopped" and s["start_seconds"] > 0
        assert s["url"].startswith("http://127.0.0.1:") and Path(s["log"]).exists()
    assert next(s for s in servers if s["model"] == "tiny-random-qwen2")["layout"]["dp_size"] == 2
    ports = {int(s["url"].rsplit(":", 1)[1]) for s in servers}
    listening = {c.laddr.port for c in psutil.net_connections("tcp") if c.status == "LISTEN"}
    assert not ports & listening, "a server the pipeline started is still listening"


def test_greedy_samples_equal_the_transformers_engine(profile_run, tmp_path):
    from softthink import profiles
    from softthink.runs import RunSpec, generate_run

    tmp, _ = profile_run
    exps = [e for e in profiles.load_profile("ci-sglang").experiments if e.name.endswith("greedy")]
    assert len(exps) == 2
    sg_dirs = {json.loads((d / "config.json").read_text())["spec"]["model"]: d
               for d in _run_dirs(tmp / "runs")["cot_greedy"]}
    for exp in exps:
        spec = {k: v for k, v in exp.spec.items() if k != "serving"}
        hf_dir = generate_run(RunSpec.from_dict(dict(spec, engine="hf")), progress=False, runs_dir=tmp_path).path
        a, b = _samples(Path(hf_dir)), _samples(sg_dirs[exp.spec["model"]])
        assert [s["token_ids"] for s in a] == [s["token_ids"] for s in b], exp.name
        assert [s["text"] for s in a] == [s["text"] for s in b], exp.name
