"""The methods profile, the extended comparison table and the Pareto view (synthetic frames; no model, no runs)."""
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

import fixtures  # noqa: E402
from softthink import comparison, figures, metrics, paper, profiles, report, tables  # noqa: E402
from softthink.config import METHODS  # noqa: E402
from softthink.methods import row_of  # noqa: E402


def _row_key(spec):
    from softthink.runspec import RunSpec

    return row_of(RunSpec.from_dict(spec).generation.to_dict())  # rows are read off resolved configs


def test_methods_profile_covers_every_method_on_the_demo_slices():
    prof = profiles.load_profile("methods")
    assert profiles.validate_profile(prof) == []
    rows = {}
    for e in prof.experiments:
        assert e.spec["model"] == "smollm2-135m" and e.spec["device"] == "cpu" and e.spec["limit"] <= 2
        assert e.spec["generation"]["max_new_tokens"] <= 256 and e.spec["generation"]["think"]["budget"] > 0
        rows.setdefault(_row_key(e.spec), []).append(e)
    assert set(rows) == set(comparison.COMPARISON_METHODS)
    assert {e.spec["generation"]["method"] for e in prof.experiments} == set(METHODS)
    for key, exps in rows.items():  # every method on every benchmark
        assert {e.spec["dataset"] for e in exps} == set(comparison.COMPARISON_DATASETS), key
    for key in ("soft_gumbel", "soft_dirichlet"):
        assert all(e.spec["n"] > 1 for e in rows[key])
    g = rows["soft_gumbel"][0].spec["generation"]
    assert g["noise"]["gumbel_tau"] == 0.5 and g["think"]["max_topk"] == 5
    assert rows["soft_dirichlet"][0].spec["generation"]["noise"]["dirichlet_alpha"] == 4.0
    assert rows["moi"][0].spec["generation"]["moi"]["beta"] == 1.0
    assert rows["swir"][0].spec["generation"]["swir"]["max_switches"] > 0
    assert rows["soft"][0].spec["generation"]["cold_stop"]["threshold"] > 0


def test_paper_profile_has_ablations_and_published_stochastic_settings():
    prof = profiles.load_profile("paper")
    by = {e.name: e.spec for e in prof.experiments}
    for ds in ("aime2024", "livecodebench"):
        assert by[f"qwq32b-{ds}-coconut-tf"]["generation"]["method"] == "coconut_tf"
        assert by[f"qwq32b-{ds}-avg-embedding"]["generation"]["avg_embedding"]["k"] == 5
        assert by[f"qwq32b-{ds}-soft-no-cold-stop"]["generation"]["cold_stop"]["threshold"] == 0.0
        gum = prof.experiments[[e.name for e in prof.experiments].index(f"qwq32b-{ds}-gumbel")].run_spec()
        g = gum.generation_config().to_dict()
        assert gum.n == 16 and gum.model == "Qwen/QwQ-32B"
        assert (g["think"]["max_topk"], g["noise"]["gumbel_tau"], g["think"]["min_p"], g["cold_stop"]["threshold"]) \
            == (5, 0.5, 0.0, 0.0)
        d = by[f"qwq32b-{ds}-dirichlet"]
        assert d["generation"]["noise"] == {"kind": "dirichlet", "dirichlet_alpha": 4.0}
    assert by["qwq32b-aime2024-dirichlet"]["n"] == 16
    assert by["qwq32b-aime2024-dirichlet"]["generation"]["think"]["max_topk"] == 15
    assert by["qwq32b-livecodebench-dirichlet"]["generation"]["think"]["max_topk"] == 10


def test_noise_runs_get_their_own_rows():
    gen = lambda tau, noise: {"method": "soft", "cold_stop": {"threshold": tau}, "noise": {"kind": noise}}  # noqa: E731
    assert row_of(gen(0.0, "gumbel")) == "soft_gumbel"
    assert row_of(gen(0.01, "dirichlet")) == "soft_dirichlet"
    assert row_of(gen(0.0, "none")) == "soft_no_cold_stop"
    assert row_of(gen(0.01, "none")) == "soft"
    assert row_of({"method": "cot_sample", "cold_stop": {"threshold": 0.0}}) == "cot_sample"  # variants are soft's
    # Table 3 keeps only its own rows: a Gumbel run (Cold Stop off) is not "w/o Cold Stop"
    s = fixtures.synthetic_comparison_summary(datasets=("aime2024",))
    t3 = tables.ablation_table(s)
    assert "soft_gumbel" not in t3.index.get_level_values("method")


def test_comparison_table_rows_metrics_and_pass_at_k():
    s = fixtures.synthetic_comparison_summary(datasets=("aime2024", "gsm8k"), n_items=5, seed=3)
    tab = comparison.comparison_table(s)
    assert list(tab.index.get_level_values("method")) == comparison.COMPARISON_METHODS  # every method, in order
    assert tab.attrs["datasets"] == ["aime2024", "gsm8k"]
    for _, r in s.iterrows():
        row = tab.xs(r.row, level="method").iloc[0]
        assert row[("acc", r.dataset)] == pytest.approx(r["pass@1"])
        assert row[("len_all", r.dataset)] == pytest.approx(r.len_all)
        assert row[("len_correct", r.dataset)] == pytest.approx(r.len_correct)
        if r.n > 1:  # the unbiased estimator, k = n, recomputed from the item counts by the closed form
            exact = np.mean([1 - math.comb(r.n - c, r.n) / math.comb(r.n, r.n) for c in r._cs])
            assert row[("pass@k", r.dataset)] == pytest.approx(100 * exact)
            assert row[("pass@k", r.dataset)] == pytest.approx(
                100 * metrics.mean_pass_at_k([r.n] * len(r._cs), r._cs, r.n))
        else:
            assert math.isnan(row[("pass@k", r.dataset)])
    have_k = {m for m, k in zip(tab.index.get_level_values("method"), tab.attrs["k"]) if k}
    assert have_k == {"cot_sample", "soft_gumbel", "soft_dirichlet"}
    acc = tab[("acc", "aime2024")].to_numpy(), tab[("acc", "gsm8k")].to_numpy()
    assert tab[("acc", "avg")].to_numpy() == pytest.approx((acc[0] + acc[1]) / 2)
    assert all(tab.attrs["complete"])


def test_comparison_labels_and_outputs(tmp_path):
    s = fixtures.synthetic_comparison_summary(datasets=("aime2024",))
    s.loc[s.index[:2], "n"] = 1  # also a pass@k column present while n = 1: never shown
    s.loc[0, "pass@2"] = 50.0
    paths = comparison.write_comparison(s, tmp_path)
    md = (tmp_path / "comparison.md").read_text()
    for label in ("Soft Thinking (K 10, min-p 0.001, τ 0.01, L 256)", "Soft Thinking w/o Cold Stop (K 10",
                  "Soft Thinking + Gumbel (K 5, τ_g 0.5, min-p 0, Cold Stop off)", "Mixture of Inputs (β 1, K_m 20)",
                  "SwiReasoning (α₀ 0.5, β₀ 0.7, W 512, C 2)", "Average Embedding (k 5)", "NoThinking",
                  "ThinkRouter (τ_r 0.5", "COCONUT-TF", "Soft Thinking + Dirichlet (K 10, α 4"):
        assert label in md, label
    block = md.split("### pass@k")[1].split("\n\n")[1]
    assert "Gumbel" in block and "Dirichlet" in block and "CoT Thinking (T" not in block
    csv = pd.read_csv(tmp_path / "comparison.csv")
    assert len(csv) == len(comparison.COMPARISON_METHODS) and "pass@k AIME24" in csv.columns
    assert csv["pass@k AIME24"].notna().sum() == 2  # gumbel and dirichlet only (CoT set to n = 1)
    assert "tabular" in (tmp_path / "comparison.tex").read_text()
    assert len(paths) == 4 and "Paired differences against CoT Thinking (Greedy)" in md
    assert (tmp_path / "comparison_paired.csv").exists()  # made-up runs have no directories: no pair, an empty frame
    # empty input: a table that says so
    assert "No runs yet" in comparison.comparison_markdown(comparison.comparison_table(None))


def test_pareto_front_hand_made():
    #          a    b    c    d    e(=b) f    g(nan)
    length = [100, 200, 300, 150, 200, 400, float("nan")]
    acc = [10., 50., 50., 5., 50., 80., 99.]
    # a: shortest; b, e: identical (neither dominates), dominate c (same acc, longer); d dominated by a; f: best acc
    assert figures.pareto_front(length, acc) == [True, True, False, False, True, True, False]
    assert figures.pareto_front([], []) == []
    assert figures.pareto_front([5], [0]) == [True]


def test_pareto_frame_and_figure(tmp_path):
    s = fixtures.synthetic_comparison_summary(datasets=("aime2024", "gsm8k"))
    df = figures.pareto_frame(s)
    for ds, sub in df.groupby("dataset"):
        front = sub[sub.pareto]
        assert len(front) >= 1
        # the shortest run and the most accurate run are always on the front
        assert sub.loc[sub.len_all.idxmin(), "pareto"] or (sub.len_all == sub.len_all.min()).sum() > 1
        assert front.acc.max() == sub.acc.max()
        for _, p in front.iterrows():
            dom = sub[(sub.len_all <= p.len_all) & (sub.acc >= p.acc) & ((sub.len_all < p.len_all) | (sub.acc > p.acc))]
            assert dom.empty
    fig = figures.pareto_view(s)
    assert len([a for a in fig.axes if a.get_visible() and a.axison]) == 2
    paths = figures.save_figure(fig, "pareto_methods", tmp_path)
    assert [p.rsplit(".", 1)[1] for p in paths] == ["png", "pdf"]
    figures.save_figure(figures.pareto_view(None), "empty", tmp_path)


def test_palette_covers_every_method_with_distinct_colours_and_markers():
    for m in comparison.COMPARISON_METHODS:
        assert m in figures.METHOD_PALETTE and m in figures.METHOD_MARKERS and m in paper.METHOD_LABELS
    assert len(set(figures.METHOD_PALETTE.values())) == len(figures.METHOD_PALETTE)
    assert len(set(figures.METHOD_MARKERS.values())) == len(figures.METHOD_MARKERS)


def test_report_shows_comparison_and_pareto(tmp_path):
    figs = tmp_path / "figures"
    s = fixtures.synthetic_comparison_summary(datasets=("aime2024",))
    tables.write_tables(s, figs)
    comparison.write_comparison(s, figs)
    figures.save_figure(figures.pareto_view(s), "pareto_methods", figs)
    html = report.build_report(profile="methods", build_dir=tmp_path / "b", figures_dir=figs,
                               out_dir=tmp_path / "rep", render_notebooks=False).read_text()
    assert "Comparison of every method" in html and "Soft Thinking + Gumbel (K 5" in html
    assert "pareto_methods" in html and "Pareto front" in html


def test_gpqa_guard_ignores_degenerate_completions(tmp_path):
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"spec": {"dataset": "gpqa_diamond"}}))
    texts = ["_" + "-" * 90 + "</think>", "The answer depends on the symmetry of the molecule, so option B is right."]
    (run / "samples.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    snips = report.gpqa_snippets([run])
    assert texts[1][:60] in snips  # real completion text stays guarded
    assert not any(s.startswith("_---") for s in snips)  # COCONUT-TF's collapse in another run is no GPQA leak
