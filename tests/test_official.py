"""Coming from the official code: its command lines (from-official) and its result files (import-official).

The command lines are the official README's and scripts' (docs/design/paper.md §7.2): each must give the run key of
the paper profile's matching experiment. The result files are built from the documented record format
(docs/design/evaluation.md §5), on synthetic completions.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from softthink import official
from softthink.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "sk-" + "TESTSECRET0123456789abcdefXYZ"  # stand-ins, built so they read as no real key
SECRET_HF = "hf_" + "TESTSECRETabcdefghij0123456789"

QWQ = '--model_name "./models/Qwen/QwQ-32B" --max_generated_tokens 32768 --temperature 0.6 --top_p 0.95 --top_k 30 '
AFTER = ('--after_thinking_temperature 0.6 --after_thinking_top_p 0.95 --after_thinking_top_k 30 '
         '--after_thinking_min_p 0.0 --mem_fraction_static 0.8 --start_idx 0 --num_gpus 8 ')
BASELINE = ('python run_sglang_softthinking.py --dataset "aime2024" ' + QWQ + '--max_topk 10 --min_p 0.0 ' + AFTER +
            '--early_stopping_entropy_threshold 0.0 --early_stopping_length_threshold 256 --end_idx 100000 '
            '--num_samples 16 --use_llm_judge --judge_model_name "gpt-4.1-2025-04-14"')
ST_MATH = ('python run_sglang_softthinking.py --dataset "{ds}" ' + QWQ + '--max_topk 10 --min_p 0.001 ' + AFTER +
           '--early_stopping_entropy_threshold 0.01 --early_stopping_length_threshold 256 --end_idx 100000 '
           '--num_samples 1 --enable_soft_thinking --use_llm_judge --judge_model_name "gpt-4.1-2025-04-14"')
GUMBEL = ('python run_sglang_softthinking.py --dataset "{ds}" ' + QWQ + '--max_topk 5 --min_p 0.0 ' + AFTER +
          '--end_idx 10000 --num_samples 16 --enable_soft_thinking --add_noise_gumbel_softmax '
          '--gumbel_softmax_temperature 0.5')
# every command line of the official README and scripts -> the paper profile's experiment it reproduces
COMMANDS = {
    "scripts/baseline/qwq32b.sh (= README baseline)": (BASELINE, "qwq32b-aime2024-cot"),
    **{f"scripts/st/qwq32b_st_math.sh {ds}": (ST_MATH.format(ds=ds), f"qwq32b-{ds}-soft")
       for ds in ("aime2024", "math500", "gsm8k", "gpqa_diamond")},
    **{f"scripts/st/qwq32b_gumble.sh {ds}": (GUMBEL.format(ds=ds), f"qwq32b-{ds}-gumbel")
       for ds in ("aime2024", "livecodebench")},
    "scripts/st/qwq32b_gumble.sh livecodebench --reeval": (GUMBEL.format(ds="livecodebench") + " --reeval",
                                                          "qwq32b-livecodebench-gumbel"),
}


def _key(spec_dict):
    """The run key of a spec, with a stand-in tokenizer and dataset (the same for both sides of a comparison)."""
    from softthink.data import DATASETS
    from softthink.runkey import run_key
    from softthink.runspec import RunSpec

    spec = RunSpec.from_dict(json.loads(json.dumps(spec_dict)))
    items = [SimpleNamespace(index=i) for i in range(DATASETS[spec.dataset].count)]
    dataset = SimpleNamespace(items=items, sha256={"file": "stand-in"})
    tok = SimpleNamespace(chat_template="stand-in", eos_token_id=1, bos_token_id=None)
    return run_key(spec, tokenizer=tok, dataset=dataset)


@pytest.fixture(scope="module")
def paper_experiments():
    from softthink.profiles import load_profile

    return {e.name: e.spec for e in load_profile("paper").experiments}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_official_command_gives_the_paper_run_key(name, paper_experiments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./models/Qwen/QwQ-32B here: the Hub id, as in the profile
    command, experiment = COMMANDS[name]
    t = official.translate(shlex.split(command))
    assert _key(official.full_spec(t)) == _key(paper_experiments[experiment])
    assert t.serving == {"tp_size": 8, "mem_fraction_static": 0.8}


def test_published_settings_spelled_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    soft = official.translate(shlex.split(ST_MATH.format(ds="aime2024"))).spec
    g = soft["generation"]
    assert (soft["model"], soft["n"], g["method"], g["think"]["max_topk"], g["think"]["min_p"]) == \
        ("Qwen/QwQ-32B", 1, "soft", 10, 0.001)
    assert g["cold_stop"] == {"threshold": 0.01, "length": 256}
    assert soft["grader"]["judge"] == {"model": "gpt-4.1-2025-04-14"}
    gumbel = official.translate(shlex.split(GUMBEL.format(ds="aime2024"))).spec["generation"]
    assert gumbel["noise"] == {"kind": "gumbel", "gumbel_tau": 0.5} and gumbel["cold_stop"]["threshold"] == 0.0


def test_local_model_folder_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "Qwen" / "QwQ-32B").mkdir(parents=True)
    t = official.translate(shlex.split(BASELINE))
    assert t.spec["model"] == "./models/Qwen/QwQ-32B"


def _value(name: str, typ, default):
    if typ is bool:
        return [f"--{name}"]
    if name == "dataset":
        return ["--dataset", "gsm8k"]
    if typ is int:
        return [f"--{name}", str((default or 0) + 3)]
    if typ is float:
        return [f"--{name}", "0.37"]
    return [f"--{name}", "other"]


@pytest.mark.parametrize("script", official.SCRIPTS)
def test_every_flag_is_mapped_noted_or_refused(script, tmp_path, monkeypatch):
    """Changing any official flag changes the printed spec or its notes, or is refused naming the flag."""
    monkeypatch.chdir(tmp_path)
    base = [script, "--dataset", "aime2024", "--model_name", "m/x", "--enable_soft_thinking"]
    if script == official.NOTHINKING_SCRIPT:
        base.remove("--enable_soft_thinking")
    before = official.to_yaml(official.translate(base))
    for name, default in official.official_defaults(script).items():
        if name == "enable_soft_thinking" and "--enable_soft_thinking" in base:
            continue
        argv = base + _value(name, official._FLAGS[name][0], default)
        try:
            after = official.to_yaml(official.translate(argv))
        except ConfigError as e:
            assert str(e).startswith(f"--{name}") or name in str(e), (name, str(e))
            continue
        assert after != before, f"--{name} changed nothing the user can see"
        assert SECRET_KEY not in after


def test_flags_the_official_code_does_not_have():
    with pytest.raises(ConfigError, match="--dirichlet_alpha"):
        official.translate(["run_sglang_softthinking.py", "--dataset", "aime2024", "--model_name", "m/x",
                            "--add_noise_dirichlet", "--dirichlet_temperature", "1.0"])
    with pytest.raises(ConfigError, match="not a flag of the official run_sglang_nothinking.py"):
        official.translate(["run_sglang_nothinking.py", "--dataset", "aime2024", "--model_name", "m/x",
                            "--gumbel_softmax_temperature", "0.5"])
    with pytest.raises(ConfigError, match="expected run_sglang_softthinking.py"):
        official.translate(["demo.py", "--dataset", "aime2024"])


def test_code_defaults_that_differ_from_the_readme_are_said():
    t = official.translate(["run_sglang_softthinking.py", "--dataset", "gsm8k", "--model_name", "m/x",
                            "--enable_soft_thinking"])
    text = official.to_yaml(t)
    assert t.spec["generation"]["think"]["max_topk"] == 15 and t.spec["end"] == 500
    assert "its README recommends 10" in text and "items 0-499" in text


def _cli(args, cwd, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "HF_TOKEN", "SOFTTHINK_TRACEBACK")}
    full.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "softthink", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=300)


def _tree_text(folder: Path) -> str:
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file())


def test_secrets_are_used_never_written(tmp_path):
    command = shlex.split(ST_MATH.format(ds="gsm8k")) + ["--api_key", SECRET_KEY, "--hf_token", SECRET_HF,
                                                          "--push_results_to_hf", "--hf_repo_id", "me/results"]
    res = _cli(["from-official", "--out", str(tmp_path / "spec.yaml"), "--", *command], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "OPENAI_API_KEY" in res.stderr and "HF_TOKEN" in res.stderr
    for text in (res.stdout, res.stderr, _tree_text(tmp_path)):
        assert SECRET_KEY not in text and SECRET_HF not in text
    assert "push RUN_DIR --repo-id me/results" in res.stdout


def test_bad_official_command_is_one_line(tmp_path):
    res = _cli(["from-official", "--", "python", "run_sglang_softthinking.py", "--dataset", "aime2024",
                "--model_name", "m/x", "--repetition_penalty", "1.1"], cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.startswith("error: --repetition_penalty") and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_run_from_an_official_command_line(tmp_path):
    """--run goes through generate and grade (tiny model on the CPU via --set); the secret reaches no file."""
    res = _cli(["from-official", "--run", "--runs-dir", str(tmp_path / "runs"), "--set", "engine=hf",
                "--set", "model=tiny-random-qwen2", "--set", "device=cpu", "--set", "dtype=float32", "--",
                "python", "run_sglang_softthinking.py", "--dataset", "gsm8k", "--model_name", "x/y", "--end_idx", "1",
                "--max_generated_tokens", "6", "--enable_soft_thinking", "--max_topk", "3", "--api_key", SECRET_KEY],
               cwd=tmp_path, OMP_NUM_THREADS="1")
    assert res.returncode == 0, res.stderr[-2000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").exists()
    cfg = json.loads((runs[0] / "config.json").read_text())
    assert cfg["spec"]["generation"]["think"]["max_topk"] == 3 and cfg["spec"]["n"] == 1
    assert SECRET_KEY not in _tree_text(tmp_path) + res.stdout + res.stderr


# ---------------------------------------------------------------------------------------------------------------
# import of official result files


def official_file(folder: Path, dataset: str = "gsm8k", n: int = 2, items: int = 2) -> Path:
    """An official results file for the first ``items`` items, in the documented record format: sample 0 boxes
    the gold answer, sample 1 says nothing; the recorded verdicts call sample 1 right through the LLM judge."""
    from softthink.data import load_dataset

    ds = load_dataset(dataset)
    hp = (f"Namespace(dataset='{dataset}', sampling_backend='flashinfer', model_name='./models/Qwen/QwQ-32B', "
          "num_gpus=8, cuda_graph_max_bs=None, max_running_requests=None, max_batch=1000000, mem_fraction_static=0.8, "
          f"random_seed=0, output_dir='results', start_idx=0, end_idx=100000, num_samples={n}, "
          "max_generated_tokens=32768, temperature=0.6, top_p=0.95, top_k=30, min_p=0.001, "
          "after_thinking_temperature=0.6, after_thinking_top_p=0.95, after_thinking_top_k=30, after_thinking_min_p=0.0, "
          "early_stopping_entropy_threshold=0.01, early_stopping_length_threshold=256, repetition_penalty=1.0, "
          "dirichlet_alpha=1.0, gumbel_softmax_temperature=1.0, add_noise_dirichlet=False, "
          "add_noise_gumbel_softmax=False, reeval=False, use_llm_judge=True, api_base=None, deployment_name=None, "
          f"api_version=None, api_key='{SECRET_KEY}', judge_model_name='gpt-4.1-2025-04-14', push_results_to_hf=False, "
          f"hf_token='{SECRET_HF}', hf_repo_id=None, enable_soft_thinking=True, think_end_str='</think>', max_topk=10)")
    records = []
    for it in ds.items[:items]:
        texts = [f"<think>so</think> The answer is \\boxed{{{it.answer}}}."] + ["I do not know."] * (n - 1)
        info = [{"rule_judge_result": True, "llm_judge_result": None, "finally_judge_result": True}]
        info += [{"rule_judge_result": False, "llm_judge_result": True, "finally_judge_result": True}] * (n - 1)
        records.append({"hyperparams": hp, "prompt": it.question, "completion": texts, "ground_truth": it.answer,
                        "generated_tokens": [120] + [32768] * (n - 1), "avg_generated_tokens": 0.0, "time": 0,
                        "idx": it.index, "n": n, "finish_generation": [False] * n, "judge_info": info,
                        "passat1": 1.0, "passat1_list": [1.0] * n})
    path = folder / f"QwQ-32B_{dataset}_True_{n}_0.6_0.95_30_0.001_1.0_1.0_10_32768_0.01_256.json"
    path.write_text(json.dumps(records, indent=1))
    return path


@pytest.fixture
def data_or_skip():
    from softthink.data import DataNotFound, load_dataset

    try:
        load_dataset("gsm8k")
    except DataNotFound:
        pytest.skip("gsm8k files not found (make data)")


def test_import_grades_again_beside_the_recorded_verdicts(tmp_path, data_or_skip):
    from softthink.summaries import summarize_runs

    path = official_file(tmp_path)
    res = _cli(["import-official", str(path), "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (run,) = list((tmp_path / "runs").iterdir())
    cfg = json.loads((run / "config.json").read_text())
    import hashlib

    assert cfg["imported"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert cfg["imported"]["origin"] == official.OFFICIAL_REPO and cfg["spec"]["generation"]["method"] == "soft"
    rows = summarize_runs([run]).set_index("grader")
    suite = [g for g in rows.index if g.endswith("-suite")][0]
    assert rows.loc[suite, "pass@1"] == pytest.approx(50.0)  # softthink: only the boxed answers are right
    assert rows.loc["official-recorded", "pass@1"] == pytest.approx(50.0)  # the official rule verdicts
    assert rows.loc["official-recorded", "acc_judge"] == pytest.approx(100.0)  # rule OR the official judge
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert [s["finish_reason"] for s in samples[:2]] == ["stop", "length"]
    assert SECRET_KEY not in _tree_text(tmp_path / "runs") and SECRET_HF not in _tree_text(tmp_path / "runs")
    again = _cli(["import-official", str(path), "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path)
    assert again.returncode == 0 and "already imported" in again.stderr


@pytest.mark.parametrize("damage", ["not_json", "missing_key", "short_list", "bad_hyperparams", "statistics"])
def test_malformed_official_file_is_one_error_and_writes_nothing(damage, tmp_path, data_or_skip):
    path = official_file(tmp_path)
    records = json.loads(path.read_text())
    if damage == "not_json":
        path.write_text("[{")
    elif damage == "missing_key":
        del records[1]["completion"]
    elif damage == "short_list":
        records[0]["generated_tokens"] = [1]
    elif damage == "bad_hyperparams":
        for r in records:
            r["hyperparams"] = "__import__('os').system('echo hi')"
    elif damage == "statistics":
        records = {"total_num": 2, "pass@1": 1.0}
    if damage != "not_json":
        path.write_text(json.dumps(records))
    good = official_file(tmp_path / "..", items=1)  # a good file before the bad one: still nothing written
    res = _cli(["import-official", str(good), str(path), "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and str(path) in res.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
