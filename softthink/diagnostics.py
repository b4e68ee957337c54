"""Is Soft Thinking more than greedy decoding? Measures over runs that already exist (docs/diagnostics.md).

* **Trajectory agreement** (`agreement_frame`): every sample of a soft-input run beside the greedy CoT sample of
  the same item and model: the first step where the visible tokens differ, the share of identical visible thinking
  tokens, and whether the extracted answers agree.
* **Paired differences** (`paired_difference`, `paired_frame`): method A − method B on the items both ran, with a
  paired bootstrap interval (items resampled together; samples within an item resampled too where n > 1, by the same
  sample index when both runs have the same n) and a paired sign-flip permutation test over items, both seeded.

The top-1 reliance probe, which needs a model, lives in `softthink.probe`.
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from softthink.methods import ROWS

DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
GREEDY = "cot_greedy"
DISCRETE_ROWS = tuple(n for n, m in ROWS.items() if not m.soft)  # rows whose every input is a one-hot token
DEMO_NOTE = ("On the demo's 135M model these numbers exercise the machinery only: they say nothing about Soft "
             "Thinking on the paper's 32B/70B models.")


# ---------------------------------------------------------------------------------------------------------------
# run files


@lru_cache(maxsize=256)
def _run_table(run_dir: str, grader: str | None) -> pd.DataFrame:
    """`metrics.sample_table` of a run (samples joined with the grades file `grader`, or the first one) plus the
    token ids and thinking lengths. Cached per process: runs are immutable once graded."""
    from softthink import metrics
    from softthink.store import RunDir, load_grades

    rd = RunDir.open(run_dir)
    samples = rd.samples()
    grades = load_grades(rd)
    label = grader if grader in grades else next(iter(grades), None)
    df = metrics.sample_table(samples, grades.get(label) if label else None)
    extra = pd.DataFrame([{"item_index": int(s["item_index"]), "sample_index": int(s["sample_index"]),
                           "token_ids": list(s.get("token_ids") or []),
                           "num_thinking_tokens": int(s.get("num_thinking_tokens") or 0)} for s in samples])
    return df.merge(extra, on=["item_index", "sample_index"], how="left")


def run_table(run_dir: str | Path, grader: str | None = None) -> pd.DataFrame:
    return _run_table(str(run_dir), grader).copy()


# ---------------------------------------------------------------------------------------------------------------
# trajectory agreement with greedy


def first_divergence(a: Sequence[int], b: Sequence[int]) -> float:
    """1-based step of the first differing token (a sequence that stops early differs at its end); NaN if equal."""
    for t, (x, y) in enumerate(zip(a, b), start=1):
        if x != y:
            return float(t)
    return float("nan") if len(a) == len(b) else float(min(len(a), len(b)) + 1)


def thinking_agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of positions, over the longer of the two thinking spans, where both recorded the same token."""
    width = max(len(a), len(b))
    if width == 0:
        return 1.0
    return sum(x == y for x, y in zip(a, b)) / width


def _answer(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def compare_samples(sample: Mapping[str, Any], greedy: Mapping[str, Any]) -> dict[str, Any]:
    """The agreement of one sample with the greedy sample of its item: `first_divergence` (step, NaN = identical
    outputs), `think_agreement` (share of identical visible thinking tokens), `answer_agree` (the same extracted
    answer, or neither extracted one), `correct_agree` (the same verdict)."""
    a, b = list(sample["token_ids"]), list(greedy["token_ids"])
    ta, tb = a[: int(sample["num_thinking_tokens"])], b[: int(greedy["num_thinking_tokens"])]
    return {"first_divergence": first_divergence(a, b), "think_agreement": thinking_agreement(ta, tb),
            "answer_agree": _answer(sample.get("extracted")) == _answer(greedy.get("extracted")),
            "correct_agree": int(sample.get("score", 0)) == int(greedy.get("score", 0)),
            "think_tokens": len(ta), "greedy_think_tokens": len(tb)}


def _runs(summary: pd.DataFrame | None, grader: str | None) -> pd.DataFrame:
    """`comparison.comparison_frame`, restricted to runs whose directory exists (made-up frames have none)."""
    from softthink.comparison import comparison_frame
    from softthink.store import CONFIG_FILE

    runs = comparison_frame(summary, grader=grader)
    exists = np.array([bool(d) and (Path(d) / CONFIG_FILE).exists() for d in runs.run_dir.astype(str)], dtype=bool)
    return runs.loc[exists]


def _greedy_for(runs: pd.DataFrame, model: str, dataset: str) -> pd.Series | None:
    g = runs[(runs.model == model) & (runs.dataset == dataset) & (runs.method == GREEDY)]
    return None if not len(g) else g.iloc[-1]


def agreement_frame(summary: pd.DataFrame | None, grader: str | None = "suite") -> pd.DataFrame:
    """One row per sample of every soft-input run (rows other than CoT / greedy / NoThinking) that has a greedy
    CoT run of the same model and benchmark: model, method, params, dataset, item_index, sample_index and the
    `compare_samples` columns. Items the greedy run lacks are skipped."""
    cols = ["model", "method", "params", "dataset", "item_index", "sample_index", "first_divergence",
            "think_agreement", "answer_agree", "correct_agree", "think_tokens", "greedy_think_tokens"]
    runs = _runs(summary, grader)
    out = []
    for _, r in runs[~runs.method.isin(DISCRETE_ROWS)].iterrows():
        g = _greedy_for(runs, r.model, r.dataset)
        if g is None:
            continue
        greedy = run_table(g.run_dir, _label(summary, g.run_dir)).groupby("item_index").first()
        for _, s in run_table(r.run_dir, _label(summary, r.run_dir)).iterrows():
            if s.item_index not in greedy.index:
                continue
            out.append({"model": r.model, "method": r.method, "params": r.params, "dataset": r.dataset,
                        "item_index": int(s.item_index), "sample_index": int(s.sample_index),
                        **compare_samples(s, greedy.loc[s.item_index])})
    return pd.DataFrame(out, columns=cols)


def _label(summary: pd.DataFrame | None, run_dir: str) -> str | None:
    """The grades label the summary frame used for this run (e.g. "v3-suite")."""
    if summary is None or "grader" not in summary.columns:
        return None
    hit = summary[summary.run_dir.astype(str) == str(run_dir)]
    return None if not len(hit) else hit.grader.iloc[0]


def agreement_table(agree: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method, params, dataset): samples, share never diverging, median first divergence step,
    mean share of identical thinking tokens, share of agreeing answers."""
    if not len(agree):
        return pd.DataFrame(columns=["model", "method", "params", "dataset", "samples", "identical %",
                                     "median first divergence", "same thinking tokens %", "same answer %"])
    g = agree.groupby(["model", "method", "params", "dataset"], sort=False)
    tab = pd.DataFrame({
        "samples": g.size(),
        "identical %": 100 * g.first_divergence.apply(lambda s: s.isna().mean()),
        "median first divergence": g.first_divergence.median(),
        "same thinking tokens %": 100 * g.think_agreement.mean(),
        "same answer %": 100 * g.answer_agree.mean(),
    }).reset_index()
    return tab


# ---------------------------------------------------------------------------------------------------------------
# paired differences


def _per_item(df: pd.DataFrame, items: Sequence[int], column: str) -> tuple[np.ndarray, np.ndarray]:
    """[items, n_max] values (NaN padded) and the sample count per item."""
    groups = {i: g[column].to_numpy(dtype=float) for i, g in df.groupby("item_index")}
    n = np.array([len(groups[i]) for i in items])
    mat = np.full((len(items), max(n.max(), 1)), np.nan)
    for k, i in enumerate(items):
        mat[k, : n[k]] = groups[i]
    return mat, n


def _resampled_means(mat: np.ndarray, n: np.ndarray, item_draw: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Mean over the drawn items of the mean over each item's drawn samples: [R]."""
    n_i = n[item_draw]  # [R, m]
    j = np.minimum((u * n_i[..., None]).astype(int), n_i[..., None] - 1)  # [R, m, width]
    vals = mat[item_draw[..., None], j]
    keep = np.arange(u.shape[-1])[None, None, :] < n_i[..., None]
    per_item = np.where(keep, vals, 0.0).sum(-1) / n_i
    return per_item.mean(-1)


def sign_flip_pvalue(d: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> float:
    """Two-sided paired permutation test of mean(d) = 0: the sign of every item's difference flipped at random
    (exactly, over all 2^m patterns, when that is no more than `n_resamples`)."""
    d = np.asarray(d, dtype=float)
    m = len(d)
    if m == 0:
        return float("nan")
    if 2 ** m <= n_resamples:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=m)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_resamples, m))
    observed = abs(d.mean())
    stats = np.abs((signs * d).mean(1))
    hits = (stats >= observed - 1e-12).sum()
    if 2 ** m <= n_resamples:
        return float(hits / len(signs))
    return float((hits + 1) / (len(signs) + 1))


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, column: str = "score",
                      n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> dict[str, float]:
    """A − B of mean-over-items of the per-item mean of `column` (pass@1 for "score", Len-All for "num_tokens"),
    over the items both frames hold (one row per sample: item_index, sample_index, `column`).

    Returns diff, the 95 % paired bootstrap interval (lo, hi), the sign-flip p value, n_items. The bootstrap draws
    the same items for A and B; within an item it draws samples with replacement, by the same sample indices when
    A and B have the same n there (samples with the same index share their counter-RNG key), independently
    otherwise. A frame against itself gives 0 with a zero-width interval and p = 1."""
    items = sorted(set(a.item_index) & set(b.item_index))
    nan = float("nan")
    if not items:
        return {"diff": nan, "lo": nan, "hi": nan, "p": nan, "n_items": 0}
    ma, na = _per_item(a, items, column)
    mb, nb = _per_item(b, items, column)
    d = np.nanmean(ma, 1) - np.nanmean(mb, 1)
    rng = np.random.default_rng(seed)
    m, width = len(items), max(ma.shape[1], mb.shape[1])
    draw = rng.integers(0, m, size=(n_resamples, m))
    u_a = rng.random((n_resamples, m, width))
    u_b = np.where((na == nb)[draw][..., None], u_a, rng.random((n_resamples, m, width)))
    boot = _resampled_means(ma, na, draw, u_a[..., : ma.shape[1]]) - _resampled_means(mb, nb, draw,
                                                                                        u_b[..., : mb.shape[1]])
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"diff": float(d.mean()), "lo": float(lo), "hi": float(hi),
            "p": sign_flip_pvalue(d, n_resamples, seed), "n_items": m}


PAIRED_COLUMNS = ["model", "dataset", "method", "params", "baseline", "baseline_params", "n_items",
                  "acc_diff", "acc_lo", "acc_hi", "acc_p", "len_diff", "len_lo", "len_hi", "len_p"]


def paired_frame(summary: pd.DataFrame | None, baseline: str = GREEDY, methods: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None, grader: str | None = "suite",
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Every run (of `methods`, default all) minus the `baseline` row's run of the same model and benchmark, on
    their common items: accuracy in points (pass@1 × 100) and Len-All in tokens, each with its paired 95 %
    bootstrap interval and sign-flip p value (`paired_difference`)."""
    runs = _runs(summary, grader)
    if datasets is not None:
        runs = runs[runs.dataset.isin(list(datasets))]
    out = []
    for (model, dataset), grp in runs.groupby(["model", "dataset"], sort=False):
        base = grp[grp.method == baseline]
        if not len(base):
            continue
        base = base.iloc[-1]
        tb = run_table(base.run_dir, _label(summary, base.run_dir))
        for _, r in grp.iterrows():
            if r.method == baseline or (methods is not None and r.method not in methods):
                continue
            ta = run_table(r.run_dir, _label(summary, r.run_dir))
            acc = paired_difference(ta, tb, "score", n_resamples, seed)
            ln = paired_difference(ta, tb, "num_tokens", n_resamples, seed)
            out.append({"model": model, "dataset": dataset, "method": r.method, "params": r.params,
                        "baseline": baseline, "baseline_params": base.params, "n_items": acc["n_items"],
                        "acc_diff": 100 * acc["diff"], "acc_lo": 100 * acc["lo"], "acc_hi": 100 * acc["hi"],
                        "acc_p": acc["p"], "len_diff": ln["diff"], "len_lo": ln["lo"], "len_hi": ln["hi"],
                        "len_p": ln["p"]})
    return pd.DataFrame(out, columns=PAIRED_COLUMNS)


def paired_markdown(paired: pd.DataFrame, title: str, level: str = "###") -> str:
    """A Markdown block: one row per (model, method, benchmark), "Δ [lo, hi] (p)" for accuracy and Len-All."""
    from softthink import paper
    from softthink.comparison import comparison_label

    parts = [f"{level} {title}", ""]
    if not len(paired):
        return "\n".join(parts + ["No pair of runs on the same items.", ""])
    fmt = lambda d, lo, hi, p, f: f"{d:{f}} [{lo:{f}}, {hi:{f}}] (p {p:.2f})"  # noqa: E731
    rows = pd.DataFrame({
        "Model": [paper.MODEL_SHORT.get(m, m) for m in paired.model],
        "Method": [comparison_label(m, p) for m, p in zip(paired.method, paired.params)],
        "Benchmark": [paper.DATASET_LABELS.get(d, d) for d in paired.dataset],
        "items": paired.n_items,
        "Δ Acc (points)": [fmt(*v, "+.1f") for v in paired[["acc_diff", "acc_lo", "acc_hi", "acc_p"]].to_numpy()],
        "Δ Len-All (tokens)": [fmt(*v, "+.0f") for v in paired[["len_diff", "len_lo", "len_hi", "len_p"]].to_numpy()],
    })
    base = ROWS[paired.baseline.iloc[0]].label if paired.baseline.iloc[0] in ROWS else paired.baseline.iloc[0]
    note = (f"Method − {base} on the items both runs hold: difference [95 % paired bootstrap interval] (sign-flip "
            f"permutation p value), {DEFAULT_RESAMPLES} resamples, seed {DEFAULT_SEED} (docs/diagnostics.md).")
    return "\n".join(parts + [rows.to_markdown(index=False, disable_numparse=True), "", note, ""])


# ---------------------------------------------------------------------------------------------------------------
# figures


def _method_order(methods) -> list[str]:
    present = set(methods)
    return [m for m in ROWS if m in present] + sorted(present - set(ROWS))


def divergence_figure(agree: pd.DataFrame):
    """Distribution of the first step where a sample leaves the greedy trajectory, one row per method (all
    benchmarks pooled): box and points; samples identical to greedy throughout are counted in the label."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from softthink.figures import _empty, method_color, method_label

    methods = _method_order(agree.method) if len(agree) else []
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * max(len(methods), 2) + 1.4), constrained_layout=True)
    if not methods:
        _empty(ax, "no soft-input run with a greedy CoT run of the same model and benchmark")
        return fig
    labels = {m: f"{method_label(m)} ({agree[agree.method == m].first_divergence.isna().sum()}/"
                 f"{(agree.method == m).sum()} identical)" for m in methods}
    df = agree.dropna(subset=["first_divergence"]).assign(label=lambda d: d.method.map(labels))
    order = [labels[m] for m in methods]
    pal = {labels[m]: method_color(m) for m in methods}
    if len(df):
        sns.boxplot(df, x="first_divergence", y="label", order=order, hue="label", palette=pal, ax=ax,
                    fliersize=0, boxprops={"alpha": 0.35}, legend=False)
        sns.stripplot(df, x="first_divergence", y="label", order=order, hue="label", palette=pal, ax=ax,
                      size=4, jitter=0.2, legend=False)
    ax.set_xlabel("first step where the visible token differs from greedy CoT (same item and model)")
    ax.set_ylabel("")
    ax.grid(alpha=0.3, axis="x")
    ax.set_title("Trajectory agreement with greedy decoding", fontsize=11)
    return fig


def paired_figure(paired: pd.DataFrame, ncols: int = 4):
    """The companion of the Pareto view: per benchmark, every method's paired accuracy difference to the baseline
    with its 95 % bootstrap interval (a dot on the zero line with no bar = the same items, the same answers)."""
    import math

    import matplotlib.pyplot as plt

    from softthink import paper
    from softthink.figures import _empty, method_color, method_label, method_marker

    datasets = list(dict.fromkeys(paired.dataset)) if len(paired) else []
    ncols = max(1, min(ncols, len(datasets) or 1))
    nrows = max(1, math.ceil(len(datasets) / ncols))
    methods = _method_order(paired.method) if len(paired) else []
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 0.32 * max(len(methods), 3) * nrows + 1.5),
                             squeeze=False, constrained_layout=True)
    for ax, ds in zip(axes.flat, datasets):
        sub = paired[paired.dataset == ds].reset_index(drop=True)
        for y, r in sub.iterrows():
            ax.errorbar(r.acc_diff, y, xerr=[[r.acc_diff - r.acc_lo], [r.acc_hi - r.acc_diff]], fmt=method_marker(
                r.method), color=method_color(r.method), capsize=3, markersize=6)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(sub)), [method_label(m) for m in sub.method], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(paper.DATASET_LABELS.get(ds, ds))
        ax.set_xlabel("Δ pass@1 (points)")
        ax.grid(alpha=0.3, axis="x")
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    if not datasets:
        _empty(axes.flat[0], "no pair of runs on the same items")
    base = paired.baseline.iloc[0] if len(paired) else GREEDY
    fig.suptitle(f"Paired accuracy difference to {method_label(base)} (95 % paired bootstrap interval)", fontsize=11)
    return fig
