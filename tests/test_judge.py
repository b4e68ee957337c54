"""LLM judge (docs/design/evaluation.md §7) with an injected fake client: no network."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from softthink import judge, runs

SECRET = "sk-judge-test-" + "k" * 40


class FakeClient:
    """``chat.completions.create`` returning scripted replies (or raising scripted exceptions)."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    def _create(self, **kwargs):
        self.calls.append(kwargs)
        r = self.replies.pop(0) if self.replies else "NO"
        if isinstance(r, Exception):
            raise r
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=r))])


def _judge(tmp_path, client, **kw):
    return judge.Judge("gpt-4.1-2025-04-14", client=client, cache_dir=tmp_path / "cache", sleep=lambda s: None, **kw)


def test_strict_parsing():
    assert judge.parse_verdict("YES") == (True, "yes")
    assert judge.parse_verdict("  NO\n") == (False, "no")
    for bad in ("Yes", "YES.", "NO, because", "", None, "The answer is YES"):
        assert judge.parse_verdict(bad) == (None, "judge_unparsable")


def test_one_prompt_for_every_method():
    p1, s1 = judge.build_prompt("42", "long thinking </think> so \\boxed{42}")
    assert s1 == "after_think" and "\\boxed{42}" in p1 and "long thinking" not in p1
    p2, s2 = judge.build_prompt("42", "a </think> b </think> final 41")
    assert "final 41" in p2 and " b " not in p2  # after the LAST </think>
    long = "x" * 5000 + "END"
    p3, s3 = judge.build_prompt("42", long)
    assert s3 == "tail" and "END" in p3 and len(p3) < len(judge.PROMPT) + judge.TAIL_CHARS + 10
    # the template is the same text whatever the sample: only reference and answer vary
    assert p1.split("Reference answer:")[0] == p3.split("Reference answer:")[0]


def test_call_parameters_cache_and_retries(tmp_path):
    client = FakeClient([RuntimeError("503"), "YES"])
    j = _judge(tmp_path, client, max_retries=2)
    r = j.judge_sample(dataset="gsm8k", reference="18", completion="</think>\\boxed{18}", rule_correct=False)
    assert r["correct"] is True and r["status"] == "yes" and r["attempts"] == 2 and not r["cached"]
    assert client.calls[0]["temperature"] == 0.0 and client.calls[0]["model"] == "gpt-4.1-2025-04-14"
    assert r["label"] == "gpt-4.1-2025-04-14/" + judge.PROMPT_VERSION
    # the same prompt again: served from the disk cache, no call
    again = _judge(tmp_path, FakeClient([]))
    r2 = again.judge_sample(dataset="gsm8k", reference="18", completion="</think>\\boxed{18}", rule_correct=None)
    assert r2["cached"] and r2["correct"] is True and again._client.calls == []
    # rule-correct samples are not sent
    r3 = again.judge_sample(dataset="gsm8k", reference="18", completion="x", rule_correct=True)
    assert r3["status"] == "skipped_rule_correct" and again._client.calls == []


def test_failures_are_recorded(tmp_path, monkeypatch):
    j = _judge(tmp_path, FakeClient([RuntimeError("boom")] * 5), max_retries=2)
    r = j.judge_sample(dataset="gsm8k", reference="1", completion="</think>2", rule_correct=False)
    assert r["status"] == "judge_error" and r["correct"] is None and "boom" in r["error"] and r["attempts"] == 3
    assert not list((tmp_path / "cache").rglob("*.json"))  # errors are not cached
    j = _judge(tmp_path, FakeClient(["Maybe"]))
    assert j.judge_sample(dataset="gsm8k", reference="1", completion="</think>3", rule_correct=False)["status"] \
        == "judge_unparsable"
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    j = judge.Judge(client=None, api_key_env="NO_SUCH_KEY_VAR", cache_dir=tmp_path / "c2")
    r = j.judge_sample(dataset="gsm8k", reference="1", completion="</think>4", rule_correct=False)
    assert r["status"] == "judge_no_key" and "NO_SUCH_KEY_VAR" in r["error"]


def test_error_messages_never_carry_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    j = _judge(tmp_path, FakeClient([RuntimeError(f"invalid key {SECRET}")] * 3), max_retries=1)
    r = j.judge_sample(dataset="gsm8k", reference="1", completion="</think>2", rule_correct=False)
    assert SECRET not in json.dumps(r) and "<redacted>" in r["error"]


def test_judge_in_grading_stage_writes_acc_judge_and_never_the_key(tmp_path, monkeypatch):
    from test_runs import FakeEngine, spec_dict

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    spec = runs.RunSpec.from_dict(spec_dict(limit=3, n=2, grader={"mode": "suite", "judge": {
        "model": "gpt-4.1-2025-04-14", "cache_dir": str(tmp_path / "jcache")}}))
    rd = runs.generate_run(spec, engine=FakeEngine(runs.load_tokenizer("tiny-random-llama")), progress=False,
                           runs_dir=tmp_path / "runs")
    client = FakeClient(["YES", "NO", "garbage", RuntimeError(f"bad key {SECRET}")] + ["NO"] * 20)
    path = runs.grade_in_process(rd.path, judge_client=client)
    grades = runs.read_jsonl(path)
    assert all("judge" in g for g in grades)
    rule_wrong = [g for g in grades if g["correct"] is not True]
    assert len(client.calls) >= len(rule_wrong) > 0
    summary = json.loads(rd.summary_path.read_text())["grades"][path.stem]
    expected = sum(1 for g in grades if g["correct"] is True or g["judge"]["correct"] is True) / len(grades)
    assert summary["acc_judge"] == pytest.approx(expected)  # equal n per item: pass@1 = sample mean
    assert summary["acc_judge"] >= summary["pass@1"]
    assert summary["judge_failures"] == sum(g["judge"]["status"] not in judge.OK_STATUSES for g in grades)
    df = runs.summarize_runs([rd.path])
    assert df.loc[0, "acc_judge"] == pytest.approx(100 * summary["acc_judge"])
    assert df.loc[0, "judge"] == "gpt-4.1-2025-04-14/" + judge.PROMPT_VERSION
    for f in list(Path(tmp_path).rglob("*")):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_no_judge_for_code_datasets(tmp_path, monkeypatch):
    from test_runs import FakeEngine, spec_dict

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    spec = runs.RunSpec.from_dict(spec_dict(dataset="humaneval", limit=1, n=2, grader={"judge": {
        "cache_dir": str(tmp_path / "jcache")}}))
    rd = runs.generate_run(spec, engine=FakeEngine(runs.load_tokenizer("tiny-random-llama")), progress=False,
                           runs_dir=tmp_path / "runs")
    client = FakeClient(["YES"] * 4)
    grades = runs.read_jsonl(runs.grade_in_process(rd.path, judge_client=client))
    assert client.calls == [] and all("judge" not in g for g in grades)
    assert all(g["status"] == "no_code" for g in grades)  # the fake writes no code block
