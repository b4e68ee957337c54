"""Published numbers of Soft Thinking (arXiv 2505.15778 v1) as data, and the consistency oracles of docs/design/paper.md §6.

Everything here is *published*, never reproduced. Source: docs/design/paper.md §1-§6 (Tables 1-3, Figure 1).
Accuracy = pass@1 in %, lengths = Len-Correct in tokens (Table 3 also has Len-All).

The tables code reads `published_cells()` / `published_averages()` / `published_table3()`; the tests check that the
printed averages, relative changes, Figure 1 and Table 3 recompute from the cells (`check_consistency()`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from softthink.data import RegistryField
from softthink.methods import ROWS

PAPER = {"arxiv": "2505.15778", "version": "v1", "title": "Soft Thinking: Unlocking the Reasoning Potential of LLMs "
         "in Continuous Concept Space", "tables_checked": "v1 (camera-ready not checked)"}

# --- vocabularies -----------------------------------------------------------------------------------------------
MODELS = ["QwQ-32B", "DeepSeek-R1-Distill-Qwen-32B", "DeepSeek-R1-Distill-Llama-70B"]
MODEL_IDS = {  # display name -> Hugging Face id
    "QwQ-32B": "Qwen/QwQ-32B",
    "DeepSeek-R1-Distill-Qwen-32B": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    "DeepSeek-R1-Distill-Llama-70B": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
}
MODEL_SHORT = {"QwQ-32B": "QwQ-32B", "DeepSeek-R1-Distill-Qwen-32B": "DS-R1-Qwen-32B",
               "DeepSeek-R1-Distill-Llama-70B": "DS-R1-Llama-70B"}

# the rows of the published tables (row keys of softthink/methods.py; `soft_no_cold_stop` = soft with τ = 0)
TABLE12_ROWS = ["cot_sample", "cot_greedy", "soft"]
TABLE3_ROWS = ["coconut_tf", "avg_embedding", "soft_no_cold_stop", "soft"]
FIGURE1_ROWS = ["cot_sample", "soft"]  # Figure 1: the baseline, then Soft Thinking
METHODS_MAIN, METHODS_ABLATION = TABLE12_ROWS, TABLE3_ROWS  # the previous release's names
METHOD_LABELS = {name: m.label for name, m in ROWS.items()}
TABLE3_LABELS = {**METHOD_LABELS, **{name: m.table3_label for name, m in ROWS.items() if m.table3_label}}

# the published tables' columns, in the paper's order (not the registry's kinds: Table 1 "math" includes GPQA)
TABLE1_DATASETS = ["math500", "aime2024", "gsm8k", "gpqa_diamond"]
TABLE2_DATASETS = ["humaneval", "mbpp", "livecodebench"]
ABLATION_DATASETS = ["aime2024", "livecodebench"]  # Table 3
# labels and sizes come from the benchmark registry (softthink.data.DATASETS), read at each lookup
DATASET_LABELS = RegistryField("label")
DATASET_SIZES = RegistryField("count")
DOMAINS = {"math": TABLE1_DATASETS, "code": TABLE2_DATASETS}
N_SAMPLES = {"cot_sample": 16, "cot_greedy": 1, "soft": 1, "soft_no_cold_stop": 1, "coconut_tf": 1,
             "avg_embedding": 1}
MAX_NEW_TOKENS = 32768

# --- Table 1 (math) and Table 2 (code), verbatim -----------------------------------------------------------------
# (model, method) -> (per-dataset accuracies in dataset order, avg acc, per-dataset lengths, avg len,
#                     printed Δacc vs CoT (points), printed Δlen vs CoT (%))
_Q, _DQ, _DL = MODELS
TABLE1 = {
    (_Q, "cot_sample"): ((97.66, 76.88, 96.67, 64.17), 83.84, (4156, 12080, 1556, 8095), 6472, None, None),
    (_Q, "cot_greedy"): ((97.00, 80.00, 96.57, 65.15), 84.68, (3827, 11086, 1536, 7417), 5967, +0.84, -7.8),
    (_Q, "soft"): ((98.00, 83.33, 96.81, 67.17), 86.32, (3644, 10627, 1391, 7213), 5719, +2.48, -11.6),
    (_DQ, "cot_sample"): ((94.50, 72.08, 95.61, 63.10), 81.32, (3543, 9347, 875, 6218), 4995, None, None),
    (_DQ, "cot_greedy"): ((93.00, 63.33, 95.30, 59.09), 77.68, (3651, 8050, 1048, 8395), 5286, -3.64, +5.8),
    (_DQ, "soft"): ((95.00, 76.66, 95.83, 64.64), 83.03, (3373, 6620, 785, 4722), 3875, +1.71, -22.4),
    (_DL, "cot_sample"): ((94.70, 70.40, 94.82, 65.34), 81.31, (3141, 8684, 620, 5500), 4486, None, None),
    (_DL, "cot_greedy"): ((94.61, 73.33, 93.60, 66.16), 81.92, (2877, 9457, 606, 4443), 4345, +0.61, -3.1),
    (_DL, "soft"): ((94.80, 73.33, 94.90, 66.66), 82.42, (3021, 6644, 597, 4470), 3683, +1.11, -17.9),
}
TABLE2 = {
    (_Q, "cot_sample"): ((97.63, 97.49, 62.00), 85.70, (2557, 2154, 9986), 4899, None, None),
    (_Q, "cot_greedy"): ((95.73, 96.50, 57.35), 83.19, (2396, 2069, 7034), 3833, -2.51, -21.8),
    (_Q, "soft"): ((98.17, 97.66, 62.72), 86.18, (2638, 2157, 7535), 4110, +0.48, -16.1),
    (_DQ, "cot_sample"): ((97.25, 95.13, 57.33), 83.23, (3095, 2761, 8376), 4744, None, None),
    (_DQ, "cot_greedy"): ((87.19, 87.54, 43.36), 72.70, (2294, 1703, 4702), 2900, -10.53, -38.9),
    (_DQ, "soft"): ((97.56, 95.33, 59.50), 84.13, (2713, 2534, 6255), 3834, +0.90, -19.1),
    (_DL, "cot_sample"): ((97.71, 94.77, 56.94), 83.14, (2711, 2386, 8319), 4472, None, None),
    (_DL, "cot_greedy"): ((92.07, 91.82, 48.02), 77.30, (2192, 1979, 5438), 3203, -5.84, -28.3),
    (_DL, "soft"): ((98.17, 94.94, 58.42), 83.84, (2498, 2214, 6512), 3741, +0.70, -16.3),
}
# Bold cells as printed (accuracy / length), for the paper-shaped Markdown.
# Table 3 (QwQ-32B): method -> {dataset: (acc, len_all, len_correct)}; None = "–" in the paper.
TABLE3 = {
    "coconut_tf": {"aime2024": (0.0, 32768, None), "livecodebench": (0.0, 32768, None)},
    "avg_embedding": {"aime2024": (6.66, 30802, 6556), "livecodebench": (7.49, 30474, 2141)},
    "soft_no_cold_stop": {"aime2024": (73.33, 12991, 9457), "livecodebench": (56.98, 13705, 6877)},
    "soft": {"aime2024": (83.33, 11445, 10627), "livecodebench": (62.72, 12537, 7535)},
}
TABLE3_MODEL = _Q

# Figure 1 (page 1): model -> domain -> (acc CoT, acc Soft, len CoT, len Soft, printed reduction %)
FIGURE1 = {
    _Q: {"math": (83.84, 86.32, 6472, 5719, 11.6), "code": (85.70, 86.18, 4899, 4110, 16.1)},
    _DQ: {"math": (81.32, 83.03, 4995, 3875, 22.4), "code": (83.23, 84.13, 4744, 3834, 19.1)},
    _DL: {"math": (81.31, 82.42, 4486, 3683, 17.9), "code": (83.14, 83.84, 4472, 3741, 16.3)},
}

# Known exceptions of the oracles (docs/design/paper.md §6), kept explicit so tests pin them.
DELTA_LEN_EXCEPTIONS = {("code", _DQ, "soft"), ("code", _DL, "cot_greedy")}  # printed truncated, not rounded
NON_INTEGRAL_SINGLE_RUN = {  # single-run cells no k/N reproduces
    (_Q, "cot_greedy", "gsm8k"), (_DL, "cot_greedy", "math500"), (_DL, "cot_greedy", "gsm8k"),
    (_DL, "soft", "gsm8k"), ("ablation", "avg_embedding", "livecodebench"),
}
NON_INTEGRAL_SAMPLED = {(_DL, "cot_sample", "aime2024")}  # 70.40 is not k/480


def _tables():
    return (("table1", "math", TABLE1_DATASETS, TABLE1), ("table2", "code", TABLE2_DATASETS, TABLE2))


# --- long-format accessors ----------------------------------------------------------------------------------------
def published_cells() -> pd.DataFrame:
    """Per (table, model, method, dataset) published pass@1 (%) and Len-Correct (tokens), plus n and item count."""
    rows = []
    for table, domain, datasets, data in _tables():
        for (model, method), (accs, _aa, lens, _al, _da, _dl) in data.items():
            for ds, acc, ln in zip(datasets, accs, lens):
                rows.append(dict(table=table, domain=domain, model=model, method=method, dataset=ds, acc=acc,
                                 len_correct=float(ln), len_all=math.nan, n_samples=N_SAMPLES[method],
                                 n_items=DATASET_SIZES[ds]))
    for method, cells in TABLE3.items():
        for ds, (acc, len_all, len_corr) in cells.items():
            rows.append(dict(table="table3", domain="ablation", model=TABLE3_MODEL, method=method, dataset=ds,
                             acc=acc, len_correct=math.nan if len_corr is None else float(len_corr),
                             len_all=float(len_all), n_samples=N_SAMPLES[method], n_items=DATASET_SIZES[ds]))
    return pd.DataFrame(rows)


def published_averages() -> pd.DataFrame:
    """Printed "Avg" columns of Tables 1/2 with the printed relative changes vs CoT Thinking."""
    rows = []
    for table, domain, _datasets, data in _tables():
        for (model, method), (_accs, avg_acc, _lens, avg_len, d_acc, d_len) in data.items():
            rows.append(dict(table=table, domain=domain, model=model, method=method, avg_acc=avg_acc,
                             avg_len=float(avg_len), delta_acc=d_acc, delta_len_pct=d_len))
    return pd.DataFrame(rows)


def published_figure1() -> pd.DataFrame:
    rows = []
    for model, doms in FIGURE1.items():
        for domain, (a_cot, a_soft, l_cot, l_soft, red) in doms.items():
            rows.append(dict(model=model, domain=domain, method="cot_sample", acc=a_cot, length=float(l_cot),
                             reduction_pct=math.nan))
            rows.append(dict(model=model, domain=domain, method="soft", acc=a_soft, length=float(l_soft),
                             reduction_pct=red))
    return pd.DataFrame(rows)


# --- consistency oracles (docs/design/paper.md §6) ----------------------------------------------------------------------------
def matches_printed(exact: float, printed: float, dp: int) -> bool:
    """True when `printed` is `exact` rounded *or* truncated to `dp` decimals (the paper mixes both)."""
    q = 10 ** dp
    rounded = math.floor(exact * q + 0.5) / q  # half up, as printed
    truncated = math.floor(exact * q + 1e-9) / q
    tol = 0.5 / q / 100
    return abs(printed - rounded) < tol or abs(printed - truncated) < tol


def implied_counts(acc: float, n_items: int, n_samples: int = 1) -> list[int]:
    """Correct-sample counts k (of n_items·n_samples) whose percentage prints as `acc` at 2 dp."""
    total = n_items * n_samples
    lo = max(0, int((acc - 0.02) / 100 * total))
    hi = min(total, int((acc + 0.02) / 100 * total) + 2)
    return [k for k in range(lo, hi + 1) if matches_printed(100.0 * k / total, acc, 2)]


@dataclass
class OracleResult:
    name: str
    ok: bool
    detail: str


def check_consistency() -> list[OracleResult]:
    """Run every oracle of docs/design/paper.md §6 over the data above; each result says what was compared."""
    out: list[OracleResult] = []
    for _table, domain, datasets, data in _tables():
        for (model, method), (accs, avg_acc, lens, avg_len, d_acc, d_len) in data.items():
            key = f"{domain}/{model}/{method}"
            ea, el = sum(accs) / len(accs), sum(lens) / len(lens)
            out.append(OracleResult(f"avg_acc {key}", matches_printed(ea, avg_acc, 2), f"{ea:.4f} vs {avg_acc}"))
            out.append(OracleResult(f"avg_len {key}", matches_printed(el, avg_len, 0), f"{el:.2f} vs {avg_len}"))
            if method != "cot_sample":
                base = data[(model, "cot_sample")]
                da = avg_acc - base[1]
                out.append(OracleResult(f"delta_acc {key}", abs(da - d_acc) < 0.005, f"{da:+.2f} vs {d_acc:+.2f}"))
                dl = 100.0 * (avg_len - base[3]) / base[3]
                ok = matches_printed(abs(dl), abs(d_len), 1) and (dl > 0) == (d_len > 0)
                if (domain, model, method) in DELTA_LEN_EXCEPTIONS:  # only by truncation, never by rounding
                    ok = ok and not matches_printed(math.floor(abs(dl) * 10 + 0.5) / 10 + 1e-12, abs(d_len), 1)
                out.append(OracleResult(f"delta_len {key}", ok, f"{dl:+.2f}% vs {d_len:+.1f}%"))
            for ds, acc in zip(datasets, accs):
                n = N_SAMPLES[method]
                ks = implied_counts(acc, DATASET_SIZES[ds], n)
                if n == 1:
                    expect_none = (model, method, ds) in NON_INTEGRAL_SINGLE_RUN
                    out.append(OracleResult(f"count {key}/{ds}", (not ks) == expect_none, f"{acc} -> {ks}"))
                elif (model, method, ds) in NON_INTEGRAL_SAMPLED:
                    out.append(OracleResult(f"count {key}/{ds}", not ks, f"{acc} -> {ks}"))
    # Figure 1 = the Avg columns; printed reductions = recomputed from the Avg lengths (same exceptions)
    for model, doms in FIGURE1.items():
        for domain, (a_cot, a_soft, l_cot, l_soft, red) in doms.items():
            data = TABLE1 if domain == "math" else TABLE2
            ok = (data[(model, "cot_sample")][1] == a_cot and data[(model, "soft")][1] == a_soft
                  and data[(model, "cot_sample")][3] == l_cot and data[(model, "soft")][3] == l_soft
                  and -data[(model, "soft")][5] == red)
            out.append(OracleResult(f"figure1 {domain}/{model}", ok, f"{a_cot}->{a_soft}, {l_cot}->{l_soft}"))
    # Table 3 "w/ Cold Stop" = Table 1/2 QwQ-32B Soft Thinking cells
    t1 = TABLE1[(_Q, "soft")]
    t2 = TABLE2[(_Q, "soft")]
    aime = (t1[0][TABLE1_DATASETS.index("aime2024")], t1[2][TABLE1_DATASETS.index("aime2024")])
    lcb = (t2[0][TABLE2_DATASETS.index("livecodebench")], t2[2][TABLE2_DATASETS.index("livecodebench")])
    t3 = TABLE3["soft"]
    out.append(OracleResult("table3 soft = table1 QwQ soft AIME", (t3["aime2024"][0], t3["aime2024"][2]) == aime,
                            f"{t3['aime2024']} vs {aime}"))
    out.append(OracleResult("table3 soft = table2 QwQ soft LCB",
                            (t3["livecodebench"][0], t3["livecodebench"][2]) == lcb, f"{t3['livecodebench']} vs {lcb}"))
    for method, cells in TABLE3.items():
        for ds, (acc, _la, _lc) in cells.items():
            ks = implied_counts(acc, DATASET_SIZES[ds], 1)
            expect_none = ("ablation", method, ds) in NON_INTEGRAL_SINGLE_RUN
            out.append(OracleResult(f"count ablation/{method}/{ds}", (not ks) == expect_none, f"{acc} -> {ks}"))
    return out


def failed_oracles() -> list[OracleResult]:
    return [r for r in check_consistency() if not r.ok]


# Deprecated names (one release): the Table 1/2 columns were called MATH_DATASETS/CODE_DATASETS here, which grading
# and prompts used for the registry's kinds.
_RENAMED = {"MATH_DATASETS": "TABLE1_DATASETS", "CODE_DATASETS": "TABLE2_DATASETS"}


def __getattr__(name: str):
    if name in _RENAMED:
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
