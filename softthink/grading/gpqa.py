"""GPQA grading: the answer letter A-D (docs/design/evaluation.md §3.1, docs/grading.md).

``suite``: letter rules in ``softthink.answers.gpqa_letters`` (boxed, ``"answer": "X"``, ``Answer: X``,
"answer is X", "I choose X", "(X) is correct", a trailing ``(X)``, a last line that is only the letter) on the
answer section; an answer naming two or more different options is a hedge and wrong. ``official``: math-verify
``StringExtractionConfig`` on the full text for both gold and prediction. Regex work: runs in the calling process.
"""
from __future__ import annotations

from typing import Any

from softthink.answers import answer_section, gpqa_letters
from softthink.grading.common import GRADER_VERSION, MODES, Grade
from softthink.grading.math import _math_verify_version, _mv, _raw


def extract_gpqa_letter(completion: str) -> tuple[str | None, dict[str, Any]]:
    """Suite GPQA letter extraction (rules in ``softthink.answers``). Returns (letter or None, detail); a hedge
    (two or more different letters) returns None with ``detail["hedge"]`` listing them."""
    section, has_end = answer_section(completion)
    detail: dict[str, Any] = {}
    if not has_end:
        detail["no_think_end"] = True
    letters, rule = gpqa_letters(section)
    detail["rule"] = rule
    if len(letters) > 1:
        detail["hedge"] = letters
        return None, detail
    return (letters[0] if letters else None), detail


def grade_gpqa(gold: str, completion: str, mode: str = "suite") -> Grade:
    """Grade one GPQA completion against ``gold`` (a letter A-D)."""
    gold = str(gold).strip()
    detail: dict[str, Any] = {"mode": mode, "gold": gold, "grader_version": GRADER_VERSION}
    if mode == "suite":
        letter, d = extract_gpqa_letter(completion)
        detail.update(d)
        if "hedge" in d:
            return Grade(correct=False, extracted=",".join(d["hedge"]), status="failed", detail=detail)
        if letter is None:
            return Grade(correct=False, status="no_answer", detail=detail)
        ok = letter == gold
        return Grade(correct=ok, extracted=letter, status="passed" if ok else "failed", detail=detail)
    if mode != "official":
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    mv, _ = _mv()
    cfg = [mv.StringExtractionConfig()]
    detail["math_verify"] = _math_verify_version()
    # letter regexes only: no pathological SymPy input, so math-verify's signal timeouts are switched off
    # (which also makes this safe off the main thread)
    g = mv.parse(gold, cfg, parsing_timeout=None)
    pred = mv.parse(completion, cfg, parsing_timeout=None)
    if not pred:
        return Grade(correct=False, status="no_answer", detail=detail)
    ok = bool(mv.verify(g, pred, timeout_seconds=None))
    return Grade(correct=ok, extracted=_raw(pred), status="passed" if ok else "failed", detail=detail)

