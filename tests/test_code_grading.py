"""HumanEval and MBPP graders on the shipped datasets (docs/design/evaluation.md §4.3).

All 164 HumanEval canonical solutions and all 257 MBPP reference solutions must pass, in both grader modes;
wrong and empty completions must not. MBPP reference solutions that the dataset itself gets wrong are listed in
``MBPP_REFERENCE_EXPECTED_FAILURES`` and asserted exactly (the list is empty: every reference passes its asserts
with the official header in both modes), so a change in the data or the harness shows up as a failure.
"""
from __future__ import annotations

import pytest

from softthink.data import DataNotFound, load_dataset
from softthink.grading.code import (_MBPP_LAZY, MBPP_HEADER, grade_code, grade_code_many, humaneval_program,
                                    mbpp_entry_point, mbpp_header, mbpp_program, outcome_counts)
from softthink.sandbox import run_program

WORKERS = 2

# task_id -> reason. Verified empty on 2026-11-27 (python 3.11.7, numpy 2.4.6).
MBPP_REFERENCE_EXPECTED_FAILURES: dict[int, str] = {}


def _load(name):
    try:
        return load_dataset(name)
    except DataNotFound as e:  # pragma: no cover - data ships with the project
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def humaneval():
    ds = _load("humaneval")
    assert len(ds.items) == 164
    return ds


@pytest.fixture(scope="module")
def mbpp():
    ds = _load("mbpp")
    assert len(ds.items) == 257
    return ds


def fence(code: str, tag: str = "python") -> str:
    return f"<think>\nok\n</think>\nSolution:\n```{tag}\n{code}\n```\n"


def _grade_all(dataset, items, pairs, mode):
    """Grade with the official timeout; items that time out are re-graded alone with a long timeout. The tests
    are about the solutions' correctness: on a loaded 2-core machine a CPU-heavy reference (MBPP 123 needs ~2-3 s
    of CPU) can miss the wall-clock limit, which says nothing about the harness (timeouts are tested elsewhere)."""
    grades = grade_code_many(dataset, pairs, mode=mode, workers=WORKERS)
    slow = [i for i, g in enumerate(grades) if g.status == "timeout"]
    for i in slow:
        grades[i] = grade_code(dataset, pairs[i][0], pairs[i][1], mode=mode, timeout=60.0)
    return grades, [items[i].id for i in slow]


def _failures(items, grades):
    return {it.id: (g.status, g.detail.get("stderr", "")[-300:]) for it, g in zip(items, grades) if g.status != "passed"}


# ------------------------------------------------------------------------------------------------ HumanEval

def test_humaneval_program_layout(humaneval):
    item = humaneval.items[0]
    prog = humaneval_program(item, "CODE")
    assert prog == item.meta["prompt"] + "CODE" + "\n" + item.meta["test"] + "\n" + f"check({item.meta['entry_point']})"


def test_humaneval_canonical_solutions_all_pass_suite(humaneval):
    # what chat models return: the whole function (prompt + body), in a fence after </think>
    pairs = [(it, fence(it.meta["prompt"] + it.meta["canonical_solution"])) for it in humaneval.items]
    grades, _slow = _grade_all("humaneval", humaneval.items, pairs, "suite")
    assert _failures(humaneval.items, grades) == {}
    assert all(g.correct is True and g.detail["extraction"] == "fence" for g in grades)


def test_humaneval_canonical_solutions_all_pass_official(humaneval):
    # official: the body alone in the last ```python block of the full text, appended to the prompt
    pairs = [(it, "```python\n" + it.meta["canonical_solution"] + "```") for it in humaneval.items]
    grades, _slow = _grade_all("humaneval", humaneval.items, pairs, "official")
    assert _failures(humaneval.items, grades) == {}


def test_humaneval_wrong_and_empty_completions_fail(humaneval):
    pairs = [(it, fence(it.meta["prompt"] + "    return None\n")) for it in humaneval.items]
    grades = grade_code_many("humaneval", pairs, workers=WORKERS)
    counts = outcome_counts(grades)
    assert counts["passed"] == 0
    assert counts["failed"] + counts["runtime_error"] == 164
    assert all(g.correct is False for g in grades)
    for it in humaneval.items[:20]:   # no code: never executed, never passed
        for completion in ("", "I am not sure.", "```python\n```"):
            g = grade_code("humaneval", it, completion)
            assert (g.correct, g.status) == (False, "no_code")


def test_humaneval_code_only_in_thinking_is_no_code_in_suite_mode(humaneval):
    it = humaneval.items[0]
    text = "<think>\n```python\n" + it.meta["prompt"] + it.meta["canonical_solution"] + "\n```\n</think>\nDone."
    assert grade_code("humaneval", it, text).status == "no_code"
    official = "<think>\n```python\n" + it.meta["canonical_solution"] + "```\n</think>\nDone."
    assert grade_code("humaneval", it, official, mode="official").status == "passed"


# ------------------------------------------------------------------------------------------------ MBPP

def test_mbpp_program_layout(mbpp):
    with_import = next(it for it in mbpp.items if it.meta["test_import"])
    suite = mbpp_program(with_import, "CODE", "suite")
    official = mbpp_program(with_import, "CODE", "official")
    tests = "\n".join(with_import.meta["test_list"])
    head = mbpp_header("CODE", tests)
    assert official == head + "CODE" + "\n" + tests
    assert suite == "\n".join(with_import.meta["test_import"]) + "\n" + head + "CODE" + "\n" + tests
    assert sum(1 for it in mbpp.items if it.meta["test_import"]) == 13
    # numpy and hashlib are imported eagerly exactly when the code or the tests name them; otherwise bound lazily
    assert "import numpy as np\n" not in head and "import hashlib\n" not in head
    assert "numpy = np = _softthink_lazy" in head and "hashlib = _softthink_lazy" in head
    assert mbpp_program(with_import, "x = np.zeros(3)", "official").count("import numpy as np\n") == 1
    assert "import hashlib\n" not in mbpp_program(with_import, "x = np.zeros(3)", "official")
    full = "import numpy\nimport hashlib"
    assert mbpp_program(with_import, full, "official") == MBPP_HEADER + full + "\n" + tests
    for line, (_, bind) in _MBPP_LAZY.items():   # the only change: each lazy line replaces its import line
        assert head.count(bind) == 1 and MBPP_HEADER.count(line) == 1


def test_mbpp_lazy_numpy_still_works_in_the_sandbox():
    """A program that reaches numpy without naming it gets the real module; no program pays for the import
    unless it uses numpy (the cost that kept MBPP grading near 13 programs/s)."""
    head = mbpp_header("", "")
    src = head + ("import sys\nassert 'numpy.core' not in sys.modules and 'numpy._core' not in sys.modules\n"
                  "mod = globals()['n' + 'p']\nassert int(mod.arange(4).sum()) == 6\n"
                  "assert isinstance(mod.zeros(2), numpy.ndarray) and sys.modules['numpy'] is mod\n"
                  "assert globals()['hash' + 'lib'].sha256(b'').hexdigest().startswith('e3b0c442')\n"
                  "assert '_softthink_lazy' not in globals()\n")
    assert run_program(src, timeout=30).status == "passed"
    assert run_program(MBPP_HEADER + "import sys\nassert 'numpy._core' in sys.modules\n", timeout=30).status == "passed"


@pytest.mark.parametrize("mode", ["suite", "official"])
def test_mbpp_reference_solutions_pass(mbpp, mode):
    tag = "python" if mode == "official" else "Python"
    pairs = [(it, fence(it.meta["code"], tag)) for it in mbpp.items]
    grades, _slow = _grade_all("mbpp", mbpp.items, pairs, mode)
    failing = {int(it.id): g.status for it, g in zip(mbpp.items, grades) if g.status != "passed"}
    assert set(failing) == set(MBPP_REFERENCE_EXPECTED_FAILURES), _failures(mbpp.items, grades)
    assert all(g.detail["entry_point"] for g in grades)


def test_mbpp_entry_point_name_error_is_counted(mbpp):
    items = mbpp.items[:12]
    pairs = []
    for it in items:
        entry = mbpp_entry_point(it)
        assert entry and (f"def {entry}" in it.meta["code"] or f"class {entry}" in it.meta["code"])
        pairs.append((it, fence(it.meta["code"].replace(entry, entry + "_renamed"))))
    grades = grade_code_many("mbpp", pairs, workers=WORKERS)
    counts = outcome_counts(grades)
    assert counts["runtime_error"] == 12 and counts["name_error_entry_point"] == 12
    # an ordinary failure is not counted as a name mismatch
    g = grade_code("mbpp", items[0], fence(f"def {mbpp_entry_point(items[0])}(*args):\n    return None\n"))
    assert g.status == "failed" and g.detail["name_error_entry_point"] is False


def test_mbpp_early_exit_is_not_a_pass(mbpp):
    it = mbpp.items[0]
    g = grade_code("mbpp", it, fence(it.meta["code"] + "\nimport sys\nsys.exit(0)\n"))
    assert (g.status, g.detail["exit0_without_checks"]) == ("failed", True)
