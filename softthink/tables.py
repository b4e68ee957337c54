"""Paper tables from cached results: Tables 1 (math), 2 (code), 3 (ablation), ours beside the published numbers.

Input is a *summary frame*: one row per run (model × method × dataset), as `runs.summarize_runs(dirs)` returns it.
`normalize()` maps it to the columns used here:

    model     display name (HF ids of the paper's models map back to the paper's names)
    method    table row key: cot_sample | cot_greedy | soft | soft_no_cold_stop | coconut_tf | avg_embedding | ...
    variant   free label distinguishing several runs of one row ("" by default; e.g. "K=15", "corrected")
    dataset   benchmark name (softthink.data names)
    acc       pass@1 in % (unrounded)      acc_std  bootstrap std in points
    len_correct, len_all                    tokens (docs/design/evaluation.md §5)
    n         samples per item              n_items  items graded      run_dir, grader_mode, aime2024_key

Outputs (`write_tables`): `figures/table{1,2,3}.{md,csv,tex}`, and `figures/tables.json` (long format, for tests and
the report). Differences are ours − published (points / tokens); published averages are the printed ones, our
averages are unrounded means of our per-dataset values (never of rounded cells).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from softthink import paper
from softthink.runs import read_run_config

NORMAL_COLUMNS = ["model", "method", "variant", "dataset", "acc", "acc_std", "len_correct", "len_all", "n", "n_items",
                  "run_dir", "grader_mode", "aime2024_key"]
ABLATION_ONLY = ("coconut_tf", "avg_embedding", "soft_no_cold_stop")  # Table 3 rows, kept out of Tables 1/2
_ID_TO_MODEL = {v.lower(): k for k, v in paper.MODEL_IDS.items()}
_ID_TO_MODEL.update({k.lower(): k for k in paper.MODEL_IDS})


def model_display_name(model: Any) -> str:
    """Paper display name for the paper's models (by HF id or basename); other models keep their own name."""
    s = str(model)
    low = s.lower().rstrip("/")
    if low in _ID_TO_MODEL:
        return _ID_TO_MODEL[low]
    base = low.split("/")[-1]
    return _ID_TO_MODEL.get(base, s)


NOISE_ROWS = {"gumbel": "soft_gumbel", "dirichlet": "soft_dirichlet"}  # stochastic Soft Thinking (arXiv 2508.03440)


def row_key(method: str, cold_stop_threshold: float | None = None, noise: str | None = None) -> str:
    """Table row of a run: `soft` with Cold Stop off (τ = 0) is Table 3's "w/o Cold Stop" row; `soft` with Gumbel or
    Dirichlet noise is its own row (`soft_gumbel`, `soft_dirichlet`) whatever its Cold Stop setting."""
    if method == "soft" and isinstance(noise, str) and noise in NOISE_ROWS:
        return NOISE_ROWS[noise]
    if method == "soft" and cold_stop_threshold is not None and float(cold_stop_threshold) == 0.0:
        return "soft_no_cold_stop"
    return method


def _first(df: pd.DataFrame, names: Iterable[str]) -> pd.Series | None:
    for n in names:
        if n in df.columns:
            return df[n]
    return None


SETTING_COLUMNS = ["preset", "n", "T", "top_p", "top_k", "min_p", "max_topk", "max_new_tokens", "cold_stop_tau",
                   "cold_stop_L", "answer_mode", "noise", "seed", "engine"]


def _auto_variant(df: pd.DataFrame, out: pd.DataFrame) -> pd.Series:
    """Label runs that share a (model, method, dataset) cell but differ in settings.

    The most common setting tuple of a (model, method) row is unlabelled; another run of an already occupied cell is
    labelled by its differences from it ("max_topk=15, preset=corrected"). Per-benchmark tuned settings (one run per
    dataset) stay in one row."""
    variant = pd.Series([""] * len(df), index=df.index, dtype=object)
    cols = [c for c in SETTING_COLUMNS if c in df.columns]
    if not cols:
        return variant
    key = df[cols].astype(str).agg("|".join, axis=1)
    for _, idx in out.groupby(["model", "method"]).groups.items():
        counts = key[idx].value_counts()
        modal = sorted(counts[counts == counts.max()].index)[0]
        dup = out.loc[idx].duplicated(["dataset"], keep=False)
        for i in idx:
            if key[i] != modal and dup[i]:
                ref = dict(zip(cols, modal.split("|")))
                variant[i] = ", ".join(f"{c}={df.at[i, c]}" for c in cols if str(df.at[i, c]) != ref[c])
    return variant


def normalize(summary: pd.DataFrame | None, grader: str | None = "suite") -> pd.DataFrame:
    """Map a `runs.summarize_runs` frame (or an already normal one) to NORMAL_COLUMNS (accuracy in %).

    `grader`: keep rows of this grader mode (grades label ending in "-<mode>") when a run has several; None keeps all.
    """
    if summary is None or len(summary) == 0:
        return pd.DataFrame(columns=NORMAL_COLUMNS)
    df = summary.copy().reset_index(drop=True)
    if grader and "grader" in df.columns and "run" in df.columns:
        g = df["grader"].astype(str)
        pref = g.str.endswith(f"-{grader}")
        keep = pref | ~df["run"].isin(df.loc[pref, "run"])
        df = df[keep & df["grader"].notna()] if df["grader"].notna().any() else df
        df = df.reset_index(drop=True)
    if "pass@1" not in df.columns and "acc" not in df.columns:
        return pd.DataFrame(columns=NORMAL_COLUMNS)
    out = pd.DataFrame(index=df.index)
    out["model"] = _first(df, ["model_name", "model"]).map(model_display_name)
    row = _first(df, ["row", "table_row"])
    method = _first(df, ["method", "generation.method"])
    thr = _first(df, ["cold_stop_tau", "cold_stop.threshold", "cold_stop_threshold"])
    thr_list = list(thr) if thr is not None else [None] * len(df)
    noise = _first(df, ["noise", "noise.kind"])
    noise_list = list(noise) if noise is not None else [None] * len(df)
    keys = [row_key(m, t, z) for m, t, z in zip(method, thr_list, noise_list)]
    if row is not None:
        out["method"] = [r if isinstance(r, str) and r else k for r, k in zip(row, keys)]
    else:
        out["method"] = keys
    out["dataset"] = _first(df, ["dataset"])
    v = _first(df, ["variant", "label"])
    out["variant"] = v.fillna("").astype(str) if v is not None else _auto_variant(df, out)
    acc = _first(df, ["acc", "pass@1", "pass_at_1"])  # runs.summarize_runs reports pass@1 in %
    out["acc"] = acc.astype(float)
    if "ungraded" in df.columns and "samples" in df.columns:  # nothing gradable (e.g. LCB without tests): no number
        none = (df["ungraded"].fillna(0) >= df["samples"].fillna(0)) & (df["samples"].fillna(0) > 0)
        out.loc[none, "acc"] = np.nan
    s = _first(df, ["acc_std", "pass@1_std"])
    out["acc_std"] = s.astype(float) if s is not None else np.nan
    for col in ["len_correct", "len_all"]:
        out[col] = df[col].astype(float) if col in df.columns else np.nan
    n = _first(df, ["n", "n_min"])
    out["n"] = n if n is not None else np.nan
    ni = _first(df, ["n_items", "items"])
    out["n_items"] = ni if ni is not None else np.nan
    for col, names in {"run_dir": ["run_dir", "run", "dir", "path"], "grader_mode": ["grader_mode", "grader"],
                       "aime2024_key": ["aime2024_key"]}.items():
        s = _first(df, names)
        out[col] = s.astype(str) if s is not None else ""
    return out.reset_index(drop=True)[NORMAL_COLUMNS]


# --------------------------------------------------------------------------------------------------------------
# building


def _pub_main(domain: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    cells = paper.published_cells()
    cells = cells[cells.domain == domain]
    avgs = paper.published_averages()
    return cells, avgs[avgs.domain == domain]


def _row_order(keys: list[tuple[str, str, str]], methods: list[str]) -> list[tuple[str, str, str]]:
    def k(t):
        model, method, variant = t
        mi = paper.MODELS.index(model) if model in paper.MODELS else len(paper.MODELS)
        me = methods.index(method) if method in methods else len(methods)
        return (mi, model if mi == len(paper.MODELS) else "", me, method, variant)
    return sorted(set(keys), key=k)


def main_table(summary: pd.DataFrame | None, domain: str, include_unpublished_models: bool = True,
               methods: list[str] | None = None) -> pd.DataFrame:
    """Table 1 (domain "math") or 2 ("code") in long-wide form.

    Index: (model, method, variant). Columns: MultiIndex (metric ∈ {acc, len}, dataset … + "avg", kind ∈ {pub, ours,
    diff}). Extra columns ("info", …): items per dataset and whether our average covers every dataset.
    """
    datasets = paper.DOMAINS[domain]
    methods = methods or paper.METHODS_MAIN
    ours = normalize(summary)
    ours = ours[ours.dataset.isin(datasets) & ~ours.method.isin(ABLATION_ONLY)]
    pub_cells, pub_avgs = _pub_main(domain)
    keys = [(m, me, "") for m, me in zip(pub_cells.model, pub_cells.method)]
    keys += [(m, me, v) for m, me, v in zip(ours.model, ours.method, ours.variant)
             if (include_unpublished_models or m in paper.MODELS)]
    # a published row with our variants only: drop the empty-variant duplicate when ours exist under variants
    rows = _row_order(keys, methods)
    has_var = {(m, me) for m, me, v in rows if v}
    has_plain_ours = {(m, me) for m, me, v in zip(ours.model, ours.method, ours.variant) if not v}
    rows = [r for r in rows if r[2] or (r[0], r[1]) not in has_var or (r[0], r[1]) in has_plain_ours]
    cols = pd.MultiIndex.from_product([["acc", "len"], datasets + ["avg"], ["pub", "ours", "diff"]])
    vals: dict[tuple, dict[tuple, float]] = {r: {} for r in rows}
    pc = pub_cells.set_index(["model", "method", "dataset"])
    pa = pub_avgs.set_index(["model", "method"])
    oc = ours.drop_duplicates(["model", "method", "variant", "dataset"], keep="last")
    oc = oc.set_index(["model", "method", "variant", "dataset"])
    items, complete = [], []
    pc = pc.sort_index()
    pa = pa.sort_index()
    oc = oc.sort_index()
    for (model, method, variant) in rows:
        r = (model, method, variant)
        cell = vals[r]
        per_items = []
        for ds in datasets:
            if (model, method, ds) in pc.index:
                cell[("acc", ds, "pub")] = pc.loc[(model, method, ds), "acc"]
                cell[("len", ds, "pub")] = pc.loc[(model, method, ds), "len_correct"]
            if (model, method, variant, ds) in oc.index:
                o = oc.loc[(model, method, variant, ds)]
                cell[("acc", ds, "ours")] = o["acc"]
                cell[("len", ds, "ours")] = o["len_correct"]
                per_items.append(f"{paper.DATASET_LABELS.get(ds, ds)} {int(o['n_items']) if pd.notna(o['n_items']) else '?'}"
                                 f"/{paper.DATASET_SIZES.get(ds, '?')}×{int(o['n']) if pd.notna(o['n']) else '?'}")
        if (model, method) in pa.index:
            cell[("acc", "avg", "pub")] = pa.loc[(model, method), "avg_acc"]
            cell[("len", "avg", "pub")] = pa.loc[(model, method), "avg_len"]
        for metric in ["acc", "len"]:
            got = [cell.get((metric, ds, "ours")) for ds in datasets]
            got = [v for v in got if v is not None and pd.notna(v)]
            if got:
                cell[(metric, "avg", "ours")] = float(np.mean(got))
        n_ours = sum(bool(pd.notna(cell.get(("acc", ds, "ours"), np.nan))) for ds in datasets)
        complete.append(n_ours == len(datasets) if n_ours else None)
        items.append("; ".join(per_items))
    tab = pd.DataFrame([[vals[r].get(c, np.nan) for c in cols] for r in rows], dtype=float,
                       index=pd.MultiIndex.from_tuples(rows, names=["model", "method", "variant"]), columns=cols)
    for metric in ["acc", "len"]:
        for ds in datasets + ["avg"]:
            tab[(metric, ds, "diff")] = tab[(metric, ds, "ours")] - tab[(metric, ds, "pub")]
    tab.attrs.update(domain=domain, datasets=datasets, items=items, complete=complete)
    return tab


def ablation_table(summary: pd.DataFrame | None) -> pd.DataFrame:
    """Table 3 (QwQ-32B in the paper; ours for every model that has ablation rows).

    Index (model, method, variant); columns MultiIndex (metric ∈ {acc, len_all, len_correct}, dataset, kind).
    """
    datasets = paper.ABLATION_DATASETS
    ours = normalize(summary)
    ours = ours[ours.dataset.isin(datasets) & ours.method.isin(paper.METHODS_ABLATION)]
    pub = paper.published_cells()
    pub = pub[pub.table == "table3"].set_index(["method", "dataset"])
    keys = [(paper.TABLE3_MODEL, m, "") for m in paper.METHODS_ABLATION]
    keys += list(zip(ours.model, ours.method, ours.variant))
    rows = _row_order(keys, paper.METHODS_ABLATION)
    metrics = ["acc", "len_all", "len_correct"]
    cols = pd.MultiIndex.from_product([metrics, datasets, ["pub", "ours", "diff"]])
    oc = ours.drop_duplicates(["model", "method", "variant", "dataset"], keep="last")
    oc = oc.set_index(["model", "method", "variant", "dataset"]).sort_index()
    pub = pub.sort_index()
    items = []
    vals: dict[tuple, dict[tuple, float]] = {r: {} for r in rows}
    for r in rows:
        model, method, variant = r
        per = []
        for ds in datasets:
            if model == paper.TABLE3_MODEL and (method, ds) in pub.index:
                for m in metrics:
                    vals[r][(m, ds, "pub")] = pub.loc[(method, ds), m]
            if (model, method, variant, ds) in oc.index:
                o = oc.loc[(model, method, variant, ds)]
                for m in metrics:
                    vals[r][(m, ds, "ours")] = o[m]
                per.append(f"{paper.DATASET_LABELS[ds]} {int(o['n_items']) if pd.notna(o['n_items']) else '?'}"
                           f"/{paper.DATASET_SIZES[ds]}")
        items.append("; ".join(per))
    tab = pd.DataFrame([[vals[r].get(c, np.nan) for c in cols] for r in rows], dtype=float,
                       index=pd.MultiIndex.from_tuples(rows, names=["model", "method", "variant"]), columns=cols)
    for m in metrics:
        for ds in datasets:
            tab[(m, ds, "diff")] = tab[(m, ds, "ours")] - tab[(m, ds, "pub")]
    tab.attrs.update(domain="ablation", datasets=datasets, items=items)
    return tab


# --------------------------------------------------------------------------------------------------------------
# rendering

DASH = "—"


def _fmt(v: float, kind: str, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    if metric == "acc":
        return f"{v:+.2f}" if kind == "diff" else f"{v:.2f}"
    return f"{v:+,.0f}" if kind == "diff" else f"{v:,.0f}"


def flat_frame(tab: pd.DataFrame, formatted: bool = True) -> pd.DataFrame:
    """One header row: "<Dataset> <metric> <kind>", row labels as columns; values formatted as printed."""
    out = pd.DataFrame(index=range(len(tab)))
    out["Model"] = [paper.MODEL_SHORT.get(m, m) for m in tab.index.get_level_values("model")]
    labels = paper.TABLE3_LABELS if tab.attrs.get("domain") == "ablation" else paper.METHOD_LABELS
    out["Method"] = [labels.get(m, m) + (f" [{v}]" if v else "")
                     for m, v in zip(tab.index.get_level_values("method"), tab.index.get_level_values("variant"))]
    metric_names = {"acc": "Acc", "len": "Len", "len_all": "Len-All", "len_correct": "Len-Correct"}
    for metric, ds, kind in tab.columns:
        name = f"{metric_names[metric]} {paper.DATASET_LABELS.get(ds, 'Avg' if ds == 'avg' else ds)} {kind}"
        col = tab[(metric, ds, kind)].to_numpy()
        out[name] = [_fmt(v, kind, "acc" if metric == "acc" else "len") for v in col] if formatted else col
    if formatted and tab.attrs.get("complete") is not None:
        for i, c in enumerate(tab.attrs["complete"]):
            if c is False:
                for metric in ("Acc", "Len"):
                    name = f"{metric} Avg ours"
                    out.loc[i, name] = out.loc[i, name] + "*"
    return out


def to_markdown(tab: pd.DataFrame, title: str) -> str:
    """Paper-shaped Markdown: one block for accuracy, one per length statistic, pub | ours | Δ per dataset."""
    flat = flat_frame(tab)
    parts = [f"## {title}", ""]
    metric_groups = sorted({c[0] for c in tab.columns}, key=["acc", "len", "len_all", "len_correct"].index)
    heads = {"acc": "Accuracy (pass@1, %)", "len": "Generation length (Len-Correct, tokens)",
             "len_all": "Len-All (tokens)", "len_correct": "Len-Correct (tokens)"}
    prefix = {"acc": "Acc", "len": "Len", "len_all": "Len-All", "len_correct": "Len-Correct"}
    for metric in metric_groups:
        cols = ["Model", "Method"] + [c for c in flat.columns if c.split(" ")[0] == prefix[metric]]
        sub = flat[cols].rename(columns=lambda c: c.split(" ", 1)[1] if c not in ("Model", "Method") else c)
        parts += [f"### {heads[metric]}", "", sub.to_markdown(index=False, disable_numparse=True), ""]
    notes = ["pub = published (docs/design/paper.md, arXiv 2505.15778 v1); ours = this suite (unrounded means, printed at 2 dp "
             "/ integer tokens); diff = ours − pub. — = not available."]
    if any(c is False for c in tab.attrs.get("complete") or []):
        notes.append("* = our average covers only the datasets we have results for.")
    items = tab.attrs.get("items") or []
    ranked = [(flat.loc[i, "Model"], flat.loc[i, "Method"], it) for i, it in enumerate(items) if it]
    if ranked:
        notes.append("Items used by our runs (items/full size × samples per item):")
        notes += [f"- {m} / {me}: {it}" for m, me, it in ranked]
    return "\n".join(parts + notes) + "\n"


def to_latex(tab: pd.DataFrame, caption: str, label: str) -> str:
    flat = flat_frame(tab)
    metric_groups = sorted({c[0] for c in tab.columns}, key=["acc", "len", "len_all", "len_correct"].index)
    prefix = {"acc": "Acc", "len": "Len", "len_all": "Len-All", "len_correct": "Len-Correct"}
    blocks = []
    for metric in metric_groups:
        cols = [c for c in flat.columns if c.split(" ")[0] == prefix[metric]]
        sub = flat[["Model", "Method"] + cols].copy()
        mi = [("", "Model", ""), ("", "Method", "")] + [(prefix[metric],) + tuple(c.split(" ")[1:3]) for c in cols]
        sub.columns = pd.MultiIndex.from_tuples(mi)
        sub = sub.replace({DASH: "--"})
        blocks.append(sub.to_latex(index=False, escape=True, multicolumn=True, multicolumn_format="c",
                                   column_format="ll" + "r" * len(cols),
                                   caption=f"{caption} ({prefix[metric]})", label=f"{label}-{metric}"))
    return "\n".join(blocks)


def long_frame(tab: pd.DataFrame, table: str) -> pd.DataFrame:
    s = tab.stack(level=[0, 1], future_stack=True).reset_index()
    s = s.rename(columns={"level_3": "metric", "level_4": "dataset"})
    s.insert(0, "table", table)
    return s


TABLE_TITLES = {
    "table1": ("Table 1 — mathematics: accuracy and generation length", "tab:math"),
    "table2": ("Table 2 — code: accuracy and generation length", "tab:code"),
    "table3": ("Table 3 — ablation on AIME 2024 and LiveCodeBench", "tab:ablation"),
}


def build_tables(summary: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    return {"table1": main_table(summary, "math"), "table2": main_table(summary, "code"),
            "table3": ablation_table(summary)}


def write_tables(summary: pd.DataFrame | None, outdir: str | Path = "figures") -> dict[str, list[str]]:
    """Write table{1,2,3}.{md,csv,tex} and tables.json (long format) to `outdir`; return the paths written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    longs = []
    for name, tab in build_tables(summary).items():
        title, label = TABLE_TITLES[name]
        paths = [outdir / f"{name}.md", outdir / f"{name}.csv", outdir / f"{name}.tex"]
        paths[0].write_text(to_markdown(tab, title))
        flat_frame(tab, formatted=False).to_csv(paths[1], index=False)
        paths[2].write_text(to_latex(tab, title, label))
        written[name] = [str(p) for p in paths]
        longs.append(long_frame(tab, name))
    long = pd.concat(longs, ignore_index=True)
    (outdir / "tables.json").write_text(long.to_json(orient="records", indent=1))
    written["long"] = [str(outdir / "tables.json")]
    return written


# --------------------------------------------------------------------------------------------------------------
# synthetic results (tests and development without a model)


def synthetic_summary(models: list[str] | None = None, seed: int = 0, n_items: int = 3,
                      include_ablation: bool = True) -> pd.DataFrame:
    """A summary frame in the `runs.summarize_runs` shape with made-up numbers near the published ones."""
    rng = np.random.default_rng(seed)
    models = models or [paper.MODEL_IDS[m] for m in paper.MODELS]
    cells = paper.published_cells()
    rows = []
    for model in models:
        name = model_display_name(model)
        for _, c in cells[cells.table != "table3"].iterrows():
            if name in paper.MODELS and c.model != name:
                continue
            if name not in paper.MODELS and c.model != paper.MODELS[0]:
                continue
            acc = float(np.clip(c.acc + rng.normal(0, 3), 0, 100))
            rows.append({"run": f"synthetic-{name}-{c.method}-{c.dataset}", "model": model, "dataset": c.dataset,
                         "method": c.method, "cold_stop_tau": 0.01 if c.method == "soft" else 0.0,
                         "grader": "v1-suite", "items": n_items, "n": c.n_samples, "pass@1": acc,
                         "pass@1_std": 5.0, "len_correct": c.len_correct * (1 + rng.normal(0, 0.05)),
                         "len_all": c.len_correct * 1.2})
        if include_ablation:
            for _, c in cells[cells.table == "table3"].iterrows():
                if c.method == "soft":
                    continue
                acc = float(np.clip(c.acc + rng.normal(0, 3), 0, 100))
                m = "soft" if c.method == "soft_no_cold_stop" else c.method
                rows.append({"run": f"synthetic-{name}-{c.method}-{c.dataset}", "model": model,
                             "dataset": c.dataset, "method": m, "cold_stop_tau": 0.0, "grader": "v1-suite",
                             "items": n_items, "n": 1, "pass@1": acc, "pass@1_std": 5.0,
                             "len_correct": c.len_correct, "len_all": c.len_all})
    return pd.DataFrame(rows)


def table_summary_json(summary: pd.DataFrame | None) -> dict[str, Any]:
    """Small dict of our averages per (domain, model, method), for sidecars."""
    out: dict[str, Any] = {}
    for domain in ("math", "code"):
        tab = main_table(summary, domain)
        for (model, method, variant), row in tab.iterrows():
            a, l = row[("acc", "avg", "ours")], row[("len", "avg", "ours")]
            if pd.notna(a):
                out[f"{domain}/{model}/{method}{'/' + variant if variant else ''}"] = {
                    "avg_acc": float(a), "avg_len": None if pd.isna(l) else float(l)}
    return out


# --------------------------------------------------------------------------------------------------------------
# extended comparison: every method × benchmark (beyond the paper's tables)

COMPARISON_METHODS = ["cot_sample", "cot_greedy", "nothinking", "soft", "soft_no_cold_stop", "avg_embedding",
                      "coconut_tf", "soft_gumbel", "soft_dirichlet", "moi", "swir", "thinkrouter"]
COMPARISON_DATASETS = paper.TABLE1_DATASETS + paper.TABLE2_DATASETS
COMPARISON_METRICS = ["acc", "len_correct", "len_all", "pass@k"]
COMPARISON_HEADS = {"acc": "Accuracy (pass@1, %)", "len_correct": "Len-Correct (tokens)", "len_all": "Len-All (tokens)",
                    "pass@k": "pass@k (%, unbiased estimator, k = n samples per item; runs with n > 1 only)"}


def _g(gen: dict[str, Any], path: str, default: Any = None) -> Any:
    cur: Any = gen
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def method_params_label(row: str, gen: dict[str, Any] | None) -> str:
    """The key parameters of a method row, as printed beside its name ("K 10, τ 0.01, L 32").

    `gen`: the run's resolved generation config (config.json "generation"; settings-column names are accepted too).
    Parameters that are absent are left out."""
    gen = gen or {}

    def part(label: str, *paths: str) -> str | None:
        for p in paths:
            v = _g(gen, p)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                return f"{label} {_num(v)}"
        return None

    tau = _g(gen, "cold_stop.threshold", _g(gen, "cold_stop_tau"))
    if tau is None or (isinstance(tau, float) and math.isnan(tau)):
        cold = None
    elif float(tau) == 0.0:
        cold = "Cold Stop off"
    else:
        cold = ", ".join(p for p in (part("τ", "cold_stop.threshold", "cold_stop_tau"),
                                     part("L", "cold_stop.length", "cold_stop_L")) if p)
        if _g(gen, "entropy.normalise") == "log_vocab":
            cold += " (H/ln V)"
    T = ("think.temperature", "T")
    K = ("think.max_topk", "max_topk")
    minp = ("think.min_p", "min_p")
    spec = {
        "cot_sample": [part("T", *T), part("top-p", "think.top_p", "top_p"), part("top-k", "think.top_k", "top_k")],
        "cot_greedy": [],
        "nothinking": [part("T", *T)],
        "soft": [part("K", *K), part("min-p", *minp), part("τ", "cold_stop.threshold", "cold_stop_tau"),
                 part("L", "cold_stop.length", "cold_stop_L")],
        "soft_no_cold_stop": [part("K", *K), part("min-p", *minp)],
        "avg_embedding": [part("k", "avg_embedding.k")],
        "coconut_tf": [part("h", "coconut.hidden")],
        "soft_gumbel": [part("K", *K), part("τ_g", "noise.gumbel_tau"), part("min-p", *minp), cold],
        "soft_dirichlet": [part("K", *K), part("α", "noise.dirichlet_alpha"), part("min-p", *minp), cold],
        "moi": [part("β", "moi.beta"), part("K_m", "moi.top_k")],
        "swir": [part("α₀", "swir.alpha0"), part("β₀", "swir.beta0"), part("W", "swir.window"),
                 part("C", "swir.max_switches")],
        "thinkrouter": [part("τ_r", "thinkrouter.threshold"), part("conf", "thinkrouter.confidence_source"),
                        part("discrete", "thinkrouter.discrete")],
    }.get(row, [])
    return ", ".join(p for p in spec if p)


def _run_generation(run_dir: Any) -> dict[str, Any] | None:
    if not isinstance(run_dir, str) or not run_dir:
        return None
    cfg = read_run_config(run_dir)
    return cfg.get("generation") if cfg else None


def comparison_frame(summary: pd.DataFrame | None, grader: str | None = "suite") -> pd.DataFrame:
    """Long frame of the extended comparison, one row per run: model, method (row key), params (label), dataset, acc,
    acc_std, len_correct, len_all, n, n_items, k and pass@k (k = n; NaN unless n > 1), run_dir.

    Key parameters come from a `generation` column (dicts) when present, else from each run's config.json, else from
    the settings columns of `runs.summarize_runs`."""
    cols = ["model", "method", "params", "dataset", "acc", "acc_std", "len_correct", "len_all", "n", "n_items", "k",
            "pass@k", "run_dir"]
    if summary is None or len(summary) == 0:
        return pd.DataFrame(columns=cols)
    src = summary.copy().reset_index(drop=True)
    if grader and "grader" in src.columns and "run" in src.columns:  # the same row selection as normalize()
        g = src["grader"].astype(str)
        pref = g.str.endswith(f"-{grader}")
        keep = pref | ~src["run"].isin(src.loc[pref, "run"])
        src = src[keep & src["grader"].notna()] if src["grader"].notna().any() else src
        src = src.reset_index(drop=True)
    norm = normalize(src, grader=None)
    if len(norm) != len(src):
        return pd.DataFrame(columns=cols)
    out = norm[["model", "method", "dataset", "acc", "acc_std", "len_correct", "len_all", "n", "n_items", "run_dir"]]
    out = out.copy()
    gens = []
    for i in range(len(src)):
        gen = src.at[i, "generation"] if "generation" in src.columns else None
        if not isinstance(gen, dict):
            gen = _run_generation(src.at[i, "run_dir"] if "run_dir" in src.columns else None)
        if not isinstance(gen, dict):
            gen = {c: src.at[i, c] for c in SETTING_COLUMNS if c in src.columns}
        gens.append(gen)
    out["params"] = [method_params_label(m, g) for m, g in zip(out.method, gens)]
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
    return COMPARISON_METHODS.index(m) if m in COMPARISON_METHODS else len(COMPARISON_METHODS)


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
    return paper.METHOD_LABELS.get(method, method) + (f" ({params})" if params else "")


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
    paths = [outdir / "comparison.md", outdir / "comparison.csv", outdir / "comparison.tex"]
    paths[0].write_text(comparison_markdown(tab, "Comparison of every method — accuracy, length and pass@k"))
    comparison_flat(tab, formatted=False).to_csv(paths[1], index=False)
    paths[2].write_text(comparison_latex(tab))
    return [str(p) for p in paths]


def synthetic_comparison_summary(model: str = "smollm2-135m", datasets: Sequence[str] = ("aime2024", "gsm8k"),
                                 seed: int = 0, n_items: int = 4) -> pd.DataFrame:
    """A summary frame (runs.summarize_runs shape) with one run of every method per dataset; noise variants n = 4.

    Correct counts per item are drawn, and pass@1 / pass@k are computed from them with softthink.metrics (so tests can
    check the table against the estimator). Item counts are kept in the `_cs` column."""
    from softthink import metrics

    rng = np.random.default_rng(seed)
    gens = {
        "cot_sample": {"method": "cot_sample", "think": {"temperature": 0.6, "top_p": 0.95, "top_k": 30}},
        "cot_greedy": {"method": "cot_greedy"},
        "nothinking": {"method": "nothinking", "think": {"temperature": 0.6}},
        "soft": {"method": "soft", "think": {"max_topk": 10, "min_p": 0.001},
                 "cold_stop": {"threshold": 0.01, "length": 256}},
        "soft_no_cold_stop": {"method": "soft", "think": {"max_topk": 10, "min_p": 0.001},
                              "cold_stop": {"threshold": 0.0, "length": 256}},
        "avg_embedding": {"method": "avg_embedding", "avg_embedding": {"k": 5}},
        "coconut_tf": {"method": "coconut_tf", "coconut": {"hidden": "post_norm"}},
        "soft_gumbel": {"method": "soft", "think": {"max_topk": 5, "min_p": 0.0}, "cold_stop": {"threshold": 0.0},
                        "noise": {"kind": "gumbel", "gumbel_tau": 0.5}},
        "soft_dirichlet": {"method": "soft", "think": {"max_topk": 10, "min_p": 0.0}, "cold_stop": {"threshold": 0.0},
                           "noise": {"kind": "dirichlet", "dirichlet_alpha": 4.0}},
        "moi": {"method": "moi", "moi": {"beta": 1.0, "top_k": 20}},
        "swir": {"method": "swir", "swir": {"alpha0": 0.5, "beta0": 0.7, "window": 512, "max_switches": 2}},
        "thinkrouter": {"method": "thinkrouter", "thinkrouter": {"threshold": 0.5, "confidence_source": "filtered",
                                                                 "discrete": "sample"}},
    }
    rows = []
    for ds in datasets:
        for key, gen in gens.items():
            n = 4 if key in ("cot_sample", "soft_gumbel", "soft_dirichlet") else 1
            cs = rng.integers(0, n + 1, size=n_items).tolist()
            row = {"run": f"synthetic-{key}-{ds}", "run_dir": "", "model": model, "dataset": ds,
                   "method": gen["method"], "cold_stop_tau": _g(gen, "cold_stop.threshold", 0.0),
                   "noise": _g(gen, "noise.kind", "none"), "grader": "v1-suite", "n": n, "n_items": n_items,
                   "pass@1": 100.0 * float(np.mean(np.array(cs) / n)), "pass@1_std": 1.0,
                   "len_correct": float(rng.integers(100, 1000)), "len_all": float(rng.integers(100, 1000)),
                   "generation": gen, "_cs": cs}
            for k in metrics.default_ks(n):
                if k > 1:
                    row[f"pass@{k}"] = 100.0 * metrics.mean_pass_at_k([n] * n_items, cs, k)
            rows.append(row)
    return pd.DataFrame(rows)
