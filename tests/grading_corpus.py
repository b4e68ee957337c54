"""A grading corpus built at test time from the shared datasets' gold answers (nothing of it is committed).

Every entry is a synthetic completion -- some thinking, ``</think>``, an answer section -- for one gold answer,
labelled with the verdict the benchmark intends: the answer the completion finally commits to after ``</think>``,
equal to the gold under mathematical equivalence, is correct; an answer only in the thinking, a different final
answer, or a hedge between options is wrong. Classes follow issue 10 (each way of stating a final answer, GPQA
letter forms and hedges, units, degrees, thousands separators, percent, bases with subscripts).

GPQA entries use only the gold letters of the dataset (no question or option text: GPQA must not be published).

    from grading_corpus import build_corpus
    entries = build_corpus(per_dataset=60, seed=0)   # list of Entry
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from softthink.data import load_dataset

THINK = ("Let me set up the problem. Suppose $x = 3$; then $2x + 1 = 7$, which does not match, so try "
         "$x = \\frac{5}{2}$ and check the constraint again. Computing $4 \\cdot 12 = 48$ and $48 - 13 = 35$. ")


@dataclass(frozen=True)
class Entry:
    cls: str           # the class of answer form (see build_corpus)
    dataset: str
    gold: str
    completion: str
    intended: bool     # the verdict the benchmark intends
    hedge: bool = False


_INT = re.compile(r"-?\d{1,3}(?:,\d{3})+|-?\d+")   # an integer, possibly with thousands separators


def _is_int(g: str) -> bool:
    return bool(_INT.fullmatch(g))


def _wrong_int(g: str) -> str:
    n = int(g.replace(",", ""))
    w = n + 7 if n % 2 else n + 1
    return f"{w:,}" if "," in g else str(w)


def _distinct(a: str, b: str) -> bool:
    """Two golds that are different answers (string and value differ; both non-numeric strings are compared
    as written, so e.g. ``\\frac12`` vs ``0.5`` never pairs up: one of them would need to be an integer)."""
    na, nb = re.sub(r"\s+", "", a), re.sub(r"\s+", "", b)
    return na != nb and not (_is_int(na) and _is_int(nb) and int(na.replace(',', '')) == int(nb.replace(',', '')))


def _think(rng: random.Random, extra: str = "") -> str:
    return THINK * rng.randint(1, 3) + extra + "\n</think>\n\n"


# ways of stating a final answer for every gold ({g}: the gold as written)
ANY_GOLD_FORMS = [
    ("boxed", "So the final answer is $\\boxed{{{g}}}$."),
    ("inline_math", "Putting everything together, we get ${g}$."),
    ("display_math", "Therefore the value is\n$$\n{g}\n$$"),
    ("display_bracket", "Hence\n\\[ {g} \\]"),
    ("answer_is_math", "The final answer is ${g}$."),
    ("answer_colon_math", "**Answer:** ${g}$"),
    ("inline_paren", "We conclude that the answer is \\({g}\\)."),
    ("display_next_line", "The final answer is:\n$$\n{g}\n$$"),
    ("last_of_several", "We have $a = 3$ and $b = 4$, so the result is ${g}$ as required."),
    ("bold_math", "The result is **${g}$**."),
]
# ... and for integer golds, in plain text too ({plain}: without thousands separators)
INTEGER_FORMS = [
    ("answer_is_text", "The answer is {g}."),
    ("answer_colon_text", "Answer: {g}"),
    ("bold", "So the total comes to **{g}**."),
    ("trailing_number", "Adding the two parts, the total is {g}"),
    ("trailing_number", "So the total is {g} in all."),
    ("decimal", "So the answer is $\\boxed{{{plain}.0}}$."),
]


def _math_entries(dataset: str, golds: list[str], rng: random.Random) -> list[Entry]:
    out: list[Entry] = []

    def add(cls: str, gold: str, answer: str, ok: bool, thinking: str = "", hedge: bool = False) -> None:
        out.append(Entry(cls, dataset, gold, _think(rng, thinking) + answer, ok, hedge))

    for k, g in enumerate(golds):
        intg = _is_int(g)
        if not intg and len(golds) > 1:   # a wrong final answer for a LaTeX gold: another item's gold
            o = golds[(k + 1) % len(golds)]
            if _distinct(g, o):
                add("wrong_other_gold", g, f"So the final answer is $\\boxed{{{o}}}$.", False,
                    thinking=f"$\\boxed{{{g}}}$ ")
        w = _wrong_int(g) if intg else None
        for cls, form in ANY_GOLD_FORMS:
            add(cls, g, form.format(g=g), True)
        add("thinking_only", g, "I could not finish the computation.", False, thinking=f"Maybe $\\boxed{{{g}}}$? ")
        if "=" not in g and "\\text" not in g:
            add("equation", g, f"Solving, we get $x = {g}$.", True)
        if intg:
            for cls, form in INTEGER_FORMS:
                add(cls, g, form.format(g=g, plain=g.replace(",", "")), True)
            add("wrong_final", g, f"So the final answer is $\\boxed{{{w}}}$.", False, thinking=f"\\boxed{{{g}}} ")
            add("wrong_inline", g, f"Putting everything together, we get ${w}$.", False, thinking=f"${g}$ ")
            add("self_correction", g, f"First I wrote $\\boxed{{{w}}}$. Wait, that is wrong; actually "
                                      f"$\\boxed{{{g}}}$.", True)
            add("hedge_math", g, f"The answer is ${g}$ or ${w}$.", False, hedge=True)
            add("hedge_math", g, f"The answer is ${w}$ or ${g}$.", False, hedge=True)
            add("hedge_boxes", g, f"Either $\\boxed{{{g}}}$ or $\\boxed{{{w}}}$.", False, hedge=True)
            add("hedge_text", g, f"The answer is {w} or {g}.", False, hedge=True)
            n = int(g.replace(",", ""))
            if abs(n) >= 1000:
                sep = f"{n:,}"
                add("thousands", g, f"So the answer is $\\boxed{{{sep}}}$.", True)
                add("thousands", g, f"The total is {sep}.", True)
                add("thousands", g, f"So we get ${sep.replace(',', '{,}')}$.", True)
                add("thousands", g, f"So we get $\\boxed{{{sep.replace(',', chr(92) + ',')}}}$.", True)
                add("thousands_wrong", g, f"So the answer is $\\boxed{{{n + 1000:,}}}$.", False)
            if dataset == "gsm8k" and n >= 0:
                add("percent", g, f"So the answer is $\\boxed{{{g}\\%}}$.", True)
                add("percent", g, f"The rate is ${g}\\%$.", True)
                add("units", g, f"She earns $\\boxed{{\\${g}}}$.", True)
                add("units", g, f"So the answer is $\\boxed{{{g} \\text{{ apples}}}}$.", True)
                add("units", g, f"In total she has {g} apples.", True)
                add("units", g, f"She earns \\${g} in total.", True)
                add("units", g, f"So she earns ${g}.", True)   # a lone currency sign, not math
                add("units_wrong", g, f"She earns $\\boxed{{\\${w}}}$.", False)
        m = re.fullmatch(r"(\d+)\^\\circ", g)
        if m:
            v = m.group(1)
            for form in (f"{v}^\\circ", f"{v}^{{\\circ}}", f"{v}\u00b0", f"{v}"):
                add("degrees", g, f"So the angle is $\\boxed{{{form}}}$.", True)
            add("degrees", g, f"The angle measures ${v}\u00b0$.", True)
            add("degrees_wrong", g, f"So the angle is $\\boxed{{{int(v) + 5}\u00b0}}$.", False)
        m = re.fullmatch(r"(\d+)_\{?(\d+)\}?", g)
        if m:
            d, b = m.groups()
            add("bases", g, f"In base {b} this is $\\boxed{{{d}_{b}}}$.", True)
            add("bases", g, f"In base {b} this is $\\boxed{{{d}_{{{b}}}}}$.", True)
            add("bases_wrong", g, f"So the answer is $\\boxed{{{d}_{int(b) + 1}}}$.", False)
            add("bases_wrong", g, f"So the answer is $\\boxed{{{int(d) + 1}_{b}}}$.", False)
    return out


_GPQA_CORRECT = [
    ("gpqa_answer_colon", "Answer: {x}"),
    ("gpqa_json", '"answer": "{x}"'),
    ("gpqa_json_fence", '```json\n{{"answer": "{x}"}}\n```'),
    ("gpqa_boxed", "The answer is $\\boxed{{{x}}}$."),
    ("gpqa_boxed_text", "$\\boxed{{\\text{{{x}}}}}$"),
    ("gpqa_answer_is", "So the answer is ({x})."),
    ("gpqa_trailing_paren", "Comparing the remaining candidates, the best match is ({x})."),
    ("gpqa_bold", "**Answer: {x}**"),
    ("gpqa_option_is", "The correct option is **{x}**."),
    ("gpqa_correct_option_colon", "Correct option: {x}"),
    ("gpqa_choose", "Weighing both effects, I choose {x}."),
    ("gpqa_correct_is", "Therefore, ({x}) is the correct answer."),
    ("gpqa_option_correct", "Option {x} is correct."),
    ("gpqa_letter_line", "After weighing everything:\n\n**{x}**"),
]
_GPQA_HEDGES = [
    "Answer: {x} or {y}",
    '{{"answer": "{x}, {y}"}}',
    "$\\boxed{{{x}, {y}}}$",
    "The answer is ({x}) or ({y}).",
    "Answer: {x}/{y}",
    '"answer": "{x} and {y}"',
    "I choose {x} or {y}.",
]


def _gpqa_entries(golds: list[str], rng: random.Random) -> list[Entry]:
    out: list[Entry] = []
    for g in golds:
        other = rng.choice([c for c in "ABCD" if c != g])
        think = _think(rng, f"Option ({other}) looks tempting. ")
        for cls, form in _GPQA_CORRECT:
            out.append(Entry(cls, "gpqa_diamond", g, think + form.format(x=g), True))
            out.append(Entry(cls + "_wrong", "gpqa_diamond", g, think + form.format(x=other), False))
        for form in _GPQA_HEDGES:
            for x, y in ((g, other), (other, g)):
                out.append(Entry("gpqa_hedge", "gpqa_diamond", g, think + form.format(x=x, y=y), False, True))
        out.append(Entry("gpqa_thinking_only", "gpqa_diamond", g,
                         THINK + f"Answer: {g}\n</think>\n\nI cannot decide between the options.", False))
        out.append(Entry("gpqa_thinking_right_final_wrong", "gpqa_diamond", g,
                         THINK + f"\\boxed{{{g}}}\n</think>\n\nAnswer: {other}", False))
    return out


def build_corpus(per_dataset: int = 60, seed: int = 0) -> list[Entry]:
    """Entries for a seeded sample of ``per_dataset`` golds of each math dataset (all golds with a degree sign or
    a base subscript and all GSM8K golds with thousands separators are always included) plus every GPQA gold."""
    rng = random.Random(seed)
    out: list[Entry] = []
    for name in ("aime2024", "aime2025", "amc23", "math500", "gsm8k"):
        golds = [str(it.answer).strip() for it in load_dataset(name).items]
        special = [g for g in golds if re.search(r"\^\\circ$|^\d+_\{?\d+\}?$|\d,\d{3}", g)]
        rest = [g for g in golds if g not in special]
        pick = rng.sample(rest, min(per_dataset, len(rest))) + special
        out += _math_entries(name, pick, rng)
    out += _gpqa_entries([str(it.answer).strip() for it in load_dataset("gpqa_diamond").items], rng)
    return out


ROOT = Path(__file__).resolve().parent.parent


def official_python() -> str | None:
    """An interpreter with the official pins: ``$SOFTTHINK_OFFICIAL_PYTHON`` or ``build/official-grader/bin/python``."""
    env = os.environ.get("SOFTTHINK_OFFICIAL_PYTHON")
    if env:
        return env
    local = ROOT / "build" / "official-grader" / "bin" / "python"
    return str(local) if local.exists() else None


def run_official_reference(jobs: list[tuple[str, str, str]]) -> list[bool]:
    """Verdicts of the official matheval.py (tests/official_reference.py) on its pins, math-verify 0.8.0 and
    latex2sympy2_extended 1.10.2, for ``(dataset, gold, completion)`` jobs; skips the test when no such
    interpreter is available."""
    import pytest

    py = official_python()
    if py is None:
        pytest.skip("no interpreter with math-verify 0.8.0 (SOFTTHINK_OFFICIAL_PYTHON; tests/official_reference.py)")
    versions = subprocess.run([py, "-c", "from importlib.metadata import version as v; "
                               "print(v('math-verify'), v('latex2sympy2_extended'))"],
                              capture_output=True, text=True, check=True).stdout.split()
    assert versions == ["0.8.0", "1.10.2"], versions
    out = subprocess.run([py, str(ROOT / "tests" / "official_reference.py")],
                         input=json.dumps([list(j) for j in jobs]), capture_output=True, text=True, check=True,
                         timeout=900).stdout
    return json.loads(out)
