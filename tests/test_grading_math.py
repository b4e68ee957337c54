"""Math rule grading: suite vs official extraction, math-verify pitfalls, and the killable pool."""
from __future__ import annotations

import threading

import pytest

from grading_corpus import run_official_reference
from softthink import grading
from softthink.data import Item, load_dataset
from softthink.grading import Grade, MathGradePool, grade, grade_many


def _item(answer: str) -> Item:
    return Item(id="0", index=0, question="q", answer=answer)


T = "Let me think... </think>\n"  # a finished thinking block

# (dataset, gold, completion, suite verdict, official verdict)
CASES = [
    # fractions and \dfrac
    ("math500", "\\frac{1}{2}", T + "So the answer is \\boxed{\\dfrac{1}{2}}.", True, True),
    ("math500", "\\frac{1}{2}", T + "\\boxed{0.5}", True, True),
    ("math500", "\\frac{1}{2}", T + "\\boxed{\\frac{1}{3}}", False, False),
    ("math500", "\\frac{\\sqrt{3}}{2}", T + "\\boxed{\\dfrac{\\sqrt3}{2}}", True, False),  # malformed_operators=False
    # units
    ("math500", "90^\\circ", T + "The angle is \\boxed{90^\\circ}.", True, True),
    ("math500", "90^\\circ", T + "\\boxed{90}", True, True),
    ("math500", "90^\\circ", T + "\\boxed{45^\\circ}", False, False),
    ("math500", "5\\text{ cm}", T + "\\boxed{5 \\text{ cm}}", True, True),
    ("math500", "5\\text{ cm}", T + "\\boxed{6\\text{ cm}}", False, False),
    # intervals, sets, tuples, text
    ("math500", "(-\\infty, 2]", T + "\\boxed{(-\\infty, 2]}", True, True),
    ("math500", "(-\\infty, 2]", T + "\\boxed{(-\\infty, 2)}", False, False),
    ("math500", "\\{1,2\\}", T + "\\boxed{\\{2, 1\\}}", True, True),
    ("math500", "\\{1,2\\}", T + "\\boxed{\\{1, 3\\}}", False, False),
    ("math500", "\\left( 3, \\frac{\\pi}{2} \\right)", T + "\\boxed{\\left(3,\\frac{\\pi}{2}\\right)}", True, True),
    ("math500", "\\left( 3, \\frac{\\pi}{2} \\right)", T + "\\boxed{(3, \\pi)}", False, False),
    ("math500", "\\text{Evelyn}", T + "\\boxed{\\text{Evelyn}}", True, True),
    ("math500", "\\text{Evelyn}", T + "\\boxed{\\text{Bob}}", False, False),
    # several boxes: suite takes the last one; official merges them into the set {3, 5}, which fails (§2.4)
    ("aime2024", "5", T + "First \\boxed{3}. Wait, actually \\boxed{5}", True, False),
    ("aime2024", "3", T + "First \\boxed{3}. Wait, actually \\boxed{5}", False, False),
    # nested braces inside the box
    ("math500", "\\frac{3}{4}", T + "\\boxed{\\frac{3}{{4}}}", True, True),
    ("aime2024", "7", T + "\\boxed{\\boxed{7}}", True, True),
    # answer only inside the thinking: suite scores the answer section, official the full text
    ("aime2024", "33", "I get \\boxed{33}.</think>\n", False, True),
    ("aime2024", "33", "I get \\boxed{33}.</think>\nThe final answer is \\boxed{34}.", False, False),
    # several think ends: the answer section starts after the LAST one
    ("aime2024", "12", "a</think>\\boxed{12} hmm</think>\\boxed{13}", False, False),
    ("aime2024", "13", "a</think>\\boxed{12} hmm</think>\\boxed{13}", True, True),
    # gsm8k thousands separators, both directions
    ("gsm8k", "2,125", T + "\\boxed{2,125}", True, True),
    ("gsm8k", "2,125", T + "\\boxed{2125}", True, True),
    ("gsm8k", "2125", T + "\\boxed{2,125}", True, True),
    ("gsm8k", "2,125", T + "\\boxed{2,126}", False, False),
    ("gsm8k", "18", T + "She makes \\boxed{\\$18}.", True, True),
    # percent: math-verify 0.9.0 reads 64\% as 64 (suite); the official pins (0.8.0) compare 16/25 with 64
    ("gsm8k", "64", T + "So the answer is \\boxed{64\\%}.", True, False),
    ("math500", "64", T + "So the answer is \\boxed{64\\%}.", True, False),
    ("math500", "10\\%", T + "\\boxed{10}", True, False),
    ("math500", "10\\%", T + "\\boxed{10\\%}", True, True),
    ("gsm8k", "0.64", T + "\\boxed{64\\%}", True, True),
    ("gsm8k", "65", T + "\\boxed{64\\%}", False, False),
    ("gsm8k", "2,125", T + "\\boxed{2,125\\%}", True, False),
    # degrees: ^\circ and the unicode sign (math-verify alone cannot parse 90°)
    ("math500", "90^\\circ", T + "\\boxed{90°}", True, False),
    ("math500", "90^\\circ", T + "The angle is $90°$.", True, True),
    ("math500", "90^\\circ", T + "\\boxed{91°}", False, False),
    # bases: the subscript must match (upstream drops it, so the official grader accepts a wrong base)
    ("math500", "52_8", T + "\\boxed{52_8}", True, True),
    ("math500", "52_8", T + "\\boxed{52_{8}}", True, True),
    ("math500", "52_8", T + "\\boxed{52_9}", False, True),
    ("math500", "4210_{5}", T + "\\boxed{4210_5}", True, True),
    ("math500", "4210_{5}", T + "\\boxed{4210_{6}}", False, True),
    # final answers without a box after </think>
    ("aime2024", "64", T + "... so we get $64$.", True, True),
    ("math500", "\\frac{1}{2}", T + "Therefore\n$$\n\\frac{1}{2}\n$$", True, False),  # official: no anchor
    ("math500", "\\frac{1}{2}", T + "Hence \\[\\frac12\\]", True, False),  # official: no anchor
    ("gsm8k", "1250", T + "So she pays 1,250 dollars.", True, True),
    ("gsm8k", "18", T + "She earns $18.", True, True),
    # hedges are wrong whichever option is the gold
    ("aime2024", "12", T + "The answer is $12$ or $13$.", False, False),
    ("aime2024", "13", T + "The answer is $12$ or $13$.", False, False),
    ("aime2024", "12", T + "\\boxed{12} or \\boxed{13}", False, False),
    # negative amc answers
    ("amc23", "-3", T + "\\boxed{-3}", True, True),
    ("amc23", "-3", T + "\\boxed{3}", False, False),
    # a statement without a box; a trailing number after </think> is the committed answer (suite rule 5), but
    # without a think end (a truncated text) only boxes and statements count: no lucky last number
    ("math500", "\\frac{\\sqrt{3}}{2}", T + "The answer is $\\frac{\\sqrt{3}}{2}$.", True, True),
    ("aime2024", "13", T + "maybe 12 then 13", True, True),
    ("aime2024", "13", "maybe 12 then 13", False, True),
    # known math-verify pitfalls kept as regressions
    ("math500", "\\frac13", T + "\\boxed{0.\\overline{3}}", False, False),
    ("aime2025", "033", T + "\\boxed{33}", True, True),
]


def test_official_column_is_the_official_code_on_its_pins():
    """The table's official column, checked against the official matheval.py on math-verify 0.8.0 when such an
    interpreter is available (tests/official_reference.py)."""
    ref = run_official_reference([(ds, g, c) for ds, g, c, _, _ in CASES])
    assert [o for *_, o in CASES] == ref


@pytest.mark.parametrize("dataset,gold,completion,suite,official", CASES)
def test_math_table(dataset, gold, completion, suite, official):
    g = grade(dataset, _item(gold), completion)
    assert g.correct is suite, g
    assert (g.status == "passed") is suite and g.detail["mode"] == "suite"
    o = grade(dataset, _item(gold), completion, mode="official")
    assert o.correct is official, o
    assert o.detail["mode"] == "official" and o.detail["math_verify"]


def test_suite_paths_are_recorded():
    g = grade("aime2024", _item("5"), T + "\\boxed{5}")
    assert g.detail["path"] == "boxed" and g.detail["boxed"] == "5" and g.extracted == "5"
    assert "no_think_end" not in g.detail
    g = grade("aime2024", _item("5"), T + "The final answer is 5.")
    assert g.detail["path"] == "statement" and g.correct
    g = grade("aime2024", _item("5"), T + "So we get $5$.")
    assert g.detail["path"] == "math" and g.correct and g.extracted == "5"
    g = grade("aime2024", _item("5"), T + "So **5** apples remain.")
    assert g.detail["path"] == "bold" and g.correct
    g = grade("aime2024", _item("5"), T + "That leaves 5 apples")
    assert g.detail["path"] == "number" and g.correct
    g = grade("aime2024", _item("5"), T + "It is $5$ or $6$.")
    assert g.detail["hedge"] is True and g.status == "failed" and not g.correct
    g = grade("aime2024", _item("5"), T + "I ran out of ideas.")
    assert g.status == "no_answer" and g.correct is False and g.extracted is None and g.detail["path"] == "none"
    g = grade("aime2024", _item("5"), "no think end here \\boxed{5}")
    assert g.correct and g.detail["no_think_end"] is True
    g = grade("math500", _item("5"), T + "\\boxed{ }")  # an empty box: flagged, then the other rules
    assert g.detail["box_unparsed"] is True and g.detail["path"] == "none" and g.status == "no_answer"


def test_official_mode_records_version_and_no_answer():
    o = grade("gsm8k", _item("4"), "nothing numeric here", mode="official")
    assert o.status == "no_answer" and o.correct is False
    assert o.detail["math_verify"] == "0.9.0" and o.detail["grader_version"] == grading.GRADER_VERSION


def test_gold_override_and_bad_mode():
    assert grade("aime2024", _item("480"), T + "\\boxed{197}", gold="197").correct
    with pytest.raises(ValueError):
        grade("aime2024", _item("1"), "x", mode="lenient")
    with pytest.raises(KeyError):
        grade("mmlu", _item("1"), "x")


def test_boxed_helpers():
    assert grading.last_boxed("\\boxed{1} and \\boxed{2}") == "2"
    assert grading.last_boxed("\\boxed{a{b}c} \\boxed{3") == "a{b}c"  # a truncated last box is skipped
    assert grading.last_boxed("\\boxed{\\{1\\}}") == "\\{1\\}"
    assert grading.last_boxed("no box") is None
    assert grading.answer_section("a</think>b</think>c") == ("c", True)
    assert grading.answer_section("abc") == ("abc", False)


def test_in_process_math_needs_main_thread():
    out = {}

    def worker():
        try:
            grade("aime2024", _item("1"), "\\boxed{1}")
        except RuntimeError as e:
            out["err"] = str(e)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert "main thread" in out["err"]


# ------------------------------------------------------------------------------------------------ pool

def test_pool_matches_in_process_and_keeps_order():
    entries = [(_item(g), c) for ds, g, c, _, _ in CASES if ds == "math500"]
    with MathGradePool(2) as pool:
        assert pool.context in ("forkserver", "spawn")
        got = grade_many("math500", entries, pool=pool)
        got_off = grade_many("math500", entries, mode="official", pool=pool)
    want = [grade("math500", it, c) for it, c in entries]
    assert [g.correct for g in got] == [g.correct for g in want]
    assert [g.detail.get("path") for g in got] == [g.detail.get("path") for g in want]
    assert [g.correct for g in got_off] == [s for ds, _, _, _, s in CASES if ds == "math500"]


def test_pool_kills_a_hanging_job_and_carries_on():
    with MathGradePool(1, timeout=1.0) as pool:
        res = pool.run(grading._hang_job, [(60,), (0,)])
        assert res[0].status == "timeout" and res[0].correct is False
        assert res[0].detail["outer_timeout_s"] == 1.0
        assert res[1].status == "passed"  # the replacement worker ran the next job
        after = pool.grade("gsm8k", [("3", T + "\\boxed{3}"), ("4", T + "\\boxed{5}")])
    assert [g.status for g in after] == ["passed", "failed"]


def test_pool_never_loses_an_item_a_serial_run_grades(tmp_path):
    """Jobs that hang only while another job runs (contention) time out in the parallel pass and are graded
    in the retry, one at a time; a job that hangs alone still scores timeout."""
    lock = str(tmp_path / "lock")
    with MathGradePool(3, timeout=1.5) as pool:
        # the lock holder keeps it 1 s, so a job that starts beside it (even on a loaded machine) hangs and times out
        res = pool.run(grading._contended_job, [(lock, 1.0)] * 3)
        assert [g.status for g in res] == ["passed"] * 3  # nothing lost
        assert sum(bool(g.detail.get("retried_alone_after_timeout")) for g in res) >= 1  # the retry ran
        res = pool.run(grading._hang_job, [(60,), (0,)])
    assert res[0].status == "timeout" and res[0].detail["retried_alone_after_timeout"] and res[1].status == "passed"


def test_pool_sends_only_the_answer_section_in_suite_mode():
    long = "x" * 100_000 + "</think>\\boxed{3}"
    assert grading._payload(long, "suite") == "</think>\\boxed{3}"
    assert grading._payload(long, "official") == long and grading._payload("\\boxed{3}", "suite") == "\\boxed{3}"
    with MathGradePool(1) as pool:
        got = pool.grade("gsm8k", [("3", "\\boxed{4}" + long), ("3", "no end \\boxed{3}")])
    assert [g.correct for g in got] == [True, True] and got[1].detail["no_think_end"] is True


def test_pool_rejects_fork():
    with pytest.raises(ValueError, match="fork"):
        MathGradePool(1, context="fork")


def test_grade_many_three_tuples_and_empty():
    items = [_item("1"), _item("2")]
    got = grade_many("aime2025", [(items[0], T + "\\boxed{9}", "9"), (items[1], T + "\\boxed{2}", None)], workers=1)
    assert [g.correct for g in got] == [True, True]
    assert grade_many("aime2025", []) == []
    assert all(isinstance(g, Grade) for g in got)


def test_all_gsm8k_gold_answers_grade_correct():
    """All 1,319 GSM8K golds (14 with thousands separators), boxed after a think end, through the pool."""
    items = load_dataset("gsm8k").items
    entries = [(it, f"Reasoning.\n</think>\nThe answer is \\boxed{{{it.answer}}}.") for it in items]
    grades = grade_many("gsm8k", entries, workers=2)
    bad = [(it.answer, g.status) for it, g in zip(items, grades) if not g.correct]
    assert len(grades) == 1319 and not bad
    assert all(g.detail["path"] == "boxed" for g in grades)
    # and a shifted gold is wrong for every item (the check can fail)
    wrong = grade_many("gsm8k", [(it, c, "987654321") for it, c in entries[:50]], workers=2)
    assert not any(g.correct for g in wrong)


# ------------------------------------------------------------------------------------------------ dispatch

def test_code_datasets_dispatch_to_code_grading(monkeypatch):
    from softthink.grading import code

    calls = []

    def fake_grade_code(dataset, item, completion, *, mode="suite"):
        calls.append((dataset, completion, mode))
        return Grade(correct=True, status="passed")

    monkeypatch.setattr(code, "grade_code", fake_grade_code)
    item = Item(id="HumanEval/0", index=0, question="def f(): ...", answer={})
    assert grade("humaneval", item, "```python\npass\n```", mode="official").status == "passed"
    assert [g.status for g in grade_many("mbpp", [(item, "a"), (item, "b")], workers=1)] == ["passed", "passed"]
    assert calls == [("humaneval", "```python\npass\n```", "official"), ("mbpp", "a", "suite"), ("mbpp", "b", "suite")]
