"""Tables, figures and report against synthetic summary frames (no model, no runs)."""
import json
import math

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

import fixtures  # noqa: E402
from softthink import figures, paper, report, tables  # noqa: E402

QWQ = "Qwen/QwQ-32B"


def _exact_summary():
    """A summary in the summaries.summarize_runs shape whose values equal the published cells exactly (QwQ-32B)."""
    rows = []
    for _, c in paper.published_cells().iterrows():
        if c.model != "QwQ-32B":
            continue
        if c.table == "table3" and c.method == "soft":
            continue  # the same run as the Table 1/2 cell
        rows.append(fixtures.summary_row(f"r-{c.table}-{c.method}-{c.dataset}", QWQ, c.dataset,
                                         fixtures.generation_for_row(c.method), n_items=c.n_items, n=c.n_samples,
                                         **{"pass@1": c.acc, "pass@1_std": 1.0}, len_correct=c.len_correct,
                                         len_all=c.len_all))
    return pd.DataFrame(rows)


def test_normalize_maps_runs_columns():
    df = tables.normalize(_exact_summary())
    assert set(df.model) == {"QwQ-32B"}
    assert set(df.method) == {"cot_sample", "cot_greedy", "soft", "soft_no_cold_stop", "coconut_tf", "avg_embedding"}
    assert (df.acc <= 100).all()


def test_normalize_prefers_grader_mode():
    s = _exact_summary().head(1)
    both = pd.concat([s, s.assign(grader="v1-official", **{"pass@1": 1.0})])
    assert tables.normalize(both, grader="suite").acc.tolist() == [s["pass@1"].iloc[0]]
    assert tables.normalize(both, grader="official").acc.tolist() == [1.0]


@pytest.mark.parametrize("domain,datasets", [("math", paper.TABLE1_DATASETS), ("code", paper.TABLE2_DATASETS)])
def test_main_table_diffs_zero_when_ours_equal_published(domain, datasets):
    tab = tables.main_table(_exact_summary(), domain)
    qwq = tab.xs("QwQ-32B", level="model")
    for ds in datasets:
        assert qwq[("acc", ds, "diff")].abs().max() == pytest.approx(0.0)
        assert qwq[("len", ds, "diff")].abs().max() == pytest.approx(0.0)
    # our averages are unrounded means of the cells: they match the printed averages to the paper's rounding
    for method in paper.METHODS_MAIN:
        ours = qwq.loc[(method, ""), ("acc", "avg", "ours")]
        pub = qwq.loc[(method, ""), ("acc", "avg", "pub")]
        assert paper.matches_printed(ours, pub, 2)
    # the other models: published only
    other = tab.xs("DeepSeek-R1-Distill-Qwen-32B", level="model")
    assert other[("acc", datasets[0], "ours")].isna().all()
    assert not other[("acc", datasets[0], "pub")].isna().any()
    # ablation-only rows never enter Tables 1/2
    assert not set(tab.index.get_level_values("method")) & set(tables.ABLATION_ONLY)


def test_ablation_table():
    tab = tables.ablation_table(_exact_summary())
    q = tab.xs("QwQ-32B", level="model")
    assert q.loc[("coconut_tf", ""), ("len_all", "aime2024", "pub")] == 32768
    assert q.loc[("soft", ""), ("acc", "livecodebench", "ours")] == pytest.approx(62.72)
    assert q[("acc", "aime2024", "diff")].abs().max() == pytest.approx(0.0)
    assert math.isnan(q.loc[("coconut_tf", ""), ("len_correct", "aime2024", "pub")])


def test_unpublished_model_rows_and_partial_average():
    s = fixtures.synthetic_summary(models=["smollm2-135m"], include_ablation=False)
    s = s[s.dataset != "gsm8k"]
    tab = tables.main_table(s, "math")
    rows = tab.xs("smollm2-135m", level="model")
    assert rows[("acc", "gsm8k", "ours")].isna().all()
    assert rows[("acc", "avg", "ours")].notna().all()
    md = tables.to_markdown(tab, "t")
    assert "*" in md and "smollm2-135m" in md


def test_auto_variant_splits_rows_with_different_settings():
    s = _exact_summary()
    soft = s[(s.method == "soft") & (s.dataset == "aime2024")]
    s = pd.concat([s.assign(**{"think.max_topk": 10}),
                   soft.assign(run="k15", **{"think.max_topk": 15, "pass@1": 50.0})])
    tab = tables.main_table(s, "math")
    variants = set(tab.xs(("QwQ-32B", "soft"), level=("model", "method")).index)
    assert variants == {"", "max_topk=15"}  # the common setting unlabelled, the extra run labelled
    row = tab.loc[("QwQ-32B", "soft", "max_topk=15")]
    assert row[("acc", "aime2024", "ours")] == 50.0 and pd.isna(row[("acc", "math500", "ours")])
    assert row[("acc", "aime2024", "pub")] == 83.33  # published value beside every variant


def test_write_tables(tmp_path):
    written = tables.write_tables(_exact_summary(), tmp_path)
    for name in ("table1", "table2", "table3"):
        for ext in ("md", "csv", "tex"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 100
    md = (tmp_path / "table1.md").read_text()
    assert "97.66" in md and "MATH500 pub" in md and "+0.00" in md
    assert "\\begin{tabular}" in (tmp_path / "table2.tex").read_text()
    csv = pd.read_csv(tmp_path / "table1.csv")
    assert "Acc MATH500 ours" in csv.columns
    long = json.loads((tmp_path / "tables.json").read_text())
    assert any(r["table"] == "table3" for r in long)
    assert written["long"]


def test_empty_summary_gives_published_only(tmp_path):
    tables.write_tables(None, tmp_path)
    md = (tmp_path / "table1.md").read_text()
    assert "83.84" in md and "—" in md


def test_one_palette_for_methods():
    assert len(set(figures.METHOD_PALETTE.values())) == len(figures.METHOD_PALETTE)
    assert figures.method_color("soft") == figures.METHOD_PALETTE["soft"]
    new = figures.method_color("brand_new_method")
    assert figures.method_color("brand_new_method") == new


def test_figures_save_png_and_pdf(tmp_path):
    s = fixtures.synthetic_summary(models=[QWQ, "smollm2-135m"])
    out = []
    out += figures.save_figure(figures.figure1(tables.normalize(s)), "figure1", tmp_path)
    out += figures.save_figure(figures.concept_tokens(fixtures.synthetic_trace(30), decode=lambda i: f"t{i}"),
                               "concept_tokens", tmp_path)
    samples = pd.DataFrame({"model": "m", "method": ["cot_sample", "soft"] * 5, "dataset": "gsm8k",
                            "num_tokens": range(10)})
    out += figures.save_figure(figures.length_distributions(samples), "length_distributions", tmp_path)
    out += figures.save_figure(figures.acc_vs_length(s), "acc_vs_length", tmp_path)
    out += figures.save_figure(figures.sweep_heatmaps(fixtures.synthetic_sweep()), "sweep_heatmaps", tmp_path)
    assert len(out) == 10
    for p in out:
        assert (tmp_path / p.split("/")[-1]).stat().st_size > 1000


def test_figure1_frame_has_published_and_ours():
    df = figures.figure1_frame(tables.normalize(_exact_summary()))
    pub = df[df.source == "published"]
    assert len(pub) == 12
    ours = df[(df.source == "ours") & (df.domain == "math") & (df.method == "soft")]
    assert ours.acc.item() == pytest.approx(86.3275)


def test_trace_frame_accepts_shapes():
    tr = fixtures.synthetic_trace(5)
    a = figures.trace_frame(tr)
    b = figures.trace_frame([{k: v[i] for k, v in tr.items()} for i in range(5)])
    assert len(a) == len(b) == 5 and list(a.step) == [1, 2, 3, 4, 5]


def test_gpqa_guard(tmp_path):
    p = tmp_path / "x.html"
    p.write_text("<p>Which of the following molecules has C3h symmetry? A. triisopropyl borate</p>")
    report.guard_file(tmp_path / "x.html", ["Something else entirely that is long enough"])
    assert p.exists()
    with pytest.raises(RuntimeError, match="GPQA"):
        report.guard_file(p, ["Which of the following molecules has C3h symmetry?"])
    assert not p.exists()


def test_gpqa_snippets_cover_dataset_when_present():
    snips = report.gpqa_snippets()
    try:
        from softthink.data import load_dataset

        n = len(load_dataset("gpqa_diamond").items)
    except Exception:  # noqa: BLE001
        pytest.skip("GPQA data not available")
    assert len(snips) >= n


def test_report_from_synthetic(tmp_path):
    figs = tmp_path / "figures"
    tables.write_tables(_exact_summary(), figs)
    figures.save_figure(figures.figure1(tables.normalize(_exact_summary())), "figure1", figs)
    idx = report.build_report(profile="test", build_dir=tmp_path / "build", figures_dir=figs, out_dir=tmp_path / "rep")
    html = idx.read_text()
    assert "Table 1" in html and "data:image/png;base64" in html and "97.66" in html


def test_sidecar(tmp_path):
    body = report.write_sidecar(tmp_path / "s.json", "tables", {"a": 1}, metrics={"m": 2})
    assert json.loads((tmp_path / "s.json").read_text())["param_hash"] == body["param_hash"]
    assert body["versions"]["python"]
