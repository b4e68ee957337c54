"""Figures: Figure 1 (published vs ours), the concept-token view of Figures 3-4, length distributions, accuracy vs
length, and sweep heat maps. Every function returns a matplotlib Figure; `save_figure` writes PNG + PDF to `figures/`.

One colour and one marker per method row across all figures, declared with the method (softthink/methods.py; seaborn
"colorblind" and "dark"); published vs ours is shown by hatching (ours hatched, published plain and lighter), never by
colour.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from softthink import comparison, paper, tables  # noqa: E402
from softthink.methods import METHODS, ROWS, row_of  # noqa: E402

METHOD_ORDER = list(ROWS)  # display order of the registry
METHOD_PALETTE: dict[str, tuple[float, float, float]] = {
    name: sns.color_palette(m.color[0], 10)[m.color[1]] for name, m in ROWS.items()}
METHOD_MARKERS: dict[str, str] = {name: m.marker for name, m in ROWS.items()}
OURS_HATCH = "///"
PUBLISHED_ALPHA = 0.55
FIG_FORMATS = ("png", "pdf")


def method_color(method: str) -> tuple[float, float, float]:
    if method in ROWS:  # read now: a method registered at run time has its colour
        palette, index = ROWS[method].color
        return sns.color_palette(palette, 10)[index]
    # not a registered row: a deterministic extra colour
    return sns.color_palette("dark", 10)[sum(map(ord, method)) % 10]


def method_marker(method: str) -> str:
    return ROWS[method].marker if method in ROWS else "*"


def method_label(method: str) -> str:
    return ROWS[method].label if method in ROWS else method


def palette_for(methods: Iterable[str]) -> dict[str, Any]:
    return {m: method_color(m) for m in methods}


def save_figure(fig: plt.Figure, name: str, outdir: str | Path = "figures", formats: Sequence[str] = FIG_FORMATS,
                dpi: int = 150) -> list[str]:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = outdir / f"{name}.{fmt}"
        fig.savefig(p, dpi=dpi, bbox_inches="tight", metadata={"CreationDate": None} if fmt == "pdf" else None)
        paths.append(str(p))
    return paths


def _empty(ax, text="no results yet"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


# --------------------------------------------------------------------------------------------------------------
# Figure 1


def figure1_frame(summary: pd.DataFrame | None) -> pd.DataFrame:
    """Long frame: model, domain, method, source (published|ours), acc, length (Len-Correct), length_all (Len-All),
    complete (ours covers every dataset of the domain). Averages are unweighted means over the domain's datasets."""
    rows = []
    pub = paper.published_figure1()
    for _, r in pub.iterrows():
        rows.append(dict(model=r.model, domain=r.domain, method=r.method, source="published", acc=r.acc,
                         length=r.length, length_all=np.nan, complete=True))
    ours = tables.normalize(summary)
    for domain in ("math", "code"):
        tab = tables.main_table(summary, domain)
        comp = tab.attrs.get("complete") or []
        for i, ((model, method, variant), row) in enumerate(tab.iterrows()):
            if method not in paper.FIGURE1_ROWS or variant:
                continue
            a, l = row[("acc", "avg", "ours")], row[("len", "avg", "ours")]
            if pd.notna(a):
                sub = ours[(ours.model == model) & (ours.method == method) & (ours.variant == "")
                           & ours.dataset.isin(paper.DOMAINS[domain])]
                rows.append(dict(model=model, domain=domain, method=method, source="ours", acc=float(a),
                                 length=float(l) if pd.notna(l) else np.nan,
                                 length_all=float(sub.len_all.mean()) if len(sub) else np.nan,
                                 complete=bool(comp[i])))
    return pd.DataFrame(rows)


def _bars(ax, sub: pd.DataFrame, models: list[str], methods: Sequence[str], quantity: str, sources: Sequence[str]):
    width = 0.8 / (len(sources) * len(methods))
    x = np.arange(len(models))
    for j, method in enumerate(methods):
        for s, source in enumerate(sources):
            k = len(sources) * j + s
            pos = x - 0.4 + width * (k + 0.5)
            vals = []
            for m in models:
                v = sub[(sub.model == m) & (sub.method == method) & (sub.source == source)][quantity]
                vals.append(float(v.iloc[0]) if len(v) and pd.notna(v.iloc[0]) else np.nan)
            bars = ax.bar(pos, np.nan_to_num(vals, nan=0.0), width * 0.95, color=method_color(method),
                          alpha=PUBLISHED_ALPHA if source == "published" else 1.0,
                          hatch=OURS_HATCH if source == "ours" else None, edgecolor="black", linewidth=0.5)
            for b, v in zip(bars, vals):
                ax.annotate("n/a" if np.isnan(v) else f"{v:.1f}" if quantity == "acc" else f"{v:,.0f}",
                            (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                            fontsize=6.5, rotation=90, xytext=(0, 2), textcoords="offset points",
                            color="0.5" if np.isnan(v) else "black")
    ax.set_xticks(x)
    ax.set_xticklabels([textwrap.fill(paper.MODEL_SHORT.get(m, m), 14) for m in models], fontsize=8)
    ax.set_xlabel("model")
    ax.grid(axis="y", alpha=0.3)


def _reduction_notes(ax, sub: pd.DataFrame, models: list[str], quantity: str, sources: Sequence[str]):
    for i, m in enumerate(models):
        notes = []
        for source in sources:
            base, soft = paper.FIGURE1_ROWS
            c = sub[(sub.model == m) & (sub.method == base) & (sub.source == source)][quantity]
            so = sub[(sub.model == m) & (sub.method == soft) & (sub.source == source)][quantity]
            if len(c) and len(so) and pd.notna(c.iloc[0]) and pd.notna(so.iloc[0]) and c.iloc[0] > 0:
                notes.append(f"{'pub' if source == 'published' else 'ours'} "
                             f"{100 * (so.iloc[0] - c.iloc[0]) / c.iloc[0]:+.1f}%")
        if notes:
            ax.text(i, ax.get_ylim()[1] * 0.97, "\n".join(notes), ha="center", va="top", fontsize=7)


def figure1(summary: pd.DataFrame | None, methods: Sequence[str] = tuple(paper.FIGURE1_ROWS)) -> plt.Figure:
    """Paper Figure 1: average accuracy and length per model, math and code, CoT vs Soft.

    Top row: the paper's three models, published bars (plain) beside ours (hatched) where we have runs. Bottom row
    (only when we ran other models, e.g. the demo's smollm2-135m): those models on their own scale, with Len-All
    beside Len-Correct because small models solve few items."""
    df = figure1_frame(summary)
    extra = sorted(set(df.model) - set(paper.MODELS))
    nrows = 2 if extra else 1
    fig, axes = plt.subplots(nrows, 4, figsize=(20, 4.6 * nrows), squeeze=False, constrained_layout=True)
    panels = [("math", "acc"), ("math", "length"), ("code", "acc"), ("code", "length")]
    titles = {"acc": "Average accuracy ({}) ↑", "length": "Average generation length ({}) ↓"}
    for ax, (domain, quantity) in zip(axes[0], panels):
        sub = df[df.domain == domain]
        _bars(ax, sub, list(paper.MODELS), methods, quantity, ("published", "ours"))
        ax.set_title(titles[quantity].format("Math" if domain == "math" else "Coding"))
        ax.set_ylabel("pass@1 accuracy (%)" if quantity == "acc" else "Len-Correct (tokens)")
        if quantity == "acc":
            ax.set_ylim(0, 109)
        else:
            top = np.nanmax(sub[sub.model.isin(paper.MODELS)]["length"])
            ax.set_ylim(0, (top if np.isfinite(top) else 1.0) * 1.25)
            _reduction_notes(ax, sub, list(paper.MODELS), "length", ("published", "ours"))
    if extra:
        lpanels = [("math", "acc"), ("math", "length_all"), ("code", "acc"), ("code", "length_all")]
        for ax, (domain, quantity) in zip(axes[1], lpanels):
            sub = df[(df.domain == domain) & (df.source == "ours") & df.model.isin(extra)]
            _bars(ax, sub, extra, methods, quantity, ("ours",))
            ax.set_title(f"Our other models — {'accuracy' if quantity == 'acc' else 'Len-All'} "
                         f"({'Math' if domain == 'math' else 'Coding'})")
            ax.set_ylabel("pass@1 accuracy (%)" if quantity == "acc" else "Len-All (tokens, all samples)")
            if quantity == "acc":
                ax.set_ylim(0, 109)
            else:
                top = np.nanmax(sub[quantity]) if len(sub) and sub[quantity].notna().any() else 1.0
                ax.set_ylim(0, top * 1.3)
                _reduction_notes(ax, sub, extra, quantity, ("ours",))
    handles = [Patch(facecolor=method_color(m), edgecolor="black", label=method_label(m)) for m in methods]
    handles += [Patch(facecolor="white", edgecolor="black", alpha=PUBLISHED_ALPHA, label="published (paper)"),
                Patch(facecolor="white", edgecolor="black", hatch=OURS_HATCH, label="ours (this suite)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=9)
    fig.suptitle("Figure 1 — Soft Thinking vs CoT Thinking: published vs reproduced (mean over the benchmarks of "
                 "each domain; n/a = no run or nothing correct)")
    return fig


# --------------------------------------------------------------------------------------------------------------
# concept tokens (Figures 3-4)


def trace_frame(trace: Any) -> pd.DataFrame:
    """Normalise a Trace (object, dict of lists, or list of per-step dicts) to one row per step."""
    if trace is None:
        return pd.DataFrame(columns=["step", "token", "phase", "entropy", "topk_ids", "topk_weights", "cold_stop"])
    if hasattr(trace, "to_dict"):
        trace = trace.to_dict()
    if isinstance(trace, Mapping):
        n = max((len(v) for v in trace.values() if isinstance(v, (list, tuple))), default=0)
        df = pd.DataFrame({k: list(v) for k, v in trace.items() if isinstance(v, (list, tuple)) and len(v) == n})
    else:
        df = pd.DataFrame(list(trace))
    for col, default in [("phase", "think"), ("cold_stop", False), ("entropy", np.nan), ("token", -1)]:
        if col not in df.columns:
            df[col] = default
    df.insert(0, "step", np.arange(1, len(df) + 1))
    return df


def _decoder(tokenizer_or_decode: Any) -> Callable[[int], str]:
    if tokenizer_or_decode is None:
        return lambda i: str(i)
    if callable(tokenizer_or_decode) and not hasattr(tokenizer_or_decode, "decode"):
        return tokenizer_or_decode
    tok = tokenizer_or_decode
    return lambda i: tok.decode([int(i)])


def _show(s: str, width: int = 8) -> str:
    s = s.replace("\n", "↵").replace("\t", "⇥")
    s = s.replace(" ", "␣") if s.strip() == "" else s.strip() if s.startswith(" ") and s.strip() else s
    return s if len(s) <= width else s[: width - 1] + "…"


def concept_tokens(trace: Any, decode: Any = None, top: int = 5, steps_per_row: int = 20, max_steps: int = 100,
                   title: str = "Concept tokens per step") -> plt.Figure:
    """Figures 3-4 view: per step the top-k candidate tokens and their weights (green = weight, colour bar 0-1),
    the argmax outlined in black, Cold Stop marked in red, ANSWER-phase steps greyed; entropy strip above each row."""
    df = trace_frame(trace).head(max_steps)
    dec = _decoder(decode)
    n = len(df)
    nrows = max(1, math.ceil(n / steps_per_row))
    fig = plt.figure(figsize=(steps_per_row * 0.78 + 1.5, nrows * (top * 0.42 + 1.1) + 0.8))
    gs = fig.add_gridspec(2 * nrows, 2, height_ratios=[1, top * 0.42 / 0.9] * nrows, width_ratios=[40, 1],
                          hspace=0.35, wspace=0.03, top=1 - 0.7 / (nrows * (top * 0.42 + 1.1) + 0.8), bottom=0.06)
    cmap = plt.get_cmap("Greens")
    if n == 0:
        ax = fig.add_subplot(gs[:, 0])
        _empty(ax, "empty trace")
        return fig
    ent_max = float(np.nanmax(df["entropy"])) if df["entropy"].notna().any() else 1.0
    for r in range(nrows):
        chunk = df.iloc[r * steps_per_row:(r + 1) * steps_per_row]
        ax_e = fig.add_subplot(gs[2 * r, 0])
        ax = fig.add_subplot(gs[2 * r + 1, 0], sharex=ax_e)
        ax_e.plot(chunk["step"], chunk["entropy"], marker="o", ms=3, color="0.25")
        ax_e.set_ylim(0, ent_max * 1.15 + 1e-6)
        ax_e.set_ylabel("entropy\n(nats)", fontsize=7)
        ax_e.tick_params(labelsize=6, labelbottom=False)
        ax_e.grid(alpha=0.3)
        for _, st in chunk.iterrows():
            s = int(st["step"])
            ids = list(st.get("topk_ids") or [])[:top]
            ws = [float(w) for w in list(st.get("topk_weights") or [])[:top]]
            order = np.argsort(ws)[::-1] if ws else []
            amax = int(order[0]) if len(order) else -1
            answer = st.get("phase") == "answer"
            for rank, idx in enumerate(order):
                w = ws[idx]
                if w <= 0 and rank > 0:
                    continue
                ax.add_patch(Rectangle((s - 0.5, rank - 0.5), 1, 1, facecolor=cmap(w) if not answer else
                                       (0.9, 0.9, 0.9), edgecolor="white", lw=0.5))
                ax.text(s, rank - 0.08, _show(dec(ids[idx])), ha="center", va="center", fontsize=6,
                        color="white" if w > 0.6 and not answer else "black")
                ax.text(s, rank + 0.28, f"{w:.2f}", ha="center", va="center", fontsize=4.5,
                        color="0.9" if w > 0.6 and not answer else "0.2")
                if idx == amax:
                    ax.add_patch(Rectangle((s - 0.48, rank - 0.48), 0.96, 0.96, fill=False, edgecolor="black",
                                           lw=1.2))
            if bool(st.get("cold_stop")):
                ax.axvline(s + 0.5, color="red", lw=2)
                ax.text(s + 0.5, -0.9, "Cold Stop", color="red", fontsize=7, ha="center", va="bottom")
                ax_e.axvline(s + 0.5, color="red", lw=2)
        ax.set_xlim(r * steps_per_row + 0.5, (r + 1) * steps_per_row + 0.5)
        ax.set_xticks(range(r * steps_per_row + 1, (r + 1) * steps_per_row + 1))
        ax.set_ylim(top - 0.5, -0.5)
        ax.set_yticks(range(top))
        ax.set_yticklabels([f"#{i + 1}" for i in range(top)], fontsize=6)
        ax.set_ylabel("rank", fontsize=7)
        ax.tick_params(axis="x", labelsize=6)
        if r == nrows - 1:
            ax.set_xlabel("generation step (THINK phase green; ANSWER phase grey; black box = argmax)")
    cax = fig.add_subplot(gs[:, 1])
    fig.colorbar(plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap=cmap), cax=cax, label="concept weight")
    fig.suptitle(title, y=1 - 0.25 / (nrows * (top * 0.42 + 1.1) + 0.8))
    return fig


# --------------------------------------------------------------------------------------------------------------
# lengths and accuracy


def length_distributions(samples: pd.DataFrame) -> plt.Figure:
    """Per dataset: distribution of generated tokens per sample for each method (box + points), colour = method.

    `samples`: columns model, method, dataset, num_tokens, optional correct."""
    datasets = list(dict.fromkeys(samples["dataset"])) if len(samples) else []
    ncols = min(4, max(1, len(datasets)))
    nrows = max(1, math.ceil(len(datasets) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows), squeeze=False,
                             constrained_layout=True)
    methods = [m for m in ROWS if m in set(samples.get("method", []))] + sorted(
        set(samples.get("method", [])) - set(ROWS))
    for ax, ds in zip(axes.flat, datasets):
        sub = samples[samples.dataset == ds]
        order = [m for m in methods if m in set(sub.method)]
        sns.boxplot(data=sub, x="method", y="num_tokens", hue="method", order=order, hue_order=order,
                    palette=palette_for(order), ax=ax, showfliers=False, legend=False, width=0.6)
        state = np.random.get_state()  # seaborn jitters with numpy's global generator: a fixed seed, the same figure
        np.random.seed(0)
        sns.stripplot(data=sub, x="method", y="num_tokens", order=order, color="black", size=3, alpha=0.6, ax=ax,
                      jitter=0.2)
        np.random.set_state(state)
        ax.set_title(paper.DATASET_LABELS.get(ds, ds))
        ax.set_xlabel("method")
        ax.set_ylabel("generated tokens per sample")
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([textwrap.fill(method_label(m), 12) for m in order], fontsize=7)
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    if not datasets:
        _empty(axes.flat[0])
    fig.suptitle("Generation length distribution per method (all samples; thinking + answer tokens)")
    return fig


def acc_vs_length(summary: pd.DataFrame | None, length: str = "len_all") -> plt.Figure:
    """Accuracy vs mean generation length per run, colour = method, marker = dataset, one panel per model."""
    df = tables.normalize(summary)
    models = list(dict.fromkeys(df.model)) or ["(none)"]
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.3), squeeze=False, constrained_layout=True)
    methods = [m for m in ROWS if m in set(df.method)] + sorted(set(df.method) - set(ROWS))
    for ax, model in zip(axes.flat, models):
        sub = df[df.model == model]
        if sub.empty:
            _empty(ax)
            continue
        sns.scatterplot(data=sub, x=length, y="acc", hue="method", hue_order=methods, style="dataset",
                        palette=palette_for(methods), s=70, ax=ax, legend=True)
        ax.set_title(paper.MODEL_SHORT.get(model, model))
        ax.set_xlabel(("Len-All" if length == "len_all" else "Len-Correct") + " (tokens, mean per item)")
        ax.set_ylabel("pass@1 accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        leg = ax.get_legend()
        if leg is not None:
            for t in leg.get_texts():
                t.set_text(method_label(t.get_text()) if t.get_text() in ROWS else
                           paper.DATASET_LABELS.get(t.get_text(), t.get_text()))
            leg.set_title(None)
            for t in leg.get_texts():
                t.set_fontsize(7)
    fig.suptitle("Accuracy vs generation length per method (one point per run)")
    return fig


# --------------------------------------------------------------------------------------------------------------
# every method: accuracy vs length, Pareto view


def pareto_front(length: Sequence[float], acc: Sequence[float]) -> list[bool]:
    """Membership of the Pareto front for (shorter is better, more accurate is better).

    A point is on the front unless another point is at least as short and at least as accurate, and strictly better
    in one of the two. Identical points do not dominate each other; points with a missing value are never on it."""
    L = np.asarray(length, dtype=float)
    A = np.asarray(acc, dtype=float)
    ok = ~(np.isnan(L) | np.isnan(A))
    out = []
    for i in range(len(L)):
        if not ok[i]:
            out.append(False)
            continue
        dom = ok & (L <= L[i]) & (A >= A[i]) & ((L < L[i]) | (A > A[i]))
        out.append(not bool(dom.any()))
    return out


def pareto_frame(summary: pd.DataFrame | None, length: str = "len_all", grader: str | None = "suite") -> pd.DataFrame:
    """`comparison.comparison_frame` with a `pareto` column: on the front of its (model, dataset) for (`length`, acc)."""
    df = comparison.comparison_frame(summary, grader=grader)
    df["pareto"] = False
    for _, idx in df.groupby(["model", "dataset"]).groups.items():
        df.loc[idx, "pareto"] = pareto_front(df.loc[idx, length].to_numpy(), df.loc[idx, "acc"].to_numpy())
    return df


def pareto_view(summary: pd.DataFrame | None, length: str = "len_all", grader: str | None = "suite",
                ncols: int = 4) -> plt.Figure:
    """Accuracy vs generation length, one point per (method, benchmark) run, one panel per benchmark; colour and
    marker = method (the suite palette), the Pareto front of each panel (shorter and more accurate) ringed in black
    and joined by a dashed staircase. Several models: one front per model (line style per model)."""
    df = pareto_frame(summary, length=length, grader=grader)
    present = list(dict.fromkeys(df.dataset)) if len(df) else []
    datasets = [d for d in tables.COMPARISON_DATASETS if d in present] + sorted(set(present) - set(
        tables.COMPARISON_DATASETS))
    ncols = max(1, min(ncols, len(datasets) or 1))
    nrows = max(1, math.ceil(len(datasets) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 3.5 * nrows + 0.9), squeeze=False,
                             constrained_layout=True)
    methods = [m for m in ROWS if m in set(df.method)] + sorted(set(df.method) - set(ROWS))
    models = list(dict.fromkeys(df.model))
    styles = ["--", ":", "-.", (0, (5, 1))]
    for ax, ds in zip(axes.flat, datasets):
        sub = df[df.dataset == ds]
        for mi, model in enumerate(models):
            ms = sub[(sub.model == model) & sub[length].notna() & sub.acc.notna()]
            front = ms[ms.pareto].sort_values([length, "acc"])
            if len(front):
                x = front[length].tolist()
                y = front["acc"].tolist()
                ax.step(x, y, where="post", color="black", lw=1.0, ls=styles[mi % len(styles)], zorder=1, alpha=0.8)
            stack: dict[tuple[float, float], int] = {}  # identical points: drawn concentric, later ones smaller
            for _, r in ms.iterrows():
                at = (round(float(r[length]), 6), round(float(r["acc"]), 6))
                j = stack[at] = stack.get(at, -1) + 1
                size = (110 if r.pareto else 70) * max(0.25, 1.0 - 0.3 * j)
                ax.scatter(r[length], r["acc"], color=method_color(r.method), marker=method_marker(r.method),
                           s=size, edgecolors="black" if r.pareto else "white", linewidths=1.6 if r.pareto else 0.5,
                           zorder=(3 if r.pareto else 2) + 0.01 * j, alpha=0.95)
        if not (sub[length].notna() & sub.acc.notna()).any():
            _empty(ax, "no graded run\n(e.g. LiveCodeBench without test cases)")
        ax.set_title(paper.DATASET_LABELS.get(ds, ds))
        ax.set_xlabel(("Len-All" if length == "len_all" else "Len-Correct") + " (tokens)")
        ax.set_ylabel("pass@1 (%)")
        ax.set_ylim(-5, 105)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    if not datasets:
        _empty(axes.flat[0])
    handles = [plt.Line2D([], [], ls="", marker=method_marker(m), color=method_color(m), markersize=8,
                          label=method_label(m)) for m in methods]
    handles.append(plt.Line2D([], [], ls="", marker="o", markerfacecolor="white", markeredgecolor="black",
                              markeredgewidth=1.6, markersize=8, label="on the Pareto front"))
    handles += [plt.Line2D([], [], color="black", ls=styles[i % len(styles)], lw=1.0,
                           label=f"Pareto front{' — ' + paper.MODEL_SHORT.get(m, m) if len(models) > 1 else ''}")
                for i, m in enumerate(models)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(5, len(handles)), fontsize=8, frameon=False)
    title = "Accuracy vs generation length per method and benchmark (Pareto view: shorter and more accurate is better)"
    if len(models) == 1:
        title += f" — {paper.MODEL_SHORT.get(models[0], models[0])}"
    fig.suptitle(title, fontsize=11)
    return fig


# --------------------------------------------------------------------------------------------------------------
# sweeps

SWEEP_KEYS = {"max_topk": "think.max_topk", "threshold": "cold_stop.threshold", "length": "cold_stop.length",
              "min_p": "think.min_p"}
SWEEP_LABELS = {"think.max_topk": "max_topk K (concept width)", "cold_stop.threshold": "Cold Stop entropy threshold τ (nats)",
                "cold_stop.length": "Cold Stop length L (steps)", "think.min_p": "min-p"}


def _swept(sub: pd.DataFrame, key: str) -> bool:
    return key in sub.columns and sub[key].nunique(dropna=True) > 1


def sweep_heatmaps(sweep: pd.DataFrame, value: str = "acc") -> plt.Figure:
    """Per dataset: a heat map of accuracy over max_topk × τ, and accuracy vs L and vs min-p (rows only for keys
    that were swept somewhere). Datasets where nothing was swept are left out.

    `sweep`: one row per run (`runs.summarize_runs` columns): dataset, pass@1 (%) or acc, and the swept keys
    `think.max_topk`, `cold_stop.threshold`, `cold_stop.length`, `think.min_p`."""
    if value not in sweep.columns and "pass@1" in sweep.columns:
        sweep = sweep.assign(**{value: sweep["pass@1"]})
    k, t, L, mp = (SWEEP_KEYS[x] for x in ("max_topk", "threshold", "length", "min_p"))
    datasets = [ds for ds in dict.fromkeys(sweep["dataset"])
                if any(_swept(sweep[sweep.dataset == ds], key) for key in (k, t, L, mp))] if len(sweep) else []
    line_keys = [key for key in (L, mp) if any(_swept(sweep[sweep.dataset == ds], key) for ds in datasets)]
    nd, nr = max(1, len(datasets)), 1 + len(line_keys)
    fig, axes = plt.subplots(nr, nd, figsize=(4.8 * nd, 3.9 * nr), squeeze=False, constrained_layout=True)
    soft = METHOD_PALETTE["soft"]
    vmax = max(1.0, float(np.nanmax(sweep[value]))) if len(sweep) else 1.0
    for j, ds in enumerate(datasets):
        sub = sweep[sweep.dataset == ds]
        ax = axes[0, j]
        if _swept(sub, k) or _swept(sub, t):
            piv = sub.pivot_table(index=t, columns=k, values=value, aggfunc="mean").sort_index(ascending=False)
            sns.heatmap(piv, annot=True, fmt=".1f", cmap="viridis", ax=ax, vmin=0, vmax=vmax,
                        cbar_kws={"label": "pass@1 accuracy (%)"})
            ax.set_xlabel(SWEEP_LABELS[k])
            ax.set_ylabel(SWEEP_LABELS[t])
        else:
            _empty(ax, "K × τ not swept")
        ax.set_title(f"{paper.DATASET_LABELS.get(ds, ds)}: pass@1 over K × τ\n(mean over the other keys)")
        for row, key in enumerate(line_keys, start=1):
            ax = axes[row, j]
            if _swept(sub, key):
                g = sub.groupby(key)[value].agg(["mean", "min", "max"]).reset_index()
                ax.plot(g[key], g["mean"], marker="o", color=soft, label=f"{method_label('soft')} (mean over other keys)")
                ax.fill_between(g[key], g["min"], g["max"], color=soft, alpha=0.2, label="min–max over other keys")
                if key == L:
                    ax.set_xscale("log", base=2)
                ax.set_xlabel(SWEEP_LABELS[key])
                ax.set_ylabel("pass@1 accuracy (%)")
                ax.set_ylim(-2, max(5.0, float(g["max"].max()) * 1.15))
                ax.grid(alpha=0.3)
                ax.legend(fontsize=7)
            else:
                _empty(ax, f"{SWEEP_LABELS[key]}: not swept")
            ax.set_title(f"{paper.DATASET_LABELS.get(ds, ds)}: pass@1 vs {SWEEP_LABELS[key].split(' (')[0]}")
    if not datasets:
        _empty(axes[0, 0], "no sweep runs")
        axes[0, 0].set_axis_off()
    fig.suptitle("Soft Thinking hyperparameter sweep")
    return fig


# --------------------------------------------------------------------------------------------------------------
# reading cached runs


def samples_frame(run_dirs: Iterable[str]) -> pd.DataFrame:
    """One row per generated sample of the given runs: run, model, dataset, method, num_tokens, finish_reason,
    correct (from the run's first grades file, when graded)."""
    from softthink.store import RunDir, load_grades

    rows = []
    for d in run_dirs:
        try:
            rd = RunDir.open(d)
        except (FileNotFoundError, ValueError, KeyError):
            continue
        method = row_of(rd.key.get("generation", {}))
        grades = next(iter(load_grades(rd).values()), [])
        ok = {(g["item_index"], g["sample_index"]): g.get("correct") for g in grades}
        for s in rd.samples():
            rows.append({"run": rd.path.name, "model": tables.model_display_name(rd.spec.model if rd.spec else "?"),
                         "dataset": rd.spec.dataset if rd.spec else "?", "method": method,
                         "num_tokens": s.get("num_tokens"), "finish_reason": s.get("finish_reason"),
                         "correct": ok.get((s.get("item_index"), s.get("sample_index")))})
    return pd.DataFrame(rows, columns=["run", "model", "dataset", "method", "num_tokens", "finish_reason", "correct"])


def find_trace(run_dirs: Sequence[str], prefer: str | None = None) -> tuple[Any, Any, str | None]:
    """(trace dict, decode callable, label) of the first stored trace: of `prefer` if given, else of the first
    soft-thinking run that has traces (GPQA runs are skipped: their tokens are GPQA text). Decoding uses the run's
    tokenizer when it loads without a network; otherwise token ids are shown."""
    import gzip
    import json

    from softthink.data import DATASETS
    from softthink.runkey import load_tokenizer
    from softthink.store import RunDir

    cands = [prefer] if prefer else list(run_dirs)
    for d in cands:
        p = Path(d)
        try:
            rd = RunDir.open(p)
        except FileNotFoundError:
            continue
        tdir = rd.traces_dir
        if not tdir.is_dir():
            continue
        if rd.spec is None or DATASETS[rd.spec.dataset].kind == "gpqa":
            continue
        method = METHODS.get(rd.key.get("generation", {}).get("method"))
        # a concept-token view needs concept tokens: soft inputs fed as top-K rows (COCONUT-TF feeds hidden states)
        if not prefer and not (method is not None and method.soft and method.name != "coconut_tf"):
            continue
        files = sorted(tdir.glob("*.json.gz"))
        if not files:
            continue
        trace = json.loads(gzip.decompress(files[0].read_bytes()))
        decode = None
        try:
            decode = load_tokenizer(rd.spec.model)
        except Exception:  # noqa: BLE001 - ids instead of strings
            decode = None
        return trace, decode, f"{p.name}/{files[0].name.split('.')[0]}"
    return None, None, None
