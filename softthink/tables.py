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
from typing import Any

import numpy as np
import pandas as pd

from softthink import paper
from softthink.methods import ROWS, row_of
from softthink.summaries import SETTING_KEYS, SETTING_LABELS

NORMAL_COLUMNS = ["model", "method", "variant", "dataset", "acc", "acc_std", "len_correct", "len_all", "n", "n_items",
                  "run_dir", "grader_mode", "aime2024_key"]
# Table 3's rows that are not rows of Tables 1-2 (kept out of them)
ABLATION_ONLY = tuple(r for r in paper.TABLE3_ROWS if r not in paper.TABLE12_ROWS)
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


def row_label(row: str, table3: bool = False) -> str:
    """A row's name in a table (Table 3 calls Soft Thinking "w/ Cold Stop"); unregistered rows keep their key."""
    m = ROWS.get(row)
    return row if m is None else (m.table3_label or m.label) if table3 else m.label


def row_key(method: str, cold_stop_threshold: float | None = None, noise: str | None = None) -> str:
    """Deprecated (use `softthink.methods.row_of(generation)`): the table row of a method with these settings."""
    return row_of({"method": method, "cold_stop": {"threshold": cold_stop_threshold}, "noise": {"kind": noise or "none"}})


# settings that tell two runs of one (model, row, dataset) cell apart
SETTING_COLUMNS = ["preset", "n", *[k for k in SETTING_KEYS if k not in ("method", "preset")], "engine"]


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
                variant[i] = ", ".join(f"{SETTING_LABELS.get(c, c)}={df.at[i, c]}" for c in cols
                                       if str(df.at[i, c]) != ref[c])
    return variant


def select_grader(summary: pd.DataFrame, grader: str | None) -> pd.DataFrame:
    """Rows of grader mode `grader` (grades label ending in "-<mode>") where a run has several; None keeps all."""
    df = summary.copy().reset_index(drop=True)
    if grader and len(df) and df["grader"].notna().any():
        g = df["grader"].astype(str)
        pref = g.str.endswith(f"-{grader}")
        keep = pref | ~df["run"].isin(df.loc[pref, "run"])
        df = df[keep & df["grader"].notna()].reset_index(drop=True)
    return df


def normalize(summary: pd.DataFrame | None, grader: str | None = "suite") -> pd.DataFrame:
    """Map a `summaries.summarize_runs` frame to NORMAL_COLUMNS (accuracy in %); a normal frame passes through.

    `grader`: keep rows of this grader mode when a run has several; None keeps all. An optional `variant` column
    labels runs by hand; otherwise runs sharing a cell are labelled by their differing settings."""
    if summary is not None and list(summary.columns) == NORMAL_COLUMNS:
        return summary  # already normal (figures accept either frame)
    if summary is None or len(summary) == 0 or "pass@1" not in summary.columns:
        return pd.DataFrame(columns=NORMAL_COLUMNS)
    df = select_grader(summary, grader)
    out = pd.DataFrame(index=df.index)
    out["model"] = df["model"].map(model_display_name)
    out["method"] = df["row"]
    out["dataset"] = df["dataset"]
    out["variant"] = df["variant"].fillna("").astype(str) if "variant" in df.columns else _auto_variant(df, out)
    out["acc"] = df["pass@1"].astype(float)
    if "ungraded" in df.columns and "samples" in df.columns:  # nothing gradable (e.g. LCB without tests): no number
        none = (df["ungraded"].fillna(0) >= df["samples"].fillna(0)) & (df["samples"].fillna(0) > 0)
        out.loc[none, "acc"] = np.nan
    out["acc_std"] = df["pass@1_std"].astype(float) if "pass@1_std" in df.columns else np.nan
    for col in ["len_correct", "len_all", "n", "n_items"]:
        out[col] = df[col] if col in df.columns else np.nan
    for col in ["run_dir", "grader_mode", "aime2024_key"]:
        out[col] = df[col].astype(str) if col in df.columns else ""
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
    methods = methods or paper.TABLE12_ROWS
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
    ours = ours[ours.dataset.isin(datasets) & ours.method.isin(paper.TABLE3_ROWS)]
    pub = paper.published_cells()
    pub = pub[pub.table == "table3"].set_index(["method", "dataset"])
    keys = [(paper.TABLE3_MODEL, m, "") for m in paper.TABLE3_ROWS]
    keys += list(zip(ours.model, ours.method, ours.variant))
    rows = _row_order(keys, paper.TABLE3_ROWS)
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
    ablation = tab.attrs.get("domain") == "ablation"
    out["Method"] = [row_label(m, table3=ablation) + (f" [{v}]" if v else "")
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
        paths[0].write_text(to_markdown(tab, title) + _paired_delta(summary, tab))
        flat_frame(tab, formatted=False).to_csv(paths[1], index=False)
        paths[2].write_text(to_latex(tab, title, label))
        written[name] = [str(p) for p in paths]
        longs.append(long_frame(tab, name))
    long = pd.concat(longs, ignore_index=True)
    (outdir / "tables.json").write_text(long.to_json(orient="records", indent=1))
    written["long"] = [str(outdir / "tables.json")]
    return written


def _paired_delta(summary: pd.DataFrame | None, tab: pd.DataFrame) -> str:
    """Tables 1/2: our Soft Thinking − CoT Thinking (sampling) on the same items, with paired intervals (the delta the
    paper's claim rests on; softthink.diagnostics)."""
    if tab.attrs.get("domain") not in ("math", "code"):
        return ""
    from softthink import diagnostics

    paired = diagnostics.paired_frame(summary, baseline="cot_sample", methods=["soft"], datasets=tab.attrs["datasets"])
    return "\n" + diagnostics.paired_markdown(paired, "Ours: Soft Thinking − CoT Thinking, paired on the same items")


def __getattr__(name: str):
    """The comparison table lived here in the previous release (now `softthink.comparison`)."""
    from softthink import comparison

    if hasattr(comparison, name):
        return getattr(comparison, name)
    raise AttributeError(f"module 'softthink.tables' has no attribute {name!r}")


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
