"""Made-up results in the shapes the library reads (tests and docs only; nothing here is a measurement).

* `synthetic_summary`: a summary frame (`softthink.summaries.summarize_runs` columns) near the published numbers;
* `synthetic_comparison_summary`: one run of every method row per dataset, with correct counts per item;
* `synthetic_trace`: a trace in `Trace.to_dict()` shape; `synthetic_sweep`: a sweep frame for the heat maps.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from softthink import paper
from softthink.config import GenerationConfig
from softthink.methods import ROWS, method_of, row_of
from softthink.summaries import settings_of
from softthink.tables import model_display_name


def summary_row(run: str, model: str, dataset: str, gen: dict[str, Any], **metrics: Any) -> dict[str, Any]:
    """One summary-frame row of a run with generation settings `gen` (resolved as a real run's would be)."""
    full = GenerationConfig.from_dict(gen).to_dict()
    return {"run": run, "run_dir": "", "model": model, "dataset": dataset, "row": row_of(full), **settings_of(full),
            "generation": full, "grader": "v1-suite", "grader_mode": "suite", **metrics}


def generation_for_row(row: str) -> dict[str, Any]:
    """Settings that put a run in table row `row` (Soft Thinking with Cold Stop on for the plain `soft` row)."""
    gen: dict[str, Any] = {"method": method_of(row).name}
    for key, value in ROWS[row].when:
        section, name = key.split(".")
        gen.setdefault(section, {})[name] = value
    if row == "soft":
        gen["cold_stop"] = {"threshold": 0.01}
    return gen


def synthetic_summary(models: list[str] | None = None, seed: int = 0, n_items: int = 3,
                      include_ablation: bool = True) -> pd.DataFrame:
    """A summary frame with made-up numbers near the published ones, for every published cell."""
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
            rows.append(summary_row(f"synthetic-{name}-{c.method}-{c.dataset}", model, c.dataset,
                                    generation_for_row(c.method), n_items=n_items, n=c.n_samples, **{"pass@1": acc},
                                    **{"pass@1_std": 5.0}, len_correct=c.len_correct * (1 + rng.normal(0, 0.05)),
                                    len_all=c.len_correct * 1.2))
        if include_ablation:
            for _, c in cells[cells.table == "table3"].iterrows():
                if c.method == "soft":
                    continue
                acc = float(np.clip(c.acc + rng.normal(0, 3), 0, 100))
                rows.append(summary_row(f"synthetic-{name}-{c.method}-{c.dataset}", model, c.dataset,
                                        generation_for_row(c.method), n_items=n_items, n=1, **{"pass@1": acc},
                                        **{"pass@1_std": 5.0}, len_correct=c.len_correct, len_all=c.len_all))
    return pd.DataFrame(rows)


def synthetic_comparison_summary(model: str = "smollm2-135m", datasets: Sequence[str] = ("aime2024", "gsm8k"),
                                 seed: int = 0, n_items: int = 4) -> pd.DataFrame:
    """A summary frame (summaries.summarize_runs shape) with one run of every method per dataset; noise variants n = 4.

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
            row = summary_row(f"synthetic-{key}-{ds}", model, ds, gen, n=n, n_items=n_items,
                              **{"pass@1": 100.0 * float(np.mean(np.array(cs) / n)), "pass@1_std": 1.0},
                              len_correct=float(rng.integers(100, 1000)), len_all=float(rng.integers(100, 1000)),
                              _cs=cs)
            for k in metrics.default_ks(n):
                if k > 1:
                    row[f"pass@{k}"] = 100.0 * metrics.mean_pass_at_k([n] * n_items, cs, k)
            rows.append(row)
    return pd.DataFrame(rows)


def synthetic_trace(steps: int = 40, k: int = 5, seed: int = 0, cold_stop_at: int | None = 30) -> dict[str, list]:
    """A made-up trace in the engine's Trace.to_dict() shape (for tests and docs)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"token": [], "phase": [], "entropy": [], "topk_ids": [], "topk_weights": [],
                            "cold_stop": []}
    for s in range(1, steps + 1):
        answer = cold_stop_at is not None and s > cold_stop_at + 1
        w = np.sort(rng.dirichlet(np.full(k, 0.3 + (s % 7) * 0.3)))[::-1]
        if answer:
            w = np.eye(k)[0]
        ids = rng.choice(1000, size=k, replace=False)
        out["token"].append(int(ids[0]))
        out["phase"].append("answer" if answer else "think")
        p = w[w > 0]
        out["entropy"].append(float(-(p * np.log(p)).sum()))
        out["topk_ids"].append([int(i) for i in ids])
        out["topk_weights"].append([float(x) for x in w])
        out["cold_stop"].append(cold_stop_at is not None and s == cold_stop_at)
    return out


def synthetic_sweep(datasets: Sequence[str] = ("aime2024", "math500"), seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for ds in datasets:
        for K in (5, 10, 15, 20, 30):
            for tau in (0.01, 0.05, 0.1, 0.2):
                for L in (128, 256, 512, 1024):
                    for m in (0.0, 0.001, 0.005):
                        rows.append({"dataset": ds, "think.max_topk": K, "cold_stop.threshold": tau,
                                     "cold_stop.length": L, "think.min_p": m,
                                     "acc": float(np.clip(70 + 5 * np.log(K) - 20 * tau + rng.normal(0, 2), 0, 100)),
                                     "len_all": 10000 - 3 * L + rng.normal(0, 200)})
    return pd.DataFrame(rows)
