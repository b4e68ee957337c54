"""params/ profiles, their validation, and the notebook conventions (no model, no kernel)."""
import json

import pytest

from softthink import notebooks, pipeline, profiles
from softthink.config import ConfigError


def test_every_profile_is_valid():
    res = profiles.validate_all()
    assert set(res) >= {"demo", "paper", "sweep", "methods", "ci"}
    assert all(not p for p in res.values()), res


def test_profile_sizes_and_contents():
    demo = profiles.load_profile("demo")
    ds = {e.spec["dataset"] for e in demo.experiments}
    assert ds == {"math500", "aime2024", "gsm8k", "gpqa_diamond", "humaneval", "mbpp", "livecodebench"}
    assert all(e.spec["model"] == "smollm2-135m" and e.spec.get("limit", 99) <= 3 for e in demo.experiments)
    assert {e.spec["generation"]["method"] for e in demo.experiments} == {"cot_sample", "cot_greedy", "soft"}
    assert all(e.spec["generation"]["max_new_tokens"] <= 384 for e in demo.experiments)
    paper = profiles.load_profile("paper")
    t12 = [e for e in paper.experiments if "tables_1_2" in e.source]
    assert len(t12) == 3 * 7 * 3 + 7 * 2 * 1 + 7 * 1 * 2  # 3 methods everywhere, corrected everywhere, K15 for QwQ
    cot = [e for e in t12 if e.spec["generation"]["method"] == "cot_sample"]
    assert all(e.spec["n"] == 16 and e.spec["generation"]["max_new_tokens"] == 32768 for e in cot)
    k15 = [e for e in t12 if e.spec["generation"].get("think", {}).get("max_topk") == 15]
    assert {e.spec["model"] for e in k15} == {"Qwen/QwQ-32B"}
    abl = {e.spec["generation"]["method"] for e in paper.experiments if "table3" in e.source}
    assert abl == {"coconut_tf", "avg_embedding", "soft"}
    sweep = profiles.load_profile("sweep")
    ks = {e.spec["generation"]["think"].get("max_topk") for e in sweep.experiments}
    assert {5, 10, 15, 20, 30} <= ks
    methods = profiles.load_profile("methods")  # every method on the demo slices (details: test_methods_report.py)
    assert methods.experiments and all(e.spec["model"] == "smollm2-135m" for e in methods.experiments)


def test_group_expansion(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "_profile.yaml").write_text("description: x\nanalysis: [tables]\n")
    (tmp_path / "p" / "g.yaml").write_text("""
name: "{d}-{m}"
defaults: {model: tiny-random-qwen2, generation: {max_new_tokens: 8}}
matrix:
  d: {a: {dataset: gsm8k}, b: {dataset: math500}}
  m: {s: {generation: {method: soft}}, g: {generation: {method: cot_greedy}}}
overrides:
  - when: {d: a, m: s}
    set: {generation: {think: {max_topk: 3}}}
exclude:
  - {d: b, m: g}
experiments:
  - {name: extra, spec: {dataset: gsm8k, generation: {method: cot_sample}, n: 2}}
""")
    (tmp_path / "p" / "single.yaml").write_text("model: tiny-random-qwen2\ndataset: gsm8k\n")
    prof = profiles.load_profile("p", root=tmp_path)
    names = sorted(e.name for e in prof.experiments)
    assert names == ["a-g", "a-s", "b-s", "extra", "single"]
    by = {e.name: e.spec for e in prof.experiments}
    assert by["a-s"]["generation"]["think"]["max_topk"] == 3 and "think" not in by["b-s"]["generation"]
    assert by["extra"]["model"] == "tiny-random-qwen2" and by["extra"]["n"] == 2
    assert profiles.validate_profile(prof) == []
    paths = profiles.write_experiment_specs(prof, tmp_path / "out")
    from softthink.runs import RunSpec

    assert RunSpec.from_yaml(paths["a-s"]).generation.think.max_topk == 3


@pytest.mark.parametrize("body,match", [
    ("model: m\ndataset: nope\n", "dataset"),
    ("model: m\ndataset: gsm8k\nlimt: 2\n", "limit"),
    ("model: m\ndataset: gsm8k\ngeneration: {method: soft, think: {max_topk: 0}}\n", "max_topk"),
    ("model: m\ndataset: gsm8k\ngeneration: {think: {min_p: 1e-3}}\n", "min_p"),  # YAML 1.1: a string
])
def test_invalid_specs_are_reported(tmp_path, body, match):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "_profile.yaml").write_text("description: x\n")
    (tmp_path / "p" / "bad.yaml").write_text(body)
    problems = profiles.validate_profile(profiles.load_profile("p", root=tmp_path))
    assert problems and match in problems[0]


def test_profile_meta_errors(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "_profile.yaml").write_text("description: x\nanalysis: [nope]\n")
    with pytest.raises(ConfigError, match="analysis"):
        profiles.load_profile("p", root=tmp_path)
    (tmp_path / "p" / "_profile.yaml").write_text("description: x\nnotebook_params: {explore: {modle: x}}\n")
    with pytest.raises(ConfigError, match="modle"):
        profiles.load_profile("p", root=tmp_path)
    (tmp_path / "p" / "_profile.yaml").write_text("descripton: x\n")
    with pytest.raises(ConfigError, match="descripton"):
        profiles.load_profile("p", root=tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        profiles.load_profile("absent", root=tmp_path)


def test_duplicate_names(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "_profile.yaml").write_text("description: x\n")
    for f in ("a", "b"):
        (tmp_path / "p" / f"{f}.yaml").write_text(
            "experiments: [{name: same, spec: {model: m, dataset: gsm8k}}]\n")
    problems = profiles.validate_profile(profiles.load_profile("p", root=tmp_path))
    assert any("duplicate" in p for p in problems)


@pytest.mark.parametrize("name", notebooks.NOTEBOOKS)
def test_notebook_conventions(name):
    assert notebooks.check_notebook_source(name) == []


def test_built_notebooks_have_kernel_and_one_parameters_cell(tmp_path):
    paths = notebooks.build_notebooks(tmp_path)
    for name, p in paths.items():
        nb = json.loads(p.read_text())
        assert nb["metadata"]["kernelspec"]["name"] == "softthink"
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, name
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def test_paired_notebooks_in_sync(tmp_path, monkeypatch):
    assert notebooks.paired_out_of_sync() == []
    import jupytext

    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    src = notebooks.notebooks_dir() / "tables.py"
    (nbdir / "tables.py").write_text(src.read_text())
    nb = jupytext.read(src)
    jupytext.write(nb, nbdir / "tables.ipynb")
    monkeypatch.setattr(notebooks, "notebooks_dir", lambda: nbdir)
    assert notebooks.paired_out_of_sync() == []
    nb.cells[-1].source += "\nprint('edited in Lab')"
    jupytext.write(nb, nbdir / "tables.ipynb")
    assert "differs" in notebooks.paired_out_of_sync()[0]


def test_notebook_params_validation():
    ns = {"runs_dir": "runs", "manifest": "", "out_dir": "f", "sidecar": "s.json", "grader": "suite",
          "In": [], "_oh": {}, "notebook_params": notebooks.notebook_params}
    p = notebooks.notebook_params("tables", ns)
    assert p.out_dir == "f" and p.to_dict()["grader"] == "suite"
    with pytest.raises(ConfigError, match="unknown"):
        notebooks.notebook_params("tables", {**ns, "out_dri": "x"})
    with pytest.raises(ConfigError, match="must be"):
        notebooks.notebook_params("figures", {**ns, "trace_run": "", "max_trace_steps": "many", "top_k_shown": 5})
    with pytest.raises(ConfigError, match="missing"):
        notebooks.notebook_params("tables", {"runs_dir": "runs"})
    e = notebooks.notebook_params("explore", {"model": "m", "question": "q", "max_new_tokens": 4, "max_topk": 2,
                                             "threshold": "1e-3", "length": 4, "sidecar": "s", "interactive": False,
                                             "device": "cpu"})
    assert e.threshold == 0.001


def test_manifest_runs(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "config.json").write_text("{}")
    assert pipeline.manifest_runs(None, tmp_path) == [str(tmp_path / "r1")]
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"runs": {"a": str(tmp_path / "r1"), "b": None, "c": str(tmp_path / "missing")}}))
    assert pipeline.manifest_runs(m) == [str(tmp_path / "r1")]


def test_cli_validate(capsys):
    from softthink.cli import main

    assert main(["validate-params", "--profile", "ci"]) == 0
    assert "ci" in capsys.readouterr().out


def test_notebook_parameter_types_come_from_the_typed_parameters_cell(tmp_path, monkeypatch):
    """The annotations of a notebook's `parameters` cell are the only declaration of its parameter types."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    (nbdir / "toy.py").write_text('# %% tags=["parameters"]\nwidth: int = 3  # a width\nname: str = "x"  # a name\n'
                                  'ratio: float = 0.5  # a ratio\n\n# %%\nprint(width)\n')
    (nbdir / "bad.py").write_text('# %% tags=["parameters"]\nthing: object = 3  # an untyped thing\n')
    monkeypatch.setattr(notebooks, "notebooks_dir", lambda: nbdir)
    notebooks.param_types.cache_clear()
    try:
        assert notebooks.param_types("toy") == {"width": int, "name": str, "ratio": float}
        assert notebooks.notebook_params("toy", {"width": 4, "name": "y", "ratio": 1}).ratio == 1.0
        with pytest.raises(ConfigError, match="'width' must be int"):
            notebooks.notebook_params("toy", {"width": "4", "name": "y", "ratio": 1.0})
        with pytest.raises(ConfigError, match="annotate it with one of"):
            notebooks.param_types("bad")
        with pytest.raises(ConfigError, match="unknown notebook"):
            notebooks.param_types("missing")
    finally:
        monkeypatch.undo()
        notebooks.param_types.cache_clear()
    # the real notebooks: every profile's notebook_params keys are parameters of the notebook they name
    for name in profiles.list_profiles():
        for nb, values in profiles.load_profile(name).notebook_params.items():
            assert set(values) <= set(notebooks.param_types(nb)), (name, nb)
