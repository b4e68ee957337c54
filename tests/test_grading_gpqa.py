"""GPQA letter extraction and grading (docs/design/evaluation.md §3.1). Synthetic questions only: no GPQA text here."""
from __future__ import annotations

import pytest

from softthink.data import Item
from softthink.grading import extract_gpqa_letter, grade, grade_many

T = "Considering each option in turn. </think>\n"

# (completion, letter extracted by the suite rules or None, rule that fired)
SUITE_CASES = [
    (T + "Answer: C", "C", "answer_colon"),
    (T + "answer:C", "C", "answer_colon"),
    (T + "Final Answer: (B)", "B", "answer_colon"),
    (T + "**Answer:** D", "D", "answer_colon"),  # markdown emphasis stripped
    (T + '"answer": "C"', "C", "json_answer"),
    (T + '{"Answer":"A"}', "A", "json_answer"),
    (T + '```json\n{"answer": "C"}\n```', "C", "json_answer"),
    (T + '"answer": C', "C", "json_answer"),
    (T + "\\boxed{C}", "C", "boxed"),
    (T + "\\boxed{\\text{C}}", "C", "boxed"),
    (T + "\\boxed{\\textbf{(B)}}", "B", "boxed"),
    (T + "\\boxed{C. the blue one}", "C", "boxed"),
    (T + "\\boxed{A)}", "A", "boxed"),
    (T + "So the answer is (C).", "C", "answer_is"),
    (T + "The correct option is **B**.", "B", "answer_is"),
    (T + "My choice is D", "D", "answer_is"),
    # last match wins within a rule
    (T + "Answer: A\nOn reflection... Answer: D", "D", "answer_colon"),
    # rule priority: a box beats a later "Answer:" line
    (T + "\\boxed{B}\nAnswer: C", "B", "boxed"),
    # a non-letter box falls through to the next rules
    (T + "\\boxed{42} so Answer: A", "A", "answer_colon"),
    # only the text after the LAST think end counts
    ("Answer: A </think> hmm Answer: B </think>\nAnswer: C", "C", "answer_colon"),
    # a trailing parenthesised letter ends the answer section
    (T + "Comparing the remaining candidates, the best match is (C).", "C", "trailing_paren"),
    (T + "So I pick **(B)**", "B", "choose"),
    (T + "After all that, the best match is **(B)**", "B", "trailing_paren"),
    (T + "(B) is tempting, but (A) and (D) fail; it must be (C)", "C", "trailing_paren"),
    # stray capitals are never matched
    (T + "A careful look at B and C shows nothing. I cannot decide.", None, "none"),
    (T + "Answer: Carbon", None, "none"),
    (T + "The answer is E", None, "none"),
    (T + "the answer is a bit unclear", None, "none"),
    # answer only in the thinking -> no answer
    ("I think Answer: B, so \\boxed{B}.</think>\nI am not sure.", None, "none"),
]


@pytest.mark.parametrize("completion,letter,rule", SUITE_CASES)
def test_suite_extraction_table(completion, letter, rule):
    got, detail = extract_gpqa_letter(completion)
    assert got == letter
    assert detail["rule"] == rule


HEDGES = ["Answer: A or C", '{"answer": "A, C"}', "\\boxed{A, C}", "\\boxed{\\text{A or C}}", "Answer: A/C",
          "The answer is (A) or (C).", '"answer": "A and C"', "Final answer: A, C."]


@pytest.mark.parametrize("answer", HEDGES)
@pytest.mark.parametrize("gold", ["A", "C"])
def test_a_hedge_between_options_is_wrong(answer, gold):
    g = grade("gpqa_diamond", _item(gold), T + answer)
    assert g.correct is False and g.status == "failed" and g.detail["hedge"] == ["A", "C"] and g.extracted == "A,C"


def test_a_letter_list_that_does_not_end_the_answer_is_not_a_hedge():
    letter, d = extract_gpqa_letter(T + "Answer: C, A is ruled out by the data.")
    assert letter == "C" and "hedge" not in d


def _item(gold="C"):
    return Item(id="0", index=0, question="Pick one.\n\nA. w\nB. x\nC. y\nD. z", answer=gold,
                meta={"choices": {"A": "w", "B": "x", "C": "y", "D": "z"}})


def test_grade_suite_statuses():
    assert grade("gpqa_diamond", _item("C"), T + '"answer": "C"').status == "passed"
    g = grade("gpqa_diamond", _item("C"), T + '"answer": "B"')
    assert g.correct is False and g.status == "failed" and g.extracted == "B"
    g = grade("gpqa_diamond", _item("C"), "Answer: C but no think end")
    assert g.correct and g.detail["no_think_end"] is True
    g = grade("gpqa_diamond", _item("C"), "Answer: C</think>\n")
    assert g.correct is False and g.status == "no_answer" and g.extracted is None
    # per-sample option order: the caller passes the permuted gold letter
    assert grade("gpqa_diamond", _item("C"), T + "Answer: A", gold="A").correct


# official approximation: StringExtractionConfig on the full text (§3.1 lists what it misses and matches)
OFFICIAL_CASES = [
    (T + "Answer: C", True),
    (T + '"answer": C', True),
    (T + '"answer": "C"', False),
    (T + '```json\n{"answer": "C"}\n```', False),
    (T + "\\boxed{C}", False),
    (T + "So the answer is (C).", False),
    ("Answer: C\n</think>\n", True),  # full text: the thinking counts
    (T + "Answer: B", False),
]


@pytest.mark.parametrize("completion,ok", OFFICIAL_CASES)
def test_official_approximation(completion, ok):
    g = grade("gpqa_diamond", _item("C"), completion, mode="official")
    assert g.correct is ok
    assert g.detail["mode"] == "official" and g.detail["math_verify"]


def test_grade_many_gpqa_in_order():
    items = [_item("A"), _item("B"), _item("C")]
    comps = [T + "Answer: A", T + "Answer: A", T + "nothing"]
    got = grade_many("gpqa_diamond", list(zip(items, comps)))
    assert [g.status for g in got] == ["passed", "failed", "no_answer"]
    off = grade_many("gpqa_diamond", list(zip(items, comps)), mode="official")
    assert [g.correct for g in off] == [True, False, False]
