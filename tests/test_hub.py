"""Results to the Hugging Face Hub (export-hf, push) and models from it (model fetch), with no hub reachable: the
upload and the download go to a local HTTP stand-in (tests/hub_standin.py) at HF_ENDPOINT that records what
huggingface_hub sends."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
pytest.importorskip("huggingface_hub")

from hub_standin import HubStandIn  # noqa: E402

from softthink import hub  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_" + "STANDINtokenABCDEFGHIJ0123456789"  # a stand-in, built so it reads as no real token
GPQA_TEXT = "SYNTHETIC-GPQA-COMPLETION-must-not-leave"


def _cli(args, cwd, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT", "SOFTTHINK_TRACEBACK")}
    full.update(PYTHONPATH=str(ROOT), HF_HOME=str(Path(cwd) / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1", **env)
    return subprocess.run([sys.executable, "-m", "softthink", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=120)


def make_run(root: Path, dataset: str, name: str, texts: list[str]) -> Path:
    """A finished run directory written by hand: two items, len(texts) samples each, rule grades."""
    from softthink.runspec import RunSpec
    from softthink.store import write_json_atomic

    run = root / name
    spec = RunSpec.from_dict({"model": "tiny-random-qwen2", "dataset": dataset, "n": len(texts), "end": 2})
    key = {"dataset": {"name": dataset, "item_indices": [0, 1]}, "n": len(texts), "generation": spec.generation.to_dict()}
    write_json_atomic(run / "config.json", {"hash": "0" * 64, "slug": name, "spec": spec.to_dict(), "run_key": key,
                                            "versions": {"softthink": "test"}})
    samples, grades = [], []
    for i in (0, 1):
        for j, text in enumerate(texts):
            samples.append({"item_index": i, "item_id": str(i), "sample_index": j, "sample_uid": i * 1_000_000 + j,
                            "text": text, "token_ids": [1, 2, 3], "num_tokens": 10 + i + j, "finish_reason": "stop",
                            "think_end_reason": "think_end", "flags": {"cold_stop": j == 0}})
            grades.append({"item_index": i, "sample_index": j, "correct": j == 0, "status": "graded",
                           "extracted": "A" if j == 0 else None})
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (run / "grades").mkdir()
    (run / "grades" / "2-suite.jsonl").write_text("".join(json.dumps(g) + "\n" for g in grades))
    return run


@pytest.fixture
def runs(tmp_path):
    return [make_run(tmp_path / "runs", "gsm8k", "tiny-gsm8k-soft-aaaa", ["<think>a</think> \\boxed{1}", "no"]),
            make_run(tmp_path / "runs", "gpqa_diamond", "tiny-gpqa-soft-bbbb", [GPQA_TEXT, GPQA_TEXT + " B"])]


def test_export_reads_back_every_sample(runs, tmp_path):
    import yaml

    res = _cli(["export-hf", *map(str, runs), "--out", str(tmp_path / "out")], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    names = [c["config_name"] for c in front["configs"]]
    assert names == ["tiny-gsm8k-soft-aaaa", "tiny-gpqa-soft-bbbb", "settings", "summary"]
    for c in front["configs"]:  # every configuration's files exist (what datasets.load_dataset(DIR, name) reads)
        assert all((out / f["path"]).is_file() for f in c["data_files"])
    assert "GPQA questions and completions are not included" in card and "| settings" not in card
    # the gsm8k run: every sample back, equal, with its grades
    df = pd.read_parquet(out / "tiny-gsm8k-soft-aaaa" / "samples.parquet")
    samples = [json.loads(x) for x in (runs[0] / "samples.jsonl").read_text().splitlines()]
    assert len(df) == len(samples)
    for row, s in zip(df.to_dict("records"), samples):
        for k in ("item_index", "sample_index", "sample_uid", "text", "num_tokens", "finish_reason"):
            assert row[k] == s[k]
        assert json.loads(row["flags"]) == s["flags"]
        assert row["2-suite:correct"] == (s["sample_index"] == 0)
    settings = pd.read_parquet(out / "settings" / "settings.parquet")
    assert list(settings["config_name"]) == names[:2] and set(settings["n"]) == {2}
    assert len(pd.read_parquet(out / "summary" / "summary.parquet")) == 2
    # GPQA: indices, lengths and grades only; its text is nowhere in the folder
    gpqa = pd.read_parquet(out / "tiny-gpqa-soft-bbbb" / "samples.parquet")
    assert "text" not in gpqa.columns and len(gpqa) == 4
    assert gpqa["2-suite:extracted"].iloc[0] == "A" and pd.isna(gpqa["2-suite:extracted"].iloc[1])
    assert not any(GPQA_TEXT.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())


def test_push_sends_the_folder_token_in_header_only(runs, tmp_path):
    with HubStandIn() as standin:
        res = _cli(["push", *map(str, runs), "--repo-id", "me/softthink-results", "--private"], cwd=tmp_path,
                   HF_ENDPOINT=standin.url, HF_TOKEN=TOKEN)
    assert res.returncode == 0, res.stderr
    assert TOKEN not in res.stdout + res.stderr
    paths = [r["path"].split("?")[0] for r in standin.requests if r["method"] == "POST"]
    assert "/api/repos/create" in paths and "/api/datasets/me/softthink-results/commit/main" in paths
    create = next(r for r in standin.requests if r["path"] == "/api/repos/create")
    body = json.loads(create["body"])
    assert (body["organization"], body["name"], body["type"]) == ("me", "softthink-results", "dataset")
    assert body.get("private") is True or body.get("visibility") == "private", body
    files = [line["value"]["path"] for line in standin.commit_lines() if line["key"] == "file"]
    assert sorted(files) == ["README.md", "settings/settings.parquet", "summary/summary.parquet",
                             "tiny-gpqa-soft-bbbb/samples.parquet", "tiny-gsm8k-soft-aaaa/samples.parquet"]
    for r in standin.requests:
        auth = {k.lower(): v for k, v in r["headers"].items()}.get("authorization")
        assert auth in (None, f"Bearer {TOKEN}")
        other_headers = {k: v for k, v in r["headers"].items() if k.lower() != "authorization"}
        assert TOKEN not in r["path"] and TOKEN.encode() not in r["body"] and TOKEN not in json.dumps(other_headers)
        assert GPQA_TEXT.encode() not in r["body"]
    assert any({k.lower(): v for k, v in r["headers"].items()}.get("authorization") for r in standin.requests)
    assert TOKEN not in "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*")
                                if p.is_file() and "hf_home" not in p.parts)


def test_push_without_token_or_with_bad_repo_is_one_line(runs, tmp_path):
    res = _cli(["push", str(runs[0]), "--repo-id", "me/x"], cwd=tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    assert res.returncode == 2 and "HF_TOKEN" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _cli(["push", str(runs[0]), "--repo-id", "no-slash"], cwd=tmp_path, HF_TOKEN=TOKEN)
    assert res.returncode == 2 and "ORG/NAME" in res.stderr


def test_model_fetch_into_the_official_layout(tmp_path):
    files = {"config.json": b'{"model_type": "qwen2"}', "model.safetensors": b"W" * 64, "model.gguf": b"G"}
    with HubStandIn(models={"tiny-org/tiny-model": files}) as standin:
        res = _cli(["model", "fetch", "tiny-org/tiny-model"], cwd=tmp_path, HF_ENDPOINT=standin.url)
    assert res.returncode == 0, res.stderr
    local = tmp_path / "models" / "tiny-org" / "tiny-model"
    assert (local / "config.json").read_bytes() == files["config.json"]
    assert (local / "model.safetensors").exists() and not (local / "model.gguf").exists()  # download.py's patterns
    # the official command line then uses the local folder, offline
    from softthink import official

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        t = official.translate(["run_sglang_softthinking.py", "--dataset", "aime2024",
                                "--model_name", "./models/tiny-org/tiny-model"])
    finally:
        os.chdir(cwd)
    assert t.spec["model"] == "./models/tiny-org/tiny-model"


def test_model_fetch_without_the_hub_is_one_line(tmp_path):
    res = _cli(["model", "fetch", "Qwen/QwQ-32B"], cwd=tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: model fetch Qwen/QwQ-32B: cannot reach the Hugging Face Hub")
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "models").exists()


def test_profile_push_section():
    assert hub.validate_push_section({"repo_id": "me/r"}) == {"repo_id": "me/r", "private": False}
    assert hub.validate_push_section(None) is None
    with pytest.raises(hub.ConfigError, match="HF_TOKEN"):
        hub.validate_push_section({"repo_id": "me/r", "token": "x"})
    with pytest.raises(hub.ConfigError, match="ORG/NAME"):
        hub.validate_push_section({"repo_id": "r"})


def test_profile_with_a_push_section(tmp_path):
    from softthink.profiles import load_profile

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "_profile.yaml").write_text("push: {repo_id: me/results, private: true}\n")
    assert load_profile("p", root=tmp_path).push == {"repo_id": "me/results", "private": True}
    (tmp_path / "p" / "_profile.yaml").write_text("push: {repo_id: me/results, hf_token: hf_x}\n")
    with pytest.raises(hub.ConfigError, match="push: unknown key 'hf_token'"):
        load_profile("p", root=tmp_path)
