"""The benchmark registry (softthink.data.DATASETS) drives every dataset list.

* A toy math benchmark added the way docs/architecture.md "How to add a benchmark" says -- one DatasetSpec and a data
  file, nothing else -- loads, gets the math prompt, is graded in-process and in the killable pool (whose workers never
  see the registration), and has its label in the tables.
* No module restates a list of dataset names: a tuple/list/set literal of two or more registered names appears only in
  the registry itself and in the published tables' columns (paper.py).
"""
from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from softthink import data, paper, prompts
from softthink.data import DatasetSpec, Item, load_dataset
from softthink.grading import grade

ROOT = Path(__file__).resolve().parent.parent

TOY = [("What is 7 * 6?", "42"), ("What is 2 + 2?", "4"), ("What is 10 - 3?", "7")]


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The how-to, step by step: the data file in a data folder, one registry entry."""
    records = [{"prompt": [{"from": "user", "value": q}], "final_answer": a} for q, a in TOY]
    (tmp_path / "toy.json").write_text(json.dumps(records))
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    spec = DatasetSpec("toy", "math", ("toy.json",), len(TOY), "TOY", "Toy arithmetic", "math", "math_expr")
    monkeypatch.setitem(data.DATASETS, "toy", spec)
    return spec


def test_toy_math_benchmark_through_the_registry_alone(toy):
    ds = load_dataset("toy")
    assert ds.kind == "math" and [it.answer for it in ds] == [a for _, a in TOY] and ds.sha_ok and not ds.warnings
    assert "toy" in data.names("math") and "toy" not in data.names("code")

    item = ds.items[0]
    assert prompts.build_user_prompt("toy", item) == prompts.math_prompt("What is 7 * 6?")

    g = grade("toy", item, "7 * 6 = 42, I think.\n</think>\nSo the answer is $\\boxed{42}$.")
    assert g.correct is True and g.detail["path"] == "boxed"
    assert grade("toy", item, "I think 42.</think>\n\\boxed{41}").correct is False

    assert paper.DATASET_LABELS["toy"] == "TOY" and paper.DATASET_SIZES["toy"] == 3


POOLED = """
import json
from softthink import data
from softthink.data import DatasetSpec, load_dataset
from softthink.grading import grade_many

data.DATASETS["toy"] = DatasetSpec("toy", "math", ("toy.json",), 3, "TOY", "Toy arithmetic", "math", "math_expr")
ds = load_dataset("toy")
jobs = [(it, "</think>\\\\boxed{%s}" % it.answer) for it in ds] + [(ds.items[1], "</think>\\\\boxed{5}")]
print(json.dumps([g.correct for g in grade_many("toy", jobs, workers=1)]))
"""


def test_pool_grades_a_benchmark_registered_at_run_time(toy):
    # the pool's workers get the gold format, not the name (they never see the registration). In a fresh process:
    # the pool's fork server would otherwise outlive this test as a child of the test process.
    res = subprocess.run([sys.executable, "-c", POOLED], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [True, True, True, False]


def test_gold_format_comes_from_the_registry(toy, monkeypatch):
    # "1/2" as an expression equals 0.5; a LaTeX gold reads the same string the same way, but "\frac12" only parses
    # as LaTeX: switching the entry's grader switches how the gold is read
    item = Item(id="0", index=0, question="q", answer="\\frac{1}{2}")
    assert grade("toy", item, "</think>\\boxed{\\frac{1}{2}}").status == "grader_error"   # expr gold: unparsable
    monkeypatch.setitem(data.DATASETS, "toy", dataclasses.replace(toy, grader="math_latex"))
    assert grade("toy", item, "</think>\\boxed{\\frac{1}{2}}").correct is True


def test_unknown_dataset_has_no_prompt_and_no_grader():
    item = Item(id="0", index=0, question="q", answer="1")
    with pytest.raises(KeyError, match="no prompt"):
        prompts.build_user_prompt("nonesuch", item)
    with pytest.raises(KeyError, match="no grader"):
        grade("nonesuch", item, "</think>\\boxed{1}")


def test_every_registered_dataset_has_a_prompt_and_a_known_grader():
    graders = {"math": {"math_expr", "math_latex"}, "gpqa": {"gpqa"}, "code": {"humaneval", "mbpp", "livecodebench"}}
    for name, spec in data.DATASETS.items():
        assert spec.name == name and spec.kind in data.KINDS and spec.grader in graders[spec.kind], name
        assert spec.prompt in prompts.BUILDERS and spec.label and spec.title and spec.count > 0, name


def test_deprecated_names_still_resolve_from_the_registry():
    from softthink import grading

    assert grading.MATH_DATASETS == frozenset(data.names("math")) == frozenset(prompts.MATH_DATASETS)
    assert grading.EXPR_GOLD_DATASETS == {"aime2024", "aime2025", "gsm8k"}
    assert grading.CODE_DATASETS == frozenset(data.names("code")) and grading.GPQA_DATASETS == {"gpqa_diamond"}
    assert paper.MATH_DATASETS is paper.TABLE1_DATASETS and paper.CODE_DATASETS is paper.TABLE2_DATASETS
    with pytest.warns(DeprecationWarning):
        import importlib
        import sys

        sys.modules.pop("softthink.execution", None)
        execution = importlib.import_module("softthink.execution")
    from softthink import sandbox
    from softthink.grading import code

    assert execution.run_program is sandbox.run_program and execution.grade_code is code.grade_code
    assert execution._run is sandbox._run and execution._MBPP_LAZY is code._MBPP_LAZY
    assert execution.CODE_DATASETS == data.names("code")
    with pytest.raises(AttributeError, match="softthink.answers.answer_section"):
        execution.answer_section  # noqa: B018  (its flag had the opposite meaning: removed, not re-exported)


# ------------------------------------------------------------------------------------------------ no restated lists

# Literals of registered names that are not restatements of the registry: the published tables' columns (in the
# paper's order) and the default datasets of the synthetic demo data.
ALLOWED = {
    ("softthink/data.py", None),                        # the registry itself
    ("softthink/paper.py", "TABLE1_DATASETS"), ("softthink/paper.py", "TABLE2_DATASETS"),
    ("softthink/paper.py", "ABLATION_DATASETS"),
}


def _name_lists(path: Path) -> list[tuple[int, str | None, list[str]]]:
    """(line, enclosing function or assigned name, names) of each tuple/list/set literal of >= 2 registered names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    owner: dict[ast.AST, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                owner.setdefault(sub, node.name)
    for node in tree.body:  # module-level assignments: the assigned name
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    for sub in ast.walk(node.value):
                        owner[sub] = t.id
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            names = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in data.DATASETS]
            if len(names) >= 2:
                out.append((node.lineno, owner.get(node), names))
    return out


def test_no_module_restates_a_list_of_dataset_names():
    found = []
    for path in sorted([*(ROOT / "softthink").rglob("*.py"), *(ROOT / "notebooks").glob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        for line, who, names in _name_lists(path):
            if (rel, None) not in ALLOWED and (rel, who) not in ALLOWED:
                found.append(f"{rel}:{line} ({who}): {names}")
    assert not found, "dataset name lists outside the registry (use softthink.data.names(kind) / DATASETS):\n" + \
        "\n".join(found)


def test_the_scan_finds_a_restated_list(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('MATH = ("aime2024", "gsm8k")\ndef f(ds):\n    return ds in {"humaneval", "mbpp"}\n')
    assert [(who, names) for _, who, names in _name_lists(p)] == [("MATH", ["aime2024", "gsm8k"]),
                                                                   ("f", ["humaneval", "mbpp"])]
