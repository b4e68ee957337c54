"""Property tests of suite grading: a wrong final answer never passes because the right one appears in the
thinking; a hedge never passes; the right final answer passes whatever the thinking contains."""
from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from softthink.grading import grade_gpqa, grade_math  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ways the gold can appear in the thinking (all of them must be ignored)
THINK_FORMS = ["\\boxed{{{g}}}", "The answer is {g}.", "Answer: {g}", "**{g}**", "${g}$", "$$ {g} $$", "\\[{g}\\]",
               "so we get {g}", "final answer is $\\boxed{{{g}}}$"]
# ways to state a final answer in the answer section
FINAL_FORMS = ["\\boxed{{{g}}}", "The final answer is ${g}$.", "Answer: {g}", "So the total is **{g}**.",
               "Putting it together we get ${g}$.", "$$\n{g}\n$$", "\\[ {g} \\]", "The answer is {g}.",
               "So the total is {g}"]
HEDGE_FORMS = ["The answer is ${a}$ or ${b}$.", "$\\boxed{{{a}}}$ or $\\boxed{{{b}}}$",
               "$\\boxed{{{a} \\text{{ or }} {b}}}$", "The answer is {a} or {b}.", "So it is either ${a}$ or ${b}$"]
FILLER = st.text(alphabet="abcdefghij xyz=+-.,()\n", max_size=60)


def _thinking(draw, gold: str) -> str:
    parts = draw(st.lists(st.one_of(FILLER, st.sampled_from(THINK_FORMS).map(lambda f: f.format(g=gold))),
                          min_size=1, max_size=6))
    return " ".join(parts)


@st.composite
def math_case(draw):
    g = draw(st.integers(min_value=-500, max_value=100_000))
    w = g + draw(st.integers(min_value=1, max_value=50))
    return str(g), str(w), _thinking(draw, str(g))


@given(math_case(), st.sampled_from(FINAL_FORMS))
@SETTINGS
def test_wrong_final_answer_never_passes_by_the_thinking(case, form):
    g, w, think = case
    assert grade_math("aime2024", g, think + "\n</think>\n" + form.format(g=w)).correct is False
    assert grade_math("aime2024", g, think + "\n</think>\nI am not sure.").correct is False


@given(math_case(), st.sampled_from(FINAL_FORMS))
@SETTINGS
def test_right_final_answer_passes_whatever_the_thinking(case, form):
    g, w, think = case
    wrong_think = think.replace(g, w)
    assert grade_math("aime2024", g, wrong_think + "\n</think>\n" + form.format(g=g)).correct is True


@given(math_case(), st.sampled_from(HEDGE_FORMS), st.booleans())
@SETTINGS
def test_math_hedge_never_passes(case, form, gold_first):
    g, w, think = case
    a, b = (g, w) if gold_first else (w, g)
    got = grade_math("aime2024", g, think + "\n</think>\n" + form.format(a=a, b=b))
    assert got.correct is False and got.detail.get("hedge") is True


LETTER_HEDGES = ["Answer: {a} or {b}", '{{"answer": "{a}, {b}"}}', "\\boxed{{{a}, {b}}}",
                 "The answer is ({a}) or ({b}).", "Answer: {a}/{b}", '"answer": "{a} and {b}"',
                 "\\boxed{{\\text{{{a} or {b}}}}}", "Answer: {a} and/or {b}"]
LETTER_FINAL = ["Answer: {a}", '"answer": "{a}"', "\\boxed{{{a}}}", "So the answer is ({a}).",
                "The best match is ({a}).", "**Answer: {a}**"]


@st.composite
def letters(draw):
    gold = draw(st.sampled_from("ABCD"))
    other = draw(st.sampled_from([c for c in "ABCD" if c != gold]))
    think = " ".join(draw(st.lists(st.one_of(FILLER, st.sampled_from(LETTER_FINAL).map(lambda f: f.format(a=gold))),
                                   min_size=1, max_size=5)))
    return gold, other, think


@given(letters(), st.sampled_from(LETTER_HEDGES), st.booleans())
@SETTINGS
def test_gpqa_hedge_never_passes(case, form, gold_first):
    gold, other, think = case
    a, b = (gold, other) if gold_first else (other, gold)
    got = grade_gpqa(gold, think + "\n</think>\n" + form.format(a=a, b=b))
    assert got.correct is False and got.detail.get("hedge") == sorted({a, b})


@given(letters(), st.sampled_from(LETTER_FINAL))
@SETTINGS
def test_gpqa_wrong_letter_never_passes_by_the_thinking(case, form):
    gold, other, think = case
    assert grade_gpqa(gold, think + "\n</think>\n" + form.format(a=other)).correct is False
    assert grade_gpqa(gold, think + "\n</think>\n" + form.format(a=gold)).correct is True
