"""Every notebook through papermill on the `ci` profile (tiny random models, one item, a few tokens), asserting on
the JSON sidecars; then the cached second run, a failing experiment that does not stop the others, and the report."""
import json
import shutil
import time
from pathlib import Path

import pytest

from softthink import notebooks, pipeline, profiles

pytestmark = pytest.mark.skipif(not notebooks.kernel_installed(), reason="Jupyter kernel 'softthink' not installed "
                                "(python -m ipykernel install --sys-prefix --name softthink)")


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci")
    dirs = dict(runs_dir=str(root / "runs"), build_root=str(root / "build"), figures_dir=str(root / "figures"),
                report_dir=str(root / "report"))
    t0 = time.time()
    summary = pipeline.reproduce("ci", quiet=True, **dirs)
    first = time.time() - t0
    return root, dirs, summary, first


def _sidecar(root, name):
    return json.loads((root / "build" / "sidecars" / f"{name}.json").read_text())


def test_ci_profile_runs_every_notebook(ci_run):
    root, _dirs, summary, _ = ci_run
    failed = [s for s in summary["steps"] if s["status"] == "failed"]
    assert not failed, failed
    steps = {s["step"] for s in summary["steps"]}
    assert {"generate", "grade", "tables", "figures", "sweep_analysis", "explore", "report"} <= steps
    for nb in ("tables", "figures", "sweep_analysis", "explore"):
        assert (root / "build" / "executed" / f"{nb}.ipynb").exists()


def test_generate_sidecars(ci_run):
    root, *_ = ci_run
    prof = profiles.load_profile("ci")
    for e in prof.experiments:
        if e.name == "ci-sweep-k4-tau0.01":  # the same run as ci-gsm8k-soft: not generated twice
            assert not (root / "build" / "sidecars" / f"generate-{e.name}.json").exists()
            continue
        sc = _sidecar(root, f"generate-{e.name}")
        assert sc["status"] == "ok" and sc["notebook"] == "generate"
        assert sc["metrics"]["samples"] == sc["metrics"]["expected"] == e.spec.get("n", 1)
        assert sc["papermill"]["exception"] in (None, False)
        assert sc["parameters"]["spec_file"].endswith(f"{e.name}.yaml")
        assert sc["versions"]["torch"]


def test_grade_tables_figures_sidecars(ci_run):
    root, *_ = ci_run
    g = _sidecar(root, "grade")
    n_runs = len(profiles.load_profile("ci").experiments) - 1
    assert g["metrics"]["failed"] == [] and g["metrics"]["graded"] == n_runs
    t = _sidecar(root, "tables")
    assert t["metrics"]["runs"] == n_runs and t["metrics"]["oracles_ok"] == t["metrics"]["oracles"]
    keys = t["metrics"]["averages"]
    assert any(k.startswith("math/tiny-random-qwen2/soft") for k in keys)
    for v in keys.values():
        assert 0.0 <= v["avg_acc"] <= 100.0
    for name in ("table1", "table2", "table3", "comparison"):
        for ext in ("md", "csv", "tex"):
            assert (root / "figures" / f"{name}.{ext}").exists()
    assert "Soft Thinking (K 4" in (root / "figures" / "comparison.md").read_text()
    f = _sidecar(root, "figures")
    assert f["metrics"]["figures"] == 6 and f["metrics"]["trace"]
    for stem in ("figure1", "concept_tokens", "length_distributions", "acc_vs_length", "pareto_methods",
                 "pareto_paired"):
        assert (root / "figures" / f"{stem}.png").stat().st_size > 5000
        assert (root / "figures" / f"{stem}.pdf").exists()
    s = _sidecar(root, "sweep_analysis")
    assert s["metrics"]["runs"] >= 4 and (root / "figures" / "sweep_heatmaps.png").exists()
    d = _sidecar(root, "diagnostics")  # gsm8k: soft and greedy on the same item
    assert d["metrics"]["agreement_samples"] >= 1 and d["metrics"]["paired"] >= 1
    assert d["metrics"]["probed_runs"] == 1 and d["metrics"]["probed_steps"] >= 1
    diag = (root / "figures" / "diagnostics.md").read_text()
    assert "Top-1 reliance probe" in diag and "Paired differences" in diag and "exercise the machinery" in diag
    for stem in ("divergence_steps", "probe_js"):
        assert (root / "figures" / f"{stem}.png").exists()
    x = _sidecar(root, "explore")
    assert x["metrics"]["soft"]["num_tokens"] >= 1 and x["parameters"]["interactive"] is False


def test_report(ci_run):
    root, *_ = ci_run
    idx = root / "report" / "index.html"
    html = idx.read_text()
    for needle in ("Table 1", "Table 2", "Table 3", "data:image/png;base64", "83.84", "tiny-random-qwen2"):
        assert needle in html
    rendered = sorted(p.name for p in (root / "report" / "notebooks").glob("*.html"))
    assert "tables.html" in rendered and "figures.html" in rendered
    assert "In&nbsp;[" not in (root / "report" / "notebooks" / "tables.html").read_text()  # --no-input


def test_second_run_is_cached_and_fast(ci_run):
    root, dirs, _summary, first = ci_run
    t0 = time.time()
    s2 = pipeline.reproduce("ci", quiet=True, skip_report=True, **dirs)
    gen = [s for s in s2["steps"] if s["step"] == "generate"]
    assert gen and all(s["status"] == "cached" for s in gen)
    assert [s["status"] for s in s2["steps"] if s["step"] == "grade"] == ["cached"]
    analysis = [s for s in s2["steps"] if s["step"] in ("tables", "figures", "sweep_analysis", "explore")]
    assert analysis and all(s["status"] == "cached" for s in analysis)
    assert not s2["failed"]
    assert time.time() - t0 < min(first, 60)


def test_failing_experiment_does_not_stop_the_others(tmp_path, ci_run):
    root, dirs, *_ = ci_run
    params = tmp_path / "params"
    shutil.copytree(profiles.params_dir() / "ci", params / "broken")
    for f in (params / "broken").glob("*.yaml"):
        if f.name not in ("_profile.yaml",):
            f.unlink()
    (params / "broken" / "_profile.yaml").write_text(
        'description: "x"\nanalysis: ["tables"]\nnotebook_timeout_s: 300\n')
    (params / "broken" / "good.yaml").write_text(
        "model: tiny-random-qwen2\ndataset: gsm8k\nlimit: 1\ngeneration: {method: cot_greedy, max_new_tokens: 8}\n")
    (params / "broken" / "bad.yaml").write_text(
        "model: ./no/such/model\ndataset: gsm8k\nlimit: 1\ngeneration: {method: cot_greedy, max_new_tokens: 8}\n")
    s = pipeline.reproduce("broken", quiet=True, params_root=params, runs_dir=str(tmp_path / "runs"),
                           build_root=str(tmp_path / "build"), figures_dir=str(tmp_path / "fig"),
                           report_dir=str(tmp_path / "rep"))
    by = {(x["step"], x["name"]): x for x in s["steps"]}
    assert by[("generate", "bad")]["status"] == "failed"
    assert Path(by[("generate", "bad")]["notebook"]).exists()
    assert by[("generate", "good")]["status"] == "ok"
    assert by[("tables", "tables")]["status"] == "ok"
    assert s["failed"] == 1
