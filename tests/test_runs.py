"""Results store: run keys, secrets, torn lines, resume, separate-process grading, the CLI end to end."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from softthink import runs, store
from softthink.config import ConfigError, GenerationConfig

REPO = Path(__file__).resolve().parent.parent
TINY = "tiny-random-llama"


# ---------------------------------------------------------------------------------------------------------------
# a fake engine with the HFEngine.generate_iter shape (deterministic per (seed, sample_uid, prompt))


class FakeGeneration:
    def __init__(self, text, token_ids, uid, think_end_step, trace=False):
        self.text = text
        self.token_ids = token_ids
        self.sample_uid = uid
        self.think_end_step = think_end_step
        self.trace = {"token": token_ids, "entropy": [0.5] * len(token_ids)} if trace else None

    def to_dict(self):
        n = len(self.token_ids)
        extra = {"trace": self.trace} if self.trace is not None else {}
        return {**extra, "text": self.text, "token_ids": self.token_ids, "num_tokens": n,
                "num_thinking_tokens": self.think_end_step or n, "num_answer_tokens": n - (self.think_end_step or n),
                "finish_reason": "eos" if self.think_end_step else "length",
                "think_end_reason": "marker" if self.think_end_step else None, "think_end_step": self.think_end_step,
                "wall_time": random.random(), "prompt_tokens": 7, "sample_uid": self.sample_uid}


class Killed(RuntimeError):
    pass


class FakeEngine:
    """Yields rows out of order (last first), like an engine whose short rows finish early."""

    def __init__(self, tokenizer, die_after: int | None = None):
        self.tokenizer = tokenizer
        self.die_after = die_after
        self.produced = 0
        self.prompts_seen = []

    def generate_iter(self, prompts, cfg, sample_uids=None):
        uids = sample_uids if sample_uids is not None else list(range(len(prompts)))
        for i in reversed(range(len(prompts))):
            if self.die_after is not None and self.produced >= self.die_after:
                raise Killed("simulated crash")
            self.prompts_seen.append(list(prompts[i]))
            seed = hashlib.sha256(f"{cfg.seed}|{uids[i]}|{prompts[i]}".encode()).digest()
            rng = random.Random(seed)
            answer = rng.choice(["18", "3", "70000", "5", "7"])
            finished = rng.random() < 0.8
            text = "hmm " * rng.randint(1, 5) + (f"</think>The answer is \\boxed{{{answer}}}" if finished else "and")
            ids = list(text.encode())
            self.produced += 1
            yield i, FakeGeneration(text, ids, uids[i], 10 if finished else None, trace=cfg.trace)


@pytest.fixture(scope="module")
def tok():
    return runs.load_tokenizer(TINY)


@pytest.fixture(scope="module")
def gsm8k():
    from softthink.data import load_dataset

    return load_dataset("gsm8k")


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv(runs.RUNS_ENV, str(root))
    return root


def spec_dict(**over):
    d = {"model": TINY, "dataset": "gsm8k", "limit": 3, "n": 2, "device": "cpu",
         "generation": {"method": "soft", "max_new_tokens": 16, "seed": 0, "batch_size": 2, "think": {"max_topk": 5}}}
    d.update(over)
    return d


def _key_hash(d, tok, ds):
    return runs.hash_key(runs.run_key(runs.RunSpec.from_dict(d), tokenizer=tok, dataset=ds))


def _records(rd):
    """Sample records without the per-run noise (wall time), keyed by (item, sample)."""
    out = {}
    for r in runs.read_jsonl(rd.samples_path):
        r = dict(r)
        r.pop("wall_time", None)
        out[(r["item_index"], r["sample_index"])] = r
    return out


# ---------------------------------------------------------------------------------------------------------------
# spec validation


def test_unknown_key_names_key_and_allowed():
    with pytest.raises(ConfigError) as e:
        runs.RunSpec.from_dict({**spec_dict(), "modle": "x"})
    assert "'modle'" in str(e.value) and "allowed keys" in str(e.value) and "batch_size" in str(e.value)
    with pytest.raises(ConfigError, match="think.max_topc"):
        runs.RunSpec.from_dict(spec_dict(generation={"think": {"max_topc": 3}}))
    with pytest.raises(ConfigError, match="grader.mode"):
        runs.RunSpec.from_dict(spec_dict(grader={"mode": "lenient"}))
    with pytest.raises(ConfigError, match="dataset"):
        runs.RunSpec.from_dict(spec_dict(dataset="gsm9k"))
    with pytest.raises(ConfigError, match="api_key_env"):  # keys come only from the environment
        runs.RunSpec.from_dict(spec_dict(grader={"judge": {"api_key": "sk-123"}}))
    with pytest.raises(ConfigError, match="dated"):
        runs.RunSpec.from_dict(spec_dict(grader={"judge": {"model": "gpt-4.1"}}))
    with pytest.raises(ConfigError, match="n:"):
        runs.RunSpec.from_dict(spec_dict(n=0))


def test_yaml_spec_and_overrides(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("model: tiny-random-llama\ndataset: gsm8k\nlimit: 2\nn: 1\n"
                 "generation:\n  method: soft\n  think:\n    min_p: 0.001\n")
    spec = runs.RunSpec.from_yaml(p, ["generation.think.max_topk=3", "n=4", "grader.mode=official"])
    assert spec.n == 4 and spec.grader.mode == "official"
    cfg = spec.generation_config()
    assert cfg.think.max_topk == 3 and cfg.think.min_p == 0.001
    p.write_text("model: tiny-random-llama\ndataset: gsm8k\ngeneration:\n  think:\n    min_p: 1e-3\n")
    with pytest.raises(ConfigError, match="1e-3"):  # YAML 1.1 reads 1e-3 as a string
        runs.RunSpec.from_yaml(p)


def test_cli_rejects_a_bad_spec_before_loading_anything(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("model: tiny-random-llama\ndataset: gsm8k\nsamples: 4\n")
    res = subprocess.run([sys.executable, "-m", "softthink", "run", "--config", str(p), "--runs-dir",
                          str(tmp_path / "runs")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "unknown key 'samples'" in res.stderr and "allowed keys" in res.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------------------------
# run key


def test_hash_stable_and_key_order_irrelevant(tok, gsm8k):
    d = spec_dict()
    h1 = _key_hash(d, tok, gsm8k)
    assert h1 == _key_hash(copy.deepcopy(d), tok, gsm8k)
    reordered = dict(reversed(list(d.items())))
    reordered["generation"] = dict(reversed(list(d["generation"].items())))
    assert list(reordered) != list(d)
    assert _key_hash(reordered, tok, gsm8k) == h1
    # dotted keys and nested keys resolve to the same config, hence the same hash
    dotted = spec_dict(generation={"method": "soft", "max_new_tokens": 16, "seed": 0, "batch_size": 2,
                                   "think.max_topk": 5})
    assert _key_hash(dotted, tok, gsm8k) == h1
    # a default written out explicitly is the same resolved config
    explicit = spec_dict(generation={**d["generation"], "preset": "corrected"})
    assert _key_hash(explicit, tok, gsm8k) == h1


_STRINGS = ["sequential", "joint", "greedy_argmax", "sample", "thinking", "answer", "off", "abort", "none", "gumbel",
            "dirichlet", "support", "counter", "global", "raw", "log_vocab", "model", "fp32", "think",
            "after_open_tag", "isolate", "share", "fail", "log", "replay_hard", "post_norm", "pre_norm", "filtered",
            "tempered", "argmax", "cot_sample", "as_published", "official_head", "official_full"]


def _alternatives(value):
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, 2]
    if isinstance(value, float):
        return [value / 2 if value else 0.5, value * 1.5 if value else 0.25, 0.9]
    if isinstance(value, str):
        return [s for s in _STRINGS if s != value] + [value + "x"]
    if isinstance(value, list):
        return [value + ["STOP"]]
    return []


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + k + ".")
        else:
            yield prefix + k, v


def test_every_generation_parameter_changes_the_hash(tok, gsm8k):
    base = spec_dict()
    h0 = _key_hash(base, tok, gsm8k)
    resolved = GenerationConfig.from_dict(base["generation"]).to_dict()
    changed, unmutable = [], []
    for key, value in _leaves(resolved):
        for alt in _alternatives(value):
            gen = {**base["generation"], key: alt}
            try:
                new = GenerationConfig.from_dict(gen).to_dict()
            except ConfigError:
                continue
            if dict(_leaves(new))[key] == value:
                continue
            assert _key_hash({**base, "generation": gen}, tok, gsm8k) != h0, key
            changed.append(key)
            break
        else:
            unmutable.append(key)
    assert not unmutable, f"found no valid alternative value for {unmutable}"
    assert len(changed) > 40


@pytest.mark.parametrize("over", [{"n": 3}, {"limit": 4}, {"start": 1}, {"end": 2}, {"dataset": "aime2024"},
                                  {"model": "tiny-random-qwen2"}, {"dtype": "bfloat16"}, {"batch_size": 1},
                                  {"engine": "sglang"}])
def test_run_level_changes_change_the_hash(tok, gsm8k, over):
    from softthink.data import load_dataset

    base = spec_dict()
    ds = gsm8k if over.get("dataset", "gsm8k") == "gsm8k" else load_dataset(over["dataset"])
    t = tok if "model" not in over else runs.load_tokenizer(over["model"])
    assert _key_hash({**base, **over}, t, ds) != _key_hash(base, tok, gsm8k)


def test_grader_and_runs_dir_do_not_change_the_hash(tok, gsm8k, tmp_path):
    base = spec_dict()
    h = _key_hash(base, tok, gsm8k)
    assert _key_hash({**base, "grader": {"mode": "official", "judge": True}}, tok, gsm8k) == h
    assert _key_hash({**base, "runs_dir": str(tmp_path)}, tok, gsm8k) == h


def test_plan_run_location(tok, gsm8k, runs_root, tmp_path):
    spec = runs.RunSpec.from_dict(spec_dict())
    rd = runs.plan_run(spec, tokenizer=tok, dataset=gsm8k)
    assert rd.path.parent == runs_root
    assert rd.path.name == f"tiny-random-llama-gsm8k-soft-{rd.hash[:12]}"
    other = runs.plan_run(spec, tokenizer=tok, dataset=gsm8k, runs_dir=tmp_path / "x")
    assert other.path.parent == tmp_path / "x" and other.hash == rd.hash


# ---------------------------------------------------------------------------------------------------------------
# secrets


def test_scrub_secrets():
    cfg = {"api_key": "abc", "nested": {"hf_token": "hf_x", "max_new_tokens": 5, "aime2024_key": "fixed",
                                        "api_key_env": "OPENAI_API_KEY", "password": "pw"},
           "list": ["sk-" + "abcdefghijklmnopqrstuvwx", "fine"], "key": "k"}  # fake, built at run time
    out = runs.scrub_secrets(cfg)
    assert out["api_key"] == out["key"] == runs.REDACTED
    assert out["nested"]["hf_token"] == out["nested"]["password"] == runs.REDACTED
    assert out["nested"]["max_new_tokens"] == 5 and out["nested"]["aime2024_key"] == "fixed"
    assert out["nested"]["api_key_env"] == "OPENAI_API_KEY"
    assert out["list"] == [runs.REDACTED, "fine"]


def test_config_json_has_no_secrets(tok, runs_root, monkeypatch):
    secret = "sk-test-" + "q" * 32
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "z" * 30)
    spec = runs.RunSpec.from_dict(spec_dict(limit=1, n=1, grader={"judge": {"api_key_env": "OPENAI_API_KEY"}}))
    rd = runs.generate_run(spec, engine=FakeEngine(tok), progress=False)
    text = rd.config_path.read_text()
    assert secret not in text and "z" * 30 not in text
    cfg = json.loads(text)
    assert cfg["hash"] == rd.hash and cfg["spec"]["grader"]["judge"]["api_key_env"] == "OPENAI_API_KEY"
    assert cfg["generation"] == spec.generation_config().to_dict()
    assert cfg["versions"]["torch"] and cfg["versions"]["transformers"]


# ---------------------------------------------------------------------------------------------------------------
# samples file: torn lines, resume


def test_read_jsonl_torn_tail(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": 3')
    assert [r["a"] for r in runs.read_jsonl(p)] == [1, 2]
    assert p.read_bytes().endswith(b'{"a": 3')  # read-only unless repair
    runs.read_jsonl(p, repair=True)
    assert p.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    # a complete-looking last object without its newline is still torn
    p.write_bytes(b'{"a": 1}\n{"a": 2}')
    assert [r["a"] for r in runs.read_jsonl(p, repair=True)] == [1]
    assert p.read_bytes() == b'{"a": 1}\n'
    # garbage with a newline as the last line: torn
    p.write_bytes(b'{"a": 1}\n{"a": \n')
    assert [r["a"] for r in runs.read_jsonl(p, repair=True)] == [1]
    # corruption in the middle is not a torn tail
    p.write_bytes(b'{"a": 1}\n{"a\n{"a": 3}\n')
    with pytest.raises(ValueError, match="not the last"):
        runs.read_jsonl(p)


def test_resume_after_crash_and_torn_line_matches_uninterrupted(tok, tmp_path):
    spec = runs.RunSpec.from_dict(spec_dict(limit=4, n=3))
    ref = runs.generate_run(spec, engine=FakeEngine(tok), progress=False, runs_dir=tmp_path / "ref")
    assert len(_records(ref)) == 12

    root = tmp_path / "crash"
    with pytest.raises(Killed):
        runs.generate_run(spec, engine=FakeEngine(tok, die_after=5), progress=False, runs_dir=root)
    rd = runs.plan_run(spec, tokenizer=tok, runs_dir=root)
    assert len(runs.read_jsonl(rd.samples_path)) == 5
    with open(rd.samples_path, "ab") as f:  # the process died mid-line
        f.write(b'{"item_index": 3, "sample_index": 2, "text": "half a recor')
    second = FakeEngine(tok)
    rd2 = runs.generate_run(spec, engine=second, progress=False, runs_dir=root)
    assert rd2.path == rd.path
    # batches of 2: the first two were complete (4 samples), the third was cut after 1 of 2 and is redone whole
    assert second.produced == 12 - 4
    lines = rd.samples_path.read_bytes().splitlines()
    keys = [(json.loads(x)["item_index"], json.loads(x)["sample_index"]) for x in lines]
    assert sorted(keys) == [(i, j) for i in range(4) for j in range(3)]  # each exactly once
    assert _records(rd) == _records(ref)

    third = FakeEngine(tok)  # a complete run does no work
    runs.generate_run(spec, engine=third, progress=False, runs_dir=root)
    assert third.produced == 0


def test_sample_records(tok, runs_root):
    spec = runs.RunSpec.from_dict(spec_dict(limit=2, n=2))
    eng = FakeEngine(tok)
    rd = runs.generate_run(spec, engine=eng, progress=False)
    recs = runs.read_jsonl(rd.samples_path)
    r = recs[0]
    for k in ("item_index", "item_id", "sample_index", "sample_uid", "prompt_ids_sha256", "text", "token_ids",
              "num_tokens", "num_thinking_tokens", "finish_reason", "think_end_reason", "think_end_step",
              "wall_time"):
        assert k in r, k
    for r in recs:
        assert r["sample_uid"] == r["item_index"] * runs.UID_STRIDE + r["sample_index"]
        assert r["num_tokens"] == len(r["token_ids"])
    # the prompt-ids hash is of the ids the engine was given
    seen = {hashlib.sha256(",".join(map(str, p)).encode()).hexdigest() for p in eng.prompts_seen}
    assert {r["prompt_ids_sha256"] for r in recs} == seen
    assert len(seen) == 2  # one prompt per item


def test_traces_go_to_their_own_files(tok, runs_root):
    import gzip

    spec = runs.RunSpec.from_dict(spec_dict(limit=2, n=1, generation={"method": "soft", "trace": True}))
    rd = runs.generate_run(spec, engine=FakeEngine(tok), progress=False)
    recs = runs.read_jsonl(rd.samples_path)
    assert all("trace" not in r for r in recs)
    for r in recs:
        tr = json.loads(gzip.decompress(store.trace_path(rd, r["item_index"], r["sample_index"]).read_bytes()))
        assert tr["token"] == r["token_ids"]


def test_lock_blocks_a_second_generator(tmp_path):
    with runs.run_lock(tmp_path):
        with pytest.raises(RuntimeError, match="another process"):
            with runs.run_lock(tmp_path):
                pass


# ---------------------------------------------------------------------------------------------------------------
# grading in a separate process, summaries


def test_grade_run_uses_a_separate_process(tok, runs_root, monkeypatch):
    spec = runs.RunSpec.from_dict(spec_dict(limit=3, n=2))
    rd = runs.generate_run(spec, engine=FakeEngine(tok), progress=False)
    from softthink import grading

    def boom(*a, **k):
        raise AssertionError("graded inside the generating process")

    monkeypatch.setattr(grading, "grade_many", boom)
    path = runs.grade_run(rd.path)
    grades = runs.read_jsonl(path)
    assert path.parent == rd.grades_dir and path.name.endswith("-suite.jsonl")
    assert sorted((g["item_index"], g["sample_index"]) for g in grades) == [(i, j) for i in range(3) for j in range(2)]
    samples = {(s["item_index"], s["sample_index"]): s for s in runs.read_jsonl(rd.samples_path)}
    for g in grades:
        s = samples[(g["item_index"], g["sample_index"])]
        assert g["text_sha256"] == runs.sha256_text(s["text"])
        boxed = s["text"].split("\\boxed{")[-1].rstrip("}") if "</think>" in s["text"] else None
        gold = {0: "18", 1: "3", 2: "70000"}[g["item_index"]]
        assert g["correct"] is (boxed == gold), (s["text"], g)
    def strict(c):
        raise ValueError(f"summary.json is not strict JSON: {c}")

    summary = json.loads(rd.summary_path.read_text(), parse_constant=strict)
    label = path.stem
    m = summary["grades"][label]
    assert m["n_samples"] == 6 and m["n_items"] == 3 and summary["complete"]
    assert m["pass@1"] == pytest.approx(sum(g["correct"] is True for g in grades) / 6)


def test_grades_reused_unless_regrade_and_latest_grader_spec_wins(tok, runs_root, monkeypatch):
    spec = runs.RunSpec.from_dict(spec_dict(limit=2, n=2))
    rd = runs.generate_run(spec, engine=FakeEngine(tok), progress=False)
    first = runs.read_jsonl(runs.grade_in_process(rd.path))
    calls = []
    from softthink import grade_runs

    real = grade_runs._grade_all
    monkeypatch.setattr(grade_runs, "_grade_all", lambda g, d, jobs, m: calls.append(len(jobs)) or real(g, d, jobs, m))
    again = runs.read_jsonl(runs.grade_in_process(rd.path))
    assert calls == [] and again == first
    runs.grade_in_process(rd.path, regrade=True)
    assert calls == [4]
    # same outputs, another grader: same directory, config.json now names the new grader
    spec2 = runs.RunSpec.from_dict(spec_dict(limit=2, n=2, grader={"mode": "official"}))
    eng = FakeEngine(tok)
    assert runs.generate_run(spec2, engine=eng, progress=False).path == rd.path and eng.produced == 0
    assert rd.config()["spec"]["grader"]["mode"] == "official"
    path = runs.grade_in_process(rd.path)
    assert path.name.endswith("-official.jsonl")
    assert set(json.loads(rd.summary_path.read_text())["grades"]) == {path.stem, path.stem[:-len("official")] + "suite"}


def test_summarize_runs_frame_and_cli(tok, runs_root, tmp_path):
    a = runs.generate_run(runs.RunSpec.from_dict(spec_dict(limit=3, n=2)), engine=FakeEngine(tok), progress=False)
    b = runs.generate_run(runs.RunSpec.from_dict(spec_dict(limit=3, n=1, generation={"method": "cot_sample",
                                                                                      "max_new_tokens": 16})),
                          engine=FakeEngine(tok), progress=False)
    runs.grade_in_process(a.path)
    runs.grade_in_process(b.path)
    df = runs.summarize_runs([a.path, b.path], baseline=str(b.path))
    assert list(df["method"]) == ["soft", "cot_sample"]
    assert set(df["n"]) == {2, 1} and (df["n_items"] == 3).all()
    assert ((0 <= df["pass@1"]) & (df["pass@1"] <= 100)).all()  # percent
    assert df.loc[1, "len_all_change%"] == pytest.approx(0.0)
    for col in ("think.temperature", "think.top_p", "think.top_k", "think.min_p", "max_new_tokens", "grader_mode",
                "run_dir", "len_correct", "row", "generation"):
        assert col in df.columns
    assert list(df["row"]) == ["soft_no_cold_stop", "cot_sample"] and df["generation"][0]["method"] == "soft"
    # the tables module reads this frame
    from softthink import tables

    norm = tables.normalize(df)
    assert norm["acc"].tolist() == pytest.approx(df["pass@1"].tolist())
    summaries = [json.loads(rd.summary_path.read_text()) for rd in (a, b)]
    assert df["pass@1"].tolist() == pytest.approx([100 * next(iter(s["grades"].values()))["pass@1"]
                                                   for s in summaries])

    csv = tmp_path / "t.csv"
    res = subprocess.run([sys.executable, "-m", "softthink", "summarize", str(a.path), str(b.path), "--csv", str(csv)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "acc%" in res.stdout and "Len-Correct" in res.stdout and a.path.name in res.stdout
    assert csv.exists() and "pass@1" in csv.read_text().splitlines()[0]


# ---------------------------------------------------------------------------------------------------------------
# the real thing: `python -m softthink run` on the tiny model, SIGKILLed and resumed


def _engine_available():
    try:
        import softthink.engine  # noqa: F401
    except Exception:
        return False
    return True


def _write_spec(path: Path, runs_dir: Path, limit: int, n: int) -> None:
    path.write_text(
        f"model: {TINY}\n"
        "dataset: gsm8k\n"
        f"limit: {limit}\n"
        f"n: {n}\n"
        "device: cpu\n"
        f"runs_dir: {runs_dir}\n"
        "generation:\n"
        "  method: soft\n"
        "  max_new_tokens: 32\n"
        "  seed: 3\n"
        "  batch_size: 2\n"
        "  think:\n"
        "    max_topk: 5\n"
        "grader:\n"
        "  mode: suite\n"
    )


def _count_lines(p: Path) -> int:
    try:
        return p.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.skipif(not _engine_available(), reason="softthink.engine not available yet")
def test_sigkill_mid_run_then_resume_every_sample_exactly_once(tmp_path):
    limit, n = 4, 2
    total = limit * n
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "softthink", "run", "--quiet", "--config"]

    ref_spec = tmp_path / "ref.yaml"
    _write_spec(ref_spec, tmp_path / "ref_runs", limit, n)
    res = subprocess.run(cmd + [str(ref_spec), "--no-grade"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (ref_dir,) = (tmp_path / "ref_runs").iterdir()

    spec = tmp_path / "spec.yaml"
    _write_spec(spec, tmp_path / "runs", limit, n)
    proc = subprocess.Popen(cmd + [str(spec)], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    samples = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "runs").glob("*/samples.jsonl"))
        if found and _count_lines(found[0]) >= 2:
            samples = found[0]
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert samples is not None and proc.returncode == -signal.SIGKILL, "the run was not killed mid-way"
    done_before = _count_lines(samples)
    assert 2 <= done_before < total

    res = subprocess.run(cmd + [str(spec)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = samples.read_bytes().splitlines()
    keys = [(json.loads(x)["item_index"], json.loads(x)["sample_index"]) for x in lines]
    assert sorted(keys) == [(i, j) for i in range(limit) for j in range(n)]  # every sample exactly once

    assert samples.parent.name == ref_dir.name  # same spec, same hash
    ref = _records(runs.RunDir.open(ref_dir))
    got = _records(runs.RunDir.open(samples.parent))
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k] == ref[k], k  # resumed samples equal the uninterrupted run's
    grades = list((samples.parent / "grades").glob("*.jsonl"))
    assert len(grades) == 1 and len(runs.read_jsonl(grades[0])) == total
    assert json.loads((samples.parent / "summary.json").read_text())["complete"] is True
