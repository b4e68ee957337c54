"""Grading runs: always in a process of its own (docs/design/evaluation.md principle 1).

:func:`grade_in_subprocess` starts ONE fresh ``python -m softthink grade-runs`` process for any number of run
directories (one math-verify / sandbox start-up for all); ``python -m softthink run`` (:func:`grade_run`) and the
pipeline both use it. Inside that process :func:`grade_in_process` rule-grades every sample, optionally asks the judge, writes the grades
file and refreshes ``summary.json``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from softthink.config import ConfigError
from softthink.runspec import GRADER_MODES
from softthink.store import RunDir, _jsonable, read_jsonl, sha256_text, write_grades


def grader_version() -> str:
    from softthink import grading

    return str(getattr(grading, "GRADER_VERSION", None) or getattr(grading, "VERSION", None) or "v0")



def grade_in_process(run_dir: str | os.PathLike, mode: str | None = None, judge: bool | None = None,
                     judge_client: Any = None, regrade: bool = False) -> Path:
    """The body of ``python -m softthink grade``: rule-grade every sample, optionally judge, write grades + summary.

    Grader settings come from the run's ``config.json`` (the latest spec that generated into it), ``mode`` and
    ``judge`` override them. Records of an earlier grading with the same grader version, mode, text and gold are
    reused unless ``regrade`` (grader timeouts are always retried); the judge step always runs (its calls are cached
    on disk). The grades file is rewritten atomically and ``summary.json`` refreshed.
    """
    from softthink import grading
    from softthink.data import load_dataset
    from softthink.summaries import write_summary

    rd = RunDir.open(run_dir)
    spec = rd.spec
    assert spec is not None, f"{rd.path}: config.json has no spec"
    mode = mode or spec.grader.mode
    if mode not in GRADER_MODES:
        raise ConfigError(f"--mode: {mode!r} is not allowed; choose one of {', '.join(GRADER_MODES)}")
    aime_key = spec.grader.aime2024_key
    dataset = load_dataset(spec.dataset, aime2024_key=aime_key)
    by_index = {it.index: it for it in dataset.items}
    samples = read_jsonl(rd.samples_path)
    path = grades_path(rd, mode)
    previous = {} if regrade else {(r["item_index"], r["sample_index"]): r for r in read_jsonl(path)}

    jobs, records, todo = [], [], []
    for s in samples:
        item = by_index[int(s["item_index"])]
        gold = s.get("gpqa_gold")  # per-sample GPQA option order: the gold letter moved
        gold = gold if gold is not None else item.answer
        text = s.get("text") or ""
        job = (item, text, gold)
        jobs.append(job)
        rec = {"item_index": int(s["item_index"]), "sample_index": int(s["sample_index"]),
               "sample_uid": s.get("sample_uid"), "text_sha256": sha256_text(text), "mode": mode,
               "grader_version": grader_version(), "aime2024_key": aime_key if spec.dataset == "aime2024" else None,
               "gold": gold if isinstance(gold, (str, int, float)) else None,
               "truncated": s.get("finish_reason") == "length"}
        old = previous.get((rec["item_index"], rec["sample_index"]))
        if (old is not None and old.get("text_sha256") == rec["text_sha256"] and old.get("gold") == rec["gold"]
                and old.get("status") != "timeout"):
            rec.update({k: old.get(k) for k in ("correct", "extracted", "status", "detail")})
        else:
            todo.append(len(records))
        records.append(rec)
    if todo:
        graded = _grade_all(grading, spec.dataset, [jobs[i] for i in todo], mode)
        for i, g in zip(todo, graded):
            records[i].update(g.to_dict() if hasattr(g, "to_dict") else dict(g))

    use_judge = spec.grader.judge.enabled if judge is None else judge
    if use_judge and dataset.kind == "code":  # code is graded by execution; a text judge has nothing to add
        print(f"note: no LLM judge for code dataset {spec.dataset}", file=sys.stderr)
        use_judge = False
    if use_judge:
        from softthink import judge as judge_mod

        j = judge_mod.Judge.from_spec(spec.grader.judge, client=judge_client)
        for rec, (_item, text, gold) in zip(records, jobs):
            rec["judge"] = j.judge_sample(dataset=spec.dataset, reference=_reference_text(gold), completion=text,
                                          rule_correct=rec.get("correct"))
    write_grades(path, records)
    write_summary(rd)
    return path


def _reference_text(ans: Any) -> str:
    return ans if isinstance(ans, str) else json.dumps(ans, ensure_ascii=False, default=_jsonable)


def _grade_all(grading: Any, dataset: str, jobs: list[tuple[Any, str, Any]], mode: str) -> list[Any]:
    """Rule grading of ``(item, completion, gold)`` through ``grading.grade_many`` (math in a killable pool)."""
    return list(grading.grade_many(dataset, jobs, mode=mode))


def grades_path(rd: RunDir, mode: str | None = None) -> Path:
    """The grades file a grading of ``rd`` in ``mode`` (default: the spec's) writes."""
    spec = rd.spec
    mode = mode or (spec.grader.mode if spec else "suite")
    aime_original = spec is not None and spec.dataset == "aime2024" and spec.grader.aime2024_key == "original"
    return rd.grades_path(grader_version(), mode, variant="aime_original" if aime_original else None)


def grades_current(run_dir: str | os.PathLike, mode: str | None = None) -> bool:
    """True when the run's grades and summary are newer than its samples (nothing to grade)."""
    rd = RunDir.open(run_dir)
    g = grades_path(rd, mode)
    return (g.exists() and rd.summary_path.exists() and rd.samples_path.exists()
            and g.stat().st_mtime >= rd.samples_path.stat().st_mtime)


def grade_in_subprocess(run_dirs: Sequence[str | os.PathLike], mode: str | None = None, judge: bool | None = None,
                        regrade: bool = False, timeout_s: float | None = None) -> list[dict[str, Any]]:
    """Grade runs in ONE fresh ``python -m softthink grade-runs`` process (never the generating one; one math-verify /
    sandbox start-up for all). One status dict per run (``run``, ``status`` ok|failed, ``seconds``, ``error``); a
    run that fails does not stop the rest."""
    if not run_dirs:
        return []
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "status.json"
        cmd = [sys.executable, "-m", "softthink", "grade-runs", "--status", str(out)]
        if mode:
            cmd += ["--mode", mode]
        if judge is not None:
            cmd += ["--judge" if judge else "--no-judge"]
        if regrade:
            cmd += ["--regrade"]
        cmd += [str(d) for d in run_dirs]
        env = dict(os.environ)
        from softthink.files import repo_root

        root = str(repo_root())
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            res = subprocess.run(cmd, env=env, timeout=timeout_s, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return [{"run": str(d), "status": "failed", "seconds": None, "error": "grading process timed out"}
                    for d in run_dirs]
        if out.exists():
            return json.loads(out.read_text())
        err = (res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.returncode}"]
        return [{"run": str(d), "status": "failed", "seconds": None, "error": err[0]} for d in run_dirs]


def grade_run(run_dir: str | os.PathLike, mode: str | None = None, judge: bool | None = None,
              timeout_s: float | None = None, regrade: bool = False) -> Path:
    """Grade one run in a fresh process; returns its grades file. Raises ``RuntimeError`` if grading failed."""
    status = grade_in_subprocess([run_dir], mode=mode, judge=judge, regrade=regrade, timeout_s=timeout_s)[0]
    if status["status"] != "ok":
        raise RuntimeError(f"grading {run_dir} failed: {status['error']}")
    return grades_path(RunDir.open(run_dir), mode)


def grade_many_in_process(run_dirs: Sequence[str], mode: str | None = None, judge: bool | None = None,
                          regrade: bool = False) -> list[dict[str, Any]]:
    """The body of ``python -m softthink grade-runs``: each run graded in turn, a failure reported, not raised."""
    status = []
    for d in run_dirs:
        t0 = time.time()
        try:
            path = grade_in_process(d, mode=mode, judge=judge, regrade=regrade)
            status.append({"run": str(d), "status": "ok", "seconds": round(time.time() - t0, 2), "error": "",
                           "grades": str(path)})
        except Exception as e:  # noqa: BLE001 - reported; the other runs continue
            status.append({"run": str(d), "status": "failed", "seconds": round(time.time() - t0, 2),
                           "error": f"{type(e).__name__}: {e}"})
    return status
