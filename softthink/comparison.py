"""The extended comparison: every method (softthink/methods.py rows) × benchmark of our runs, beyond the paper's
tables (the `methods` profile). No published numbers exist for most of these at this scale: ours only.

Outputs (`write_comparison`): `figures/comparison.{md,csv,tex}`; accuracy, Len-Correct, Len-All and pass@k (k = n),
and every method minus greedy CoT on the same items with paired intervals (`comparison_paired.csv`,
docs/diagnostics.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from softthink import paper
from softthink.methods import ROWS, params_label
from softthink.tables import DASH, _fmt, normalize, select_grader

COMPARISON_METHODS = list(ROWS)  # every row of softthink/methods.py, in its display order
COMPARISON_DATASETS = paper.TABLE1_DATASETS + paper.TABLE2_DATASETS
COMPARISON_METRICS = ["acc", "len_correct", "len_all", "pass@k"]
COMPARISON_HEADS = {"acc": "Accuracy (pass@1, %)", "len_correct": "Len-Correct (tokens)", "len_all": "Len-All (tokens)",
                    "pass@k": "pass@k (%, unbiased estimator, k = n samples per item; runs with n > 1 only)"}


def method_params_label(row: str, gen: dict[str, Any] | None) -> str:
    """Deprecated name of `softthink.methods.params_label`."""
    return params_label(row, gen)


def comparison_frame(summary: pd.DataFrame | None, grader: str | None = "suite") -> pd.DataFrame:
    """Long frame of the extended comparison, one row per run: model, method (row key), params (label), dataset, acc,
    acc_std, len_correct, len_all, n, n_items, k and pass@k (k = n; NaN unless n > 1), run_dir.

    Key parameters come from each run's resolved `generation` (a column of the summary frame)."""
    cols = ["model", "method", "params", "dataset", "acc", "acc_std", "len_correct", "len_all", "n", "n_items", "k",
            "pass@k", "run_dir"]
    if summary is None or len(summary) == 0 or "pass@1" not in summary.columns:
        return pd.DataFrame(columns=cols)
    src = select_grader(summary, grader)
    out = normalize(src, grader=None)
    out = out[["model", "method", "dataset", "acc", "acc_std", "len_correct", "len_all", "n", "n_items", "run_dir"]]
    out = out.copy()
    out["params"] = [params_label(m, g) for m, g in zip(out.method, src["generation"])]
    ks, pk = [], []
    for i in range(len(src)):
        n = out.at[i, "n"]
        k = int(n) if pd.notna(n) and int(n) > 1 else None
        col = f"pass@{k}" if k else None
        v = src.at[i, col] if col and col in src.columns else np.nan
        ks.append(k if k else np.nan)
        pk.append(float(v) if v is not None and pd.notna(v) and pd.notna(out.at[i, "acc"]) else np.nan)
    out["k"] = ks
    out["pass@k"] = pk
    return out[cols].reset_index(drop=True)


def _method_rank(m: str) -> int:
    order = list(ROWS)  # read now: a method registered at run time has its place
    return order.index(m) if m in order else len(order)


def comparison_table(summary: pd.DataFrame | None, grader: str | None = "suite",
                     datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """Every method × benchmark of our runs: index (model, method, params), columns MultiIndex (metric ∈
    COMPARISON_METRICS, dataset … + "avg"). Averages are unweighted means over the datasets a row has (attrs
    `complete` says whether that is all of them); pass@k cells only for runs with n > 1 (attrs `k`: the k per row)."""
    long = comparison_frame(summary, grader=grader)
    present = list(dict.fromkeys(long.dataset)) if len(long) else []
    if datasets is None:
        datasets = [d for d in COMPARISON_DATASETS if d in present] + sorted(set(present) - set(COMPARISON_DATASETS))
    datasets = list(datasets)
    long = long[long.dataset.isin(datasets)].drop_duplicates(["model", "method", "params", "dataset"], keep="last")
    rows = sorted({(m, me, p) for m, me, p in zip(long.model, long.method, long.params)},
                  key=lambda r: (paper.MODELS.index(r[0]) if r[0] in paper.MODELS else len(paper.MODELS), r[0],
                                 _method_rank(r[1]), r[1], r[2]))
    cols = pd.MultiIndex.from_product([COMPARISON_METRICS, datasets + ["avg"]])
    idx = long.set_index(["model", "method", "params", "dataset"]).sort_index()
    data, complete, kk, items = [], [], [], []
    for r in rows:
        vals: dict[tuple, float] = {}
        ks = set()
        per = []
        for ds in datasets:
            if r + (ds,) not in idx.index:
                continue
            o = idx.loc[r + (ds,)]
            for m in COMPARISON_METRICS:
                vals[(m, ds)] = o[m]
            if pd.notna(o["k"]):
                ks.add(int(o["k"]))
            per.append(f"{paper.DATASET_LABELS.get(ds, ds)} {int(o['n_items']) if pd.notna(o['n_items']) else '?'}"
                       f"×{int(o['n']) if pd.notna(o['n']) else '?'}")
        for m in COMPARISON_METRICS:
            got = [vals.get((m, ds)) for ds in datasets]
            got = [v for v in got if v is not None and pd.notna(v)]
            if got:
                vals[(m, "avg")] = float(np.mean(got))
        complete.append(sum(pd.notna(vals.get(("acc", ds), np.nan)) for ds in datasets) == len(datasets))
        kk.append(sorted(ks))
        items.append("; ".join(per))
        data.append([vals.get(c, np.nan) for c in cols])
    tab = pd.DataFrame(data, dtype=float, columns=cols,
                       index=pd.MultiIndex.from_tuples(rows, names=["model", "method", "params"]))
    tab.attrs.update(domain="comparison", datasets=datasets, complete=complete, k=kk, items=items)
    return tab


def comparison_label(method: str, params: str) -> str:
    return (ROWS[method].label if method in ROWS else method) + (f" ({params})" if params else "")


def comparison_flat(tab: pd.DataFrame, formatted: bool = True) -> pd.DataFrame:
    """One header row ("<metric> <Dataset>"), Model and Method (name + key parameters) as columns."""
    out = pd.DataFrame(index=range(len(tab)))
    out["Model"] = [paper.MODEL_SHORT.get(m, m) for m in tab.index.get_level_values("model")]
    out["Method"] = [comparison_label(m, p) for m, p in zip(tab.index.get_level_values("method"),
                                                          tab.index.get_level_values("params"))]
    names = {"acc": "Acc", "len_correct": "Len-Correct", "len_all": "Len-All", "pass@k": "pass@k"}
    datasets = tab.attrs.get("datasets") or [d for _m, d in tab.columns if d != "avg"]
    for metric, ds in tab.columns:
        col = tab[(metric, ds)].to_numpy()
        name = f"{names[metric]} {paper.DATASET_LABELS.get(ds, 'Avg' if ds == 'avg' else ds)}"
        if formatted:
            cells = [_fmt(v, "ours", "acc" if metric in ("acc", "pass@k") else "len") for v in col]
            if ds == "avg":  # * = this metric's average covers only some of the benchmarks
                complete = tab[[(metric, d) for d in datasets]].notna().all(axis=1).tolist()
                cells = [c + ("*" if not ok and c != DASH else "") for c, ok in zip(cells, complete)]
            out[name] = cells
        else:
            out[name] = col
    ks = tab.attrs.get("k") or [[] for _ in range(len(tab))]
    out["k"] = ["/".join(map(str, k)) if k else (DASH if formatted else "") for k in ks]
    return out


def comparison_markdown(tab: pd.DataFrame, title: str = "Comparison of every method") -> str:
    flat = comparison_flat(tab)
    parts = [f"## {title}", ""]
    prefix = {"acc": "Acc", "len_correct": "Len-Correct", "len_all": "Len-All", "pass@k": "pass@k"}
    if not len(tab):
        parts.append("No runs yet.")
    for metric in COMPARISON_METRICS if len(tab) else []:
        cols = [c for c in flat.columns if c.split(" ")[0] == prefix[metric]]
        sub = flat[["Model", "Method"] + (["k"] if metric == "pass@k" else []) + cols]
        if metric == "pass@k":
            has = [bool(k) for k in tab.attrs.get("k") or []]
            sub = sub[has]
            if not len(sub):
                parts += [f"### {COMPARISON_HEADS[metric]}", "", "No run with n > 1.", ""]
                continue
        sub = sub.rename(columns=lambda c: c.split(" ", 1)[1] if c not in ("Model", "Method", "k") else c)
        parts += [f"### {COMPARISON_HEADS[metric]}", "", sub.to_markdown(index=False, disable_numparse=True), ""]
    notes = ["Our runs only (no published numbers exist for most of these methods at this scale). Accuracy = pass@1 "
             "(mean over items of the fraction of correct samples); Len-Correct / Len-All = mean generated tokens of "
             "correct / all samples (docs/design/evaluation.md §5); pass@k = the unbiased estimator with k = n. Avg = unweighted "
             "mean over the benchmarks where the row has a value; * = not every benchmark. — = not available "
             "(Accuracy: ungraded, e.g. LiveCodeBench without tests; Len-Correct: no correct sample; pass@k: n = 1)."]
    items = tab.attrs.get("items") or []
    if any(items):
        notes.append("Items × samples per item:")
        notes += [f"- {flat.loc[i, 'Model']} / {flat.loc[i, 'Method']}: {it}" for i, it in enumerate(items) if it]
    return "\n".join(parts + notes) + "\n"


def comparison_latex(tab: pd.DataFrame, caption: str = "Comparison of every method",
                     label: str = "tab:comparison") -> str:
    flat = comparison_flat(tab).replace({DASH: "--"})
    prefix = {"acc": "Acc", "len_correct": "Len-Correct", "len_all": "Len-All", "pass@k": "pass@k"}
    blocks = []
    for metric in COMPARISON_METRICS:
        cols = [c for c in flat.columns if c.split(" ")[0] == prefix[metric]]
        sub = flat[["Model", "Method"] + (["k"] if metric == "pass@k" else []) + cols]
        if metric == "pass@k":
            sub = sub[[bool(k) for k in tab.attrs.get("k") or []]]
        sub = sub.rename(columns=lambda c: c.split(" ", 1)[1] if c not in ("Model", "Method", "k") else c)
        blocks.append(sub.to_latex(index=False, escape=True, column_format="ll" + "r" * (len(sub.columns) - 2),
                                   caption=f"{caption} ({COMPARISON_HEADS[metric]})", label=f"{label}-{metric}"))
    return "\n".join(blocks)


def write_comparison(summary: pd.DataFrame | None, outdir: str | Path = "figures",
                     grader: str | None = "suite") -> list[str]:
    """Write comparison.{md,csv,tex} to `outdir` (CSV: unformatted values, one column per metric × dataset)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tab = comparison_table(summary, grader=grader)
    paths = [outdir / "comparison.md", outdir / "comparison.csv", outdir / "comparison.tex",
             outdir / "comparison_paired.csv"]
    # paired differences against greedy CoT on the same items (softthink.diagnostics)
    from softthink import diagnostics

    paired = diagnostics.paired_frame(summary, baseline=diagnostics.GREEDY, grader=grader)
    paths[0].write_text(comparison_markdown(tab, "Comparison of every method — accuracy, length and pass@k") + "\n"
                        + diagnostics.paired_markdown(paired, "Paired differences against CoT Thinking (Greedy)"))
    comparison_flat(tab, formatted=False).to_csv(paths[1], index=False)
    paths[2].write_text(comparison_latex(tab))
    paired.to_csv(paths[3], index=False)
    return [str(p) for p in paths]
