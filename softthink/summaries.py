"""Summaries of graded runs: ``summary.json`` per run and the summary frame every table and figure reads.

The columns of the summary frame are declared once (:data:`SETTING_COLUMNS`, :data:`METRIC_COLUMNS`); the
generation settings are named by their config keys (``think.max_topk``, ``cold_stop.threshold``) and the row also
carries the whole resolved ``generation`` dict, so nothing downstream re-reads ``config.json``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from softthink.methods import METHODS, row_of, setting
from softthink.store import RunDir, expected_samples, load_grades, write_json_atomic

#: the generation settings every reported number carries (docs/design/evaluation.md §5), by their config keys
SETTING_KEYS = ("method", "preset", "think.temperature", "think.top_p", "think.top_k", "think.min_p", "think.max_topk",
                "max_new_tokens", "cold_stop.threshold", "cold_stop.length", "answer.mode", "noise.kind", "seed")
#: how a setting is printed where space is short (variant labels in tables, sweep.csv headers); display only
SETTING_LABELS = {"think.temperature": "T", "think.top_p": "top_p", "think.top_k": "top_k", "think.min_p": "min_p",
                  "think.max_topk": "max_topk", "cold_stop.threshold": "cold_stop_tau", "cold_stop.length": "cold_stop_L",
                  "answer.mode": "answer_mode", "noise.kind": "noise"}


def summarize_dir(run_dir: str | os.PathLike | RunDir) -> dict[str, Any]:
    """Metrics of every grades file of a run, plus the settings every reported number must carry."""
    from softthink import metrics

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    samples = rd.samples()
    gen = rd.key.get("generation", {})
    exp = expected_samples(rd)
    body: dict[str, Any] = {
        "run": rd.path.name,
        "hash": rd.hash,
        "model": rd.spec.model if rd.spec else None,
        "dataset": rd.spec.dataset if rd.spec else None,
        "n": rd.key.get("n"),
        "settings": settings_of(gen),
        "samples": len(samples),
        "expected_samples": exp,
        "complete": exp is not None and len(samples) == exp,
        "grades": {},
    }
    for label, grades in load_grades(rd).items():
        thinking = gen.get("method") not in METHODS or not METHODS[gen["method"]].nothinking
        m = metrics.summarize(samples, grades, seed=0, thinking=thinking,
                              think_end_str=gen.get("think", {}).get("end_str", "</think>"))
        m["grader"] = label
        judged = [g.get("judge") for g in grades if g.get("judge")]
        if judged:
            m["judge_label"] = judged[0].get("label")
        body["grades"][label] = m
    return body


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_summary(rd: RunDir) -> dict[str, Any]:
    """Write ``summary.json`` (strict JSON: undefined metrics are null) atomically; returns its body."""
    body = _nan_to_none(summarize_dir(rd))
    write_json_atomic(rd.summary_path, body)
    return body


def settings_of(gen: dict[str, Any]) -> dict[str, Any]:
    """The generation settings shown with every number, keyed by their config keys."""
    return {key: setting(gen, key) for key in SETTING_KEYS}


def summarize_runs(dirs: Iterable[str | os.PathLike], baseline: str | None = None):
    """A ``pandas.DataFrame``, one row per (run, grades file): the summary frame ``softthink.tables`` reads.

    Units: accuracies in **percent** (``pass@1``, its bootstrap ``pass@1_std`` and ``pass@1_ci95_lo/hi`` in points,
    ``pass@k``, ``maj@n``, ``acc_judge``), rates in percent (columns ending in ``%``), lengths in tokens.
    (``summary.json`` and :func:`softthink.metrics.summarize` keep fractions.) Every row carries the settings of
    docs/design/evaluation.md §5's reporting rule (n, T, top-p, top-k, min-p, max_new_tokens, soft-thinking switches, grader
    mode, judge label). A run without grades gives one row with its sample count and no metrics. ``baseline``: a run
    directory (path or name) whose ``len_correct`` / ``len_all`` the ``*_change%`` columns compare against (same
    dataset and grader).
    """
    import pandas as pd

    from softthink import metrics

    def pct(v):
        return None if v is None else 100.0 * v

    rows = []
    for d in dirs:
        rd = RunDir.open(d)
        body = summarize_dir(rd)
        spec = rd.spec
        gen = rd.key.get("generation", {})
        base = {"run_dir": str(rd.path), "run": body["run"], "model": body["model"], "dataset": body["dataset"],
                "row": row_of(gen), **body["settings"], "generation": gen,
                "engine": spec.engine if spec is not None else None,
                "samples": body["samples"], "expected_samples": body["expected_samples"], "complete": body["complete"],
                "aime2024_key": spec.grader.aime2024_key if spec is not None else None}
        if not body["grades"]:
            rows.append({**base, "grader": None, "grader_mode": None})
        for label, m in body["grades"].items():
            row = {**base, "grader": label, "grader_mode": label.rsplit("-", 1)[-1],
                   "n": m["n"], "n_items": m["n_items"],
                   "pass@1": pct(m["pass@1"]), "pass@1_std": pct(m["pass@1_std"]),
                   "pass@1_ci95_lo": pct(m["pass@1_ci95"][0]), "pass@1_ci95_hi": pct(m["pass@1_ci95"][1]),
                   "maj@n": pct(m["maj@n"]),
                   "len_all": m["len_all"], "len_all_std": m["len_all_std"],
                   "len_correct": m["len_correct"], "len_correct_std": m["len_correct_std"],
                   "len_correct_samples": m["len_correct_samples"],
                   "timeouts": m["timeouts"], "errors": m["errors"], "ungraded": m["ungraded"],
                   "mean_think_end_step": m.get("mean_think_end_step")}
            for k, col in (("truncation_rate", "truncation%"), ("thinking_unfinished_rate", "think_unfinished%"),
                           ("no_answer_rate", "no_answer%"), ("cold_stop_rate", "cold_stop%"),
                           ("answer_abort_rate", "answer_abort%")):
                row[col] = pct(m.get(k))
            for k, v in (m.get("pass@k") or {}).items():
                if k != "1":
                    row[f"pass@{k}"] = pct(v)
            if "acc_judge" in m:
                row.update({"acc_judge": pct(m["acc_judge"]), "acc_judge_std": pct(m["acc_judge_std"]),
                            "judge_failures": m["judge_failures"], "judge": m.get("judge_label")})
            rows.append(row)
    df = pd.DataFrame(rows)
    if baseline is not None and len(df) and "len_all" in df.columns:
        bname = Path(baseline).name
        ref_rows = df[df["run"] == bname]
        if not len(ref_rows):
            ref_rows = summarize_runs([baseline])
        for col in ("len_correct", "len_all"):
            ref = {(r["dataset"], r["grader"]): r[col] for _, r in ref_rows.iterrows()}
            df[f"{col}_change%"] = [metrics.token_change_pct(v, ref.get((ds, g), float("nan")))
                                    for v, ds, g in zip(df[col], df["dataset"], df["grader"])]
    return df



TABLE_COLUMNS = ["run", "grader", "n", "n_items", "pass@1", "pass@1_ci95_lo", "pass@1_ci95_hi", "len_all",
                 "len_correct", "truncation%", "no_answer%", "timeouts", "errors", "acc_judge", "judge_failures",
                 "len_correct_change%", "len_all_change%"]
TABLE_HEADERS = {"n_items": "items", "pass@1": "acc%", "pass@1_ci95_lo": "ci95_lo", "pass@1_ci95_hi": "ci95_hi",
                 "len_all": "Len-All", "len_correct": "Len-Correct", "truncation%": "trunc%", "no_answer%": "no_ans%",
                 "acc_judge": "acc_judge%", "judge_failures": "judge_fail", "len_correct_change%": "Len-Correct_chg%",
                 "len_all_change%": "Len-All_chg%"}


def format_table(df) -> str:
    """The summary frame as a fixed-width table (accuracies and rates in %)."""
    import pandas as pd

    out = pd.DataFrame()
    for col in TABLE_COLUMNS:
        if col in df.columns:
            out[TABLE_HEADERS.get(col, col)] = df[col]
    return out.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-")

