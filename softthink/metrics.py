"""Metrics over graded samples (docs/design/evaluation.md §5). Pure functions over numpy / pandas.

Notation: item ``i`` has ``n_i`` samples ``j``; sample ``j`` has a rule score ``s_ij ∈ {0, 1}`` (a sample the grader
could not grade, ``correct is None``, scores 0 and is counted as ungraded: nothing is dropped) and a length ``ℓ_ij``.
``c_i = Σ_j s_ij``.

**Lengths** ``ℓ_ij`` are the number of generated token ids the engine produced for the sample (``num_tokens`` =
``len(token_ids)``): thinking ids + the ``</think>`` marker + answer ids, including a terminating EOS. They are never
obtained by re-tokenising the decoded text (decode/encode is not a round trip, and special tokens are skipped in
``text``). This equals SGLang's ``meta_info.completion_tokens``.

Definitions (all means unweighted):

* per-item pass@1 ``p_i = c_i / n_i``; **pass@1** ``= mean_i p_i`` (mean over samples, then over items).
* unbiased **pass@k** (k ≤ n) per item ``1 − C(n−c, k) / C(n, k) = 1 − Π_{m=n−c+1}^{n} (1 − k/m)``, and 1.0 when
  ``n − c < k``; mean over items; defined only when every item has ``n_i ≥ k``.
* **maj@n**: per item, majority vote over the extracted answers (samples without one do not vote; ties go to the
  answer whose first occurrence has the lowest ``sample_index``); the item scores the rule verdict of that answer's
  first sample; 0 when nothing was extracted.
* **Len-All** ``= mean_i (mean_j ℓ_ij)``.
* **Len-Correct** (the paper's length, official ``avg_token_length-correct``) ``= mean over items with c_i > 0 of
  mean_j ℓ_ij`` — all samples of such an item count, including its wrong ones. With n = 1 this is the mean length
  of the correct samples.
* **Len-CorrectSamples** (suite extra) = mean of ``ℓ_ij`` over correct samples only.
* **token change %** against a baseline: ``100 · (L_method − L_base) / L_base`` (negative = fewer tokens; the paper's
  "↓ x %" is the negated value).
* rates (share of samples): truncation = finish reason ``length``; thinking-unfinished = no ``</think>`` in the
  output (neither an engine-reported end of thinking nor the marker in the text; undefined for NoThinking);
  Cold-Stop = ``think_end_reason == "cold_stop"``; answer-abort = finish reason ``abort``; no-answer = grade status
  ``no_answer`` or ``no_code``.
* uncertainty: bootstrap over items (default 1000 resamples, seeded ``numpy.random.default_rng(seed)``): sample std
  (ddof = 1) and the 2.5 / 97.5 percentiles (95 % CI) of pass@1, Len-All and Len-Correct.
* ``acc_judge`` (only when judge verdicts exist, docs/design/evaluation.md §7): per sample ``rule OR judge``, then the same
  pass@1 aggregation. Judge failures count as not-judged-correct and are counted.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

NO_ANSWER_STATUSES = frozenset({"no_answer", "no_code"})
TIMEOUT_STATUSES = frozenset({"timeout"})
ERROR_STATUSES = frozenset({"sandbox_error", "grader_error", "error", "runner_error"})
JUDGE_OK_STATUSES = frozenset({"yes", "no", "skipped_rule_correct"})
DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 0


# ----------------------------------------------------------------------------------------------------------------
# per-item estimators


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item with ``n`` samples, ``c`` correct: ``1 − Π_{m=n−c+1}^{n} (1 − k/m)``.

    Equals ``1 − C(n−c, k)/C(n, k)``; 1.0 when ``n − c < k`` (every k-subset holds a correct sample).
    """
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for m in range(n - c + 1, n + 1):
        prod *= 1.0 - k / m
    return 1.0 - prod


def mean_pass_at_k(ns: Sequence[int], cs: Sequence[int], k: int) -> float | None:
    """Mean over items of :func:`pass_at_k`; ``None`` unless every item has ``n_i ≥ k``."""
    if len(ns) == 0 or any(n < k for n in ns):
        return None
    return float(np.mean([pass_at_k(int(n), int(c), k) for n, c in zip(ns, cs)]))


def token_change_pct(length: float, baseline_length: float) -> float:
    """``100 · (L − L_base) / L_base``; negative means fewer tokens than the baseline (paper's "↓")."""
    if baseline_length is None or not np.isfinite(baseline_length) or baseline_length == 0:
        return float("nan")
    return 100.0 * (length - baseline_length) / baseline_length


# ----------------------------------------------------------------------------------------------------------------
# table building


def _truthy(v: Any) -> bool:
    """True only for a real True verdict (None / NaN / False -> False)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return bool(v)


def sample_table(samples: Iterable[Mapping[str, Any]], grades: Iterable[Mapping[str, Any]] | None = None,
                 think_end_str: str = "</think>") -> pd.DataFrame:
    """One row per sample: the generation record joined with its grade on ``(item_index, sample_index)``.

    ``think_ended``: the engine reported an end of thinking (``think_end_reason``) or the output text contains
    ``think_end_str`` (engines that only track the marker for soft methods).

    A sample without a grade gets ``status = "ungraded"`` and ``correct = None``. Duplicate sample keys are an error
    (the results store guarantees uniqueness; a duplicate would silently double-weight an item).
    """
    rows = []
    for s in samples:
        rows.append({
            "item_index": int(s["item_index"]),
            "sample_index": int(s["sample_index"]),
            "num_tokens": int(s["num_tokens"]) if s.get("num_tokens") is not None else len(s.get("token_ids") or []),
            "finish_reason": s.get("finish_reason"),
            "think_end_reason": s.get("think_end_reason"),
            "think_end_step": s.get("think_end_step"),
            "think_ended": s.get("think_end_reason") is not None or think_end_str in (s.get("text") or ""),
        })
    df = pd.DataFrame(rows, columns=["item_index", "sample_index", "num_tokens", "finish_reason", "think_end_reason",
                                     "think_end_step", "think_ended"])
    if df.duplicated(["item_index", "sample_index"]).any():
        dup = df[df.duplicated(["item_index", "sample_index"], keep=False)].iloc[0]
        raise ValueError(f"duplicate sample (item_index={dup.item_index}, sample_index={dup.sample_index})")
    grow = []
    for g in grades or []:
        judge = g.get("judge") or {}
        grow.append({
            "item_index": int(g["item_index"]),
            "sample_index": int(g["sample_index"]),
            "correct": g.get("correct"),
            "status": g.get("status", "graded"),
            "extracted": g.get("extracted"),
            "judge_correct": judge.get("correct") if judge else None,
            "judge_status": judge.get("status") if judge else None,
        })
    gdf = pd.DataFrame(grow, columns=["item_index", "sample_index", "correct", "status", "extracted", "judge_correct",
                                      "judge_status"])
    if gdf.duplicated(["item_index", "sample_index"]).any():
        raise ValueError("duplicate grade records")
    out = df.merge(gdf, on=["item_index", "sample_index"], how="left")
    out["status"] = out["status"].where(out["status"].notna(), "ungraded")
    out["correct"] = out["correct"].astype(object).where(out["correct"].notna(), None)
    out["score"] = [1 if _truthy(v) else 0 for v in out["correct"]]
    has_judge = out["judge_status"].notna()
    out["judge_score"] = [1 if (s == 1 or _truthy(j)) else 0 for s, j in zip(out["score"], out["judge_correct"])]
    out.attrs["has_judge"] = bool(has_judge.any())
    return out.sort_values(["item_index", "sample_index"]).reset_index(drop=True)


def item_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per item: ``n``, ``c`` (rule), ``c_judge``, ``p`` = c/n, ``len_mean`` = mean_j ℓ_ij, ``len_correct_sum``."""
    g = df.groupby("item_index", sort=True)
    out = pd.DataFrame({
        "n": g.size(),
        "c": g["score"].sum(),
        "c_judge": g["judge_score"].sum(),
        "len_mean": g["num_tokens"].mean(),
    })
    out["p"] = out["c"] / out["n"]
    out["p_judge"] = out["c_judge"] / out["n"]
    return out


# ----------------------------------------------------------------------------------------------------------------
# aggregate metrics


def pass_at_1(items: pd.DataFrame) -> float:
    """``mean_i c_i / n_i``."""
    return float(items["p"].mean()) if len(items) else float("nan")


def len_all(items: pd.DataFrame) -> float:
    """Len-All ``= mean_i mean_j ℓ_ij``."""
    return float(items["len_mean"].mean()) if len(items) else float("nan")


def len_correct(items: pd.DataFrame) -> float:
    """Len-Correct ``= mean over items with c_i > 0 of mean_j ℓ_ij`` (all samples of those items)."""
    sel = items[items["c"] > 0]
    return float(sel["len_mean"].mean()) if len(sel) else float("nan")


def len_correct_samples(df: pd.DataFrame) -> float:
    """Len-CorrectSamples = mean of ``ℓ_ij`` over correct samples only."""
    sel = df[df["score"] == 1]
    return float(sel["num_tokens"].mean()) if len(sel) else float("nan")


def maj_at_n(df: pd.DataFrame) -> float:
    """maj@n: majority vote over extracted answers per item (see module docstring), mean over items."""
    scores = []
    for _, grp in df.sort_values(["item_index", "sample_index"]).groupby("item_index", sort=True):
        votes: Counter[str] = Counter()
        first: dict[str, tuple[int, int]] = {}
        for sidx, ext, sc in zip(grp["sample_index"], grp["extracted"], grp["score"]):
            if ext is None or (isinstance(ext, float) and math.isnan(ext)):
                continue
            key = str(ext).strip()
            if not key:
                continue
            votes[key] += 1
            first.setdefault(key, (int(sidx), int(sc)))
        if not votes:
            scores.append(0)
            continue
        best = max(votes, key=lambda a: (votes[a], -first[a][0]))
        scores.append(first[best][1])
    return float(np.mean(scores)) if scores else float("nan")


def rates(df: pd.DataFrame, thinking: bool = True) -> dict[str, float]:
    """Shares of samples: truncation, thinking-unfinished (no end of thinking, see :func:`sample_table`), Cold-Stop,
    answer-abort, no-answer; mean `</think>` step.

    ``thinking=False`` (NoThinking: the prompt already closed the think block) leaves the thinking-unfinished rate
    undefined (NaN).
    """
    total = len(df)
    if total == 0:
        return {}
    steps = pd.to_numeric(df["think_end_step"], errors="coerce")
    return {
        "truncation_rate": float((df["finish_reason"] == "length").mean()),
        "thinking_unfinished_rate": float((~df["think_ended"].astype(bool)).mean()) if thinking else float("nan"),
        "cold_stop_rate": float((df["think_end_reason"] == "cold_stop").mean()),
        "answer_abort_rate": float((df["finish_reason"] == "abort").mean()),
        "no_answer_rate": float(df["status"].isin(NO_ANSWER_STATUSES).mean()),
        "mean_think_end_step": float(steps.mean()) if steps.notna().any() else float("nan"),
    }


def bootstrap(items: pd.DataFrame, n_resamples: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
              column: str = "p") -> dict[str, dict[str, float]]:
    """Bootstrap over items: resample items with replacement ``n_resamples`` times (``default_rng(seed)``).

    Returns, for ``pass@1`` (mean of ``column``), ``len_all`` and ``len_correct``, the sample std (ddof = 1) of the
    resampled statistic and its 2.5 / 97.5 percentiles. Resamples in which no item has ``c > 0`` give no
    Len-Correct value and are left out of that statistic's std/CI.
    """
    m = len(items)
    nan = float("nan")
    if m == 0 or n_resamples < 2:
        return {k: {"std": nan, "ci95": [nan, nan]} for k in ("pass@1", "len_all", "len_correct")}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m, size=(n_resamples, m))
    p = items[column].to_numpy(dtype=float)[idx]
    lens = items["len_mean"].to_numpy(dtype=float)[idx]
    has = (items["c"].to_numpy() > 0)[idx]
    cnt = has.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        lc = np.where(cnt > 0, (lens * has).sum(axis=1) / np.maximum(cnt, 1), np.nan)

    def stats(x: np.ndarray) -> dict[str, Any]:
        x = x[np.isfinite(x)]
        if len(x) < 2:
            return {"std": nan, "ci95": [nan, nan]}
        lo, hi = np.percentile(x, [2.5, 97.5])
        return {"std": float(np.std(x, ddof=1)), "ci95": [float(lo), float(hi)]}

    return {"pass@1": stats(p.mean(axis=1)), "len_all": stats(lens.mean(axis=1)), "len_correct": stats(lc)}


def default_ks(n_min: int) -> list[int]:
    """k values reported for pass@k: powers of two up to ``n_min``, plus ``n_min`` itself."""
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= n_min]
    if n_min >= 1 and n_min not in ks:
        ks.append(n_min)
    return ks


def summarize(samples: Iterable[Mapping[str, Any]], grades: Iterable[Mapping[str, Any]] | None = None, *,
              n_resamples: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
              ks: Sequence[int] | None = None, thinking: bool = True,
              think_end_str: str = "</think>") -> dict[str, Any]:
    """All §5 metrics of one run (rates and accuracies as fractions in [0, 1], lengths in tokens).

    ``samples`` are generation records (``item_index``, ``sample_index``, ``num_tokens``, ``finish_reason``,
    ``think_end_reason``, ``think_end_step``); ``grades`` are grade records (``item_index``, ``sample_index``,
    ``correct``, ``status``, ``extracted``, optional ``judge`` = ``{"correct", "status", ...}``). ``thinking``:
    False for runs whose prompt closes the think block (NoThinking).
    """
    df = sample_table(samples, grades, think_end_str=think_end_str)
    items = item_table(df)
    ns = items["n"].tolist()
    cs = items["c"].tolist()
    n_min = int(min(ns)) if ns else 0
    n_max = int(max(ns)) if ns else 0
    status_counts = {str(k): int(v) for k, v in df["status"].value_counts().sort_index().items()}
    boot = bootstrap(items, n_resamples=n_resamples, seed=seed)
    out: dict[str, Any] = {
        "n_items": int(len(items)),
        "n_samples": int(len(df)),
        "n": n_min if n_min == n_max else None,
        "n_min": n_min,
        "n_max": n_max,
        "pass@1": pass_at_1(items),
        "pass@1_std": boot["pass@1"]["std"],
        "pass@1_ci95": boot["pass@1"]["ci95"],
        "pass@k": {str(k): mean_pass_at_k(ns, cs, k) for k in (ks if ks is not None else default_ks(n_min))},
        "maj@n": maj_at_n(df),
        "len_all": len_all(items),
        "len_all_std": boot["len_all"]["std"],
        "len_all_ci95": boot["len_all"]["ci95"],
        "len_correct": len_correct(items),
        "len_correct_std": boot["len_correct"]["std"],
        "len_correct_ci95": boot["len_correct"]["ci95"],
        "len_correct_samples": len_correct_samples(df),
        **rates(df, thinking=thinking),
        "status_counts": status_counts,
        "timeouts": int(df["status"].isin(TIMEOUT_STATUSES).sum()),
        "errors": int(df["status"].isin(ERROR_STATUSES).sum()),
        "ungraded": int(df["correct"].isna().sum()),
        "bootstrap": {"n_resamples": n_resamples, "seed": seed},
    }
    if df.attrs.get("has_judge"):
        js = df["judge_status"]
        out["acc_judge"] = pass_at_1(items.assign(p=items["p_judge"]))
        jb = bootstrap(items, n_resamples=n_resamples, seed=seed, column="p_judge")["pass@1"]
        out["acc_judge_std"] = jb["std"]
        out["acc_judge_ci95"] = jb["ci95"]
        out["judge_failures"] = int((js.notna() & ~js.isin(JUDGE_OK_STATUSES)).sum())
        out["judge_not_run"] = int(js.isna().sum())
        out["judge_status_counts"] = {str(k): int(v) for k, v in js.dropna().value_counts().sort_index().items()}
    return out
