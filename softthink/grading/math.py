"""Math grading with math-verify: ``grade_math`` in this process, :class:`MathGradePool` for batches.

docs/design/evaluation.md §2.3/§2.4, docs/grading.md. The gold is parsed as the dataset's registry entry says
(``softthink.data.DATASETS[name].grader``): ``math_expr`` as an expression (aime, gsm8k), ``math_latex`` as ``$gold$``
LaTeX (math500, amc23); always ``verify(gold, pred)`` (the function is asymmetric).

* ``suite`` (default): answer section = text after the LAST ``</think>`` (absent: flag ``no_think_end``, use the
  full text); candidates from ``softthink.answers.math_candidates`` in order of preference -- ``boxed``,
  ``statement`` ("answer is", ``Answer:``), ``bold``, ``math`` (last inline/display expression), ``number``
  (trailing number); the last three only with a think end -- pre-normalised (degree sign, thousands separators,
  bare ``%``) and parsed with math-verify's default normalisation; the first that parses is graded
  (``detail["path"]``). A hedge ("$12$ or $13$") is wrong; a base subscript must match the gold's. Else
  ``no_answer``.
* ``official``: the official ``matheval.py`` configuration on the FULL text (thinking included): LaTeX with
  ``malformed_operators=False, nits=False``, ``boxed_match_priority=0``, no unanchored LaTeX, plus an unanchored
  ``ExprExtractionConfig``; ``extraction_mode="first_match"``; ``verify`` with math-verify 0.8.0's percentage
  comparison (the official pins), see :func:`_numeric_eq_080`.

math-verify's internal timeouts use ``signal.alarm`` (main thread only) and do not always fire, so batch math
grading runs in a killable ``pebble.ProcessPool`` (forkserver/spawn, never fork) whose workers pre-import
math-verify; every item has an outer timeout (30 s) after which it scores ``correct=False, status="timeout"`` and
pebble replaces the worker. Workers get the gold format, not the dataset name, so they need no registry lookup.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import re
import sys
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Iterable, Sequence

from softthink.answers import THINK_END, answer_section, math_candidates
from softthink.data import DATASETS
from softthink.grading.common import GRADER_VERSION, MODES, Grade

OUTER_TIMEOUT_S = 30.0
PARSE_TIMEOUT_S = 5
VERIFY_TIMEOUT_S = 5


# ------------------------------------------------------------------------------------------------ math

@functools.lru_cache(maxsize=1)
def _mv() -> Any:
    """math-verify and its config classes, imported once (workers call it from the initializer)."""
    import math_verify
    from latex2sympy2_extended import NormalizationConfig

    return math_verify, NormalizationConfig


@functools.lru_cache(maxsize=1)
def _math_verify_version() -> str:
    from importlib.metadata import version

    try:
        return version("math-verify")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


@functools.lru_cache(maxsize=4)
def _pred_configs(mode: str, anchored_only: bool) -> list[Any]:
    mv, Norm = _mv()
    if mode == "official":
        return [
            mv.LatexExtractionConfig(
                normalization_config=Norm(nits=False, malformed_operators=False, basic_latex=True, boxed="all",
                                          units=True),
                boxed_match_priority=0,
                try_extract_without_anchor=False,
            ),
            mv.ExprExtractionConfig(),
        ]
    return [mv.LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=not anchored_only),
            mv.ExprExtractionConfig(try_extract_without_anchor=not anchored_only)]


def gold_format(dataset: str) -> str:
    """``math_expr`` or ``math_latex``: how the gold of ``dataset`` is parsed (its registry entry; LaTeX when the
    name is not registered, as before the registry)."""
    spec = DATASETS.get(dataset)
    return spec.grader if spec is not None and spec.kind == "math" else "math_latex"


@functools.lru_cache(maxsize=4096)
def _parse_gold(fmt: str, gold: str) -> list[Any]:
    mv, _ = _mv()
    gold = str(gold).strip()
    if fmt == "math_expr":
        return mv.parse(gold, [mv.ExprExtractionConfig()], parsing_timeout=PARSE_TIMEOUT_S)
    if not gold.startswith("$"):
        gold = f"${gold}$"
    return mv.parse(gold, [mv.LatexExtractionConfig()], parsing_timeout=PARSE_TIMEOUT_S)


def _raw(parsed: list[Any]) -> str | None:
    """math-verify returns [sympy..., raw string]; the raw string is the extracted answer text."""
    if not parsed:
        return None
    return str(parsed[-1]) if isinstance(parsed[-1], str) else str(parsed[0])


# number with a base subscript: 52_8, 4210_{5}, 1011_{(2)}
_BASE_RE = re.compile(r"([0-9A-Za-z]+)\s*_\s*\{?\(?\s*(\d+)\s*\)?\}?")
_DIGIT_SPACE = re.compile(r"(?<=\d)\s*\\[,;!]\s*(?=\d{3}\b)|(?<=\d)\{,\}(?=\d{3})")
# one thousands-separated number with a prefix/suffix (x =, \$, %, units): "2,125\%" would otherwise read as {2, 125%}
_GROUPED = re.compile(r"((?:[A-Za-z]\w*\s*=\s*)?(?:\\\$|\$)?\s*-?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?)"
                      r"((?:\s*(?:\\%|\^\\circ|\\text\s*\{[^{}]*\}|[A-Za-z ]+))*)")


def _normalize_answer(s: str) -> str:
    """Suite pre-normalisation of an extracted answer before math-verify: unicode degree sign, LaTeX thousands
    separators (``1{,}000``, ``1\\,000``), a bare ``%``, trailing punctuation."""
    s = s.strip().rstrip(".;,").strip()
    s = s.replace("\u00b0", "^\\circ").replace("\\degree", "^\\circ").replace("^{\\circ}", "^\\circ")
    s = _DIGIT_SPACE.sub(lambda m: "," if "{,}" in m.group(0) else "", s)
    s = re.sub(r"(?<!\\)%", r"\\%", s)
    m = _GROUPED.fullmatch(s)
    if m and (m.group(1).strip() or m.group(3).strip()):
        s = m.group(1) + m.group(2).replace(",", "") + m.group(3)
    return s


def _bases(s: str) -> list[tuple[str, str]]:
    return [(d.lstrip("0") or "0", b) for d, b in _BASE_RE.findall(s)]


def _parse_candidate(cand: Any) -> list[Any]:
    mv, _ = _mv()
    text = _normalize_answer(cand.text)
    if not text:
        return []
    if cand.latex:
        return mv.parse("$" + text + "$", _pred_configs("suite", False), extraction_mode="first_match",
                        parsing_timeout=PARSE_TIMEOUT_S)
    # plain text ("64 dollars", "1,250"): a bare number is read as such, anything else unanchored
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d*\.?\d+", text):
        return mv.parse(text, [mv.ExprExtractionConfig()], parsing_timeout=PARSE_TIMEOUT_S)
    return mv.parse(text, _pred_configs("suite", False), extraction_mode="first_match",
                    parsing_timeout=PARSE_TIMEOUT_S)


def _suite_extract(gold: str, completion: str, detail: dict[str, Any]) -> tuple[list[Any], str | None]:
    """(parsed prediction, failure status or None) from the first candidate that parses (softthink.answers)."""
    section, has_end = answer_section(completion)
    if not has_end:
        detail["no_think_end"] = True
    for cand in math_candidates(section, has_end):
        detail["path"] = cand.path
        if cand.path == "boxed":
            detail["boxed"] = cand.text
        if cand.hedge:
            detail["hedge"] = True
            detail["candidate"] = cand.text[:200]
            return [], "failed"
        pred = _parse_candidate(cand)
        if pred:
            gold_bases = _bases(gold)
            pred_bases = _bases(cand.text)
            if gold_bases and pred_bases and pred_bases != gold_bases:
                detail["base_mismatch"] = [list(b) for b in pred_bases]
                detail["pred"] = [str(p) for p in pred]
                return pred, "failed"
            return pred, None
        if cand.path == "boxed":
            detail["box_unparsed"] = True
    detail["path"] = "none"
    return [], None


@functools.lru_cache(maxsize=1)
def _numeric_eq_080() -> Callable[..., bool]:
    """math-verify 0.8.0's numeric comparison, rebuilt on the installed 0.9.x: 0.9.0 added an integer branch that
    reads ``64\\%`` as 64 (``9% == 9``); 0.8.0 compares a percentage by value (``64\\% = 16/25 != 64``), so the
    official matheval.py on its pins rejects ``\\boxed{64\\%}`` against gold 64."""
    from math_verify import grader as g

    orig = g.sympy_numeric_eq
    pct = getattr(g, "get_pct_val", None)

    def eq(a: Any, b: Any, float_rounding: int, numeric_precision: int) -> bool:
        if pct is not None and (pct(a) is not None or pct(b) is not None) \
                and g.is_atomic_or_pct_atomic(a, g.Integer) and g.is_atomic_or_pct_atomic(b, g.Integer):
            return g.safe_sympy_doit(a) == g.safe_sympy_doit(b)
        return orig(a, b, float_rounding, numeric_precision)

    eq.orig = orig  # type: ignore[attr-defined]
    return eq


def _verify_official(gold_parsed: list[Any], pred: list[Any]) -> bool:
    """``verify`` with the official pins' semantics (see :func:`_numeric_eq_080`); main thread only, like verify."""
    mv, _ = _mv()
    from math_verify import grader as g

    if not _math_verify_version().startswith("0.9"):
        return bool(mv.verify(gold_parsed, pred, timeout_seconds=VERIFY_TIMEOUT_S))
    eq = _numeric_eq_080()
    g.sympy_numeric_eq = eq
    try:
        return bool(mv.verify(gold_parsed, pred, timeout_seconds=VERIFY_TIMEOUT_S))
    finally:
        g.sympy_numeric_eq = eq.orig  # type: ignore[attr-defined]


def grade_math(dataset: str, gold: str, completion: str, mode: str = "suite") -> Grade:
    """Grade one math completion in this process (main thread only: math-verify uses ``signal.alarm``)."""
    return _grade_math(gold_format(dataset), gold, completion, mode)


def _grade_math(fmt: str, gold: str, completion: str, mode: str) -> Grade:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    mv, _ = _mv()
    detail: dict[str, Any] = {"mode": mode, "gold": str(gold), "math_verify": _math_verify_version(),
                              "grader_version": GRADER_VERSION}
    gold_parsed = _parse_gold(fmt, str(gold))
    if not gold_parsed:
        detail["error"] = "gold did not parse"
        return Grade(correct=None, status="grader_error", detail=detail)

    if mode == "official":
        pred = mv.parse(completion, _pred_configs("official", anchored_only=False), extraction_mode="first_match",
                        parsing_timeout=PARSE_TIMEOUT_S)
        detail["path"] = "official"
        detail["semantics"] = "math-verify 0.8.0 / latex2sympy2_extended 1.10.2"
    else:
        pred, fail = _suite_extract(str(gold), completion, detail)
        if fail is not None:
            return Grade(correct=False, extracted=_raw(pred) if pred else detail.get("candidate"), status=fail,
                         detail=detail)

    extracted = _raw(pred)
    if not pred:
        return Grade(correct=False, extracted=None, status="no_answer", detail=detail)
    detail["pred"] = [str(p) for p in pred]
    if mode == "official":
        ok = _verify_official(gold_parsed, pred)
    else:
        ok = bool(mv.verify(gold_parsed, pred, timeout_seconds=VERIFY_TIMEOUT_S))
    return Grade(correct=ok, extracted=extracted, status="passed" if ok else "failed", detail=detail)


# ------------------------------------------------------------------------------------------------ pool

def _worker_init() -> None:
    """Pool initializer: import math-verify (and its ANTLR parser) once per worker."""
    mv, _ = _mv()
    mv.parse("$1$", [mv.LatexExtractionConfig()])


def _math_job(fmt: str, gold: str, completion: str, mode: str) -> Grade:
    try:
        return _grade_math(fmt, gold, completion, mode)
    except BaseException as e:  # math-verify's TimeoutException is a BaseException
        return Grade(correct=False, status="grader_error",
                     detail={"mode": mode, "error": f"{type(e).__name__}: {e}", "grader_version": GRADER_VERSION})


def _payload(completion: str, mode: str) -> str:
    """What a worker needs to grade ``completion``: suite mode reads only the answer section (same verdict)."""
    if mode != "suite":
        return completion
    pos = completion.rfind(THINK_END)
    return completion if pos < 0 else completion[pos:]


def _contended_job(lock_path: str, seconds: float) -> Grade:
    """Test hook: quick when it runs alone, hangs while another job holds ``lock_path`` (stands in for an item
    that only a busy machine pushes past the outer timeout)."""
    import fcntl
    import time

    with open(lock_path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(600)
        time.sleep(seconds)
    return Grade(correct=True, status="passed", detail={"slept": seconds})


def _hang_job(seconds: float) -> Grade:  # test hook: a job that outlives the outer timeout
    import time

    time.sleep(seconds)
    return Grade(correct=True, status="passed", detail={"slept": seconds})


def default_context() -> str:
    """``forkserver`` on Linux (cheap worker replacement, no fork of the caller), ``spawn`` elsewhere."""
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


class MathGradePool:
    """A reusable killable pool for math grading (``with MathGradePool(2) as pool: pool.grade(...)``)."""

    def __init__(self, workers: int | None = None, *, timeout: float = OUTER_TIMEOUT_S, context: str | None = None):
        import pebble

        context = context or default_context()
        if context == "fork":
            raise ValueError("fork is not allowed for grading pools (docs/design/evaluation.md §2.4); use forkserver or spawn")
        ctx = multiprocessing.get_context(context)
        if context == "forkserver":
            # takes effect only if this process has not started its fork server yet
            ctx.set_forkserver_preload(["softthink.grading.math", "math_verify"])
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.context = context
        self._pool = pebble.ProcessPool(max_workers=self.workers, initializer=_worker_init, context=ctx)

    def grade(self, dataset: str, jobs: Iterable[tuple[Any, str]], mode: str = "suite") -> list[Grade]:
        """Grade (gold, completion) pairs of one math dataset; results in input order. Suite mode reads only the
        answer section, so only ``</think>`` + that section travels to the worker (a 32k-token thinking does not)."""
        spec = DATASETS.get(dataset)
        if spec is None or spec.kind != "math":
            raise ValueError(f"MathGradePool grades math datasets only, not {dataset!r}")
        return self.run(_math_job, [(spec.grader, str(g), _payload(c, mode), mode) for g, c in jobs], mode=mode)

    def run(self, fn: Callable[..., Grade], arglist: Sequence[tuple], mode: str = "suite") -> list[Grade]:
        """Schedule ``fn(*args)`` for each args (``fn`` must be importable); timeouts and crashes become Grades.

        An item that hits the outer timeout while other items ran beside it is graded again alone (one item in
        the pool at a time, same timeout): on a busy machine a parallel run can push an item over the limit that a
        serial run grades, and the pool must not lose it. Only a second timeout scores ``timeout``."""
        futures = [self._pool.schedule(fn, args=args, timeout=self.timeout) for args in arglist]
        out = [self._collect(fut, mode) for fut in futures]
        if len(arglist) > 1 and self.workers > 1:
            for i, g in enumerate(out):
                if g.status == "timeout":
                    again = self._collect(self._pool.schedule(fn, args=arglist[i], timeout=self.timeout), mode)
                    again.detail["retried_alone_after_timeout"] = True
                    out[i] = again
        return out

    def _collect(self, fut: Any, mode: str) -> Grade:
        from pebble import ProcessExpired

        base = {"mode": mode, "grader_version": GRADER_VERSION}
        try:
            return fut.result()
        except FutureTimeout:
            return Grade(correct=False, status="timeout", detail={**base, "outer_timeout_s": self.timeout})
        except ProcessExpired as e:
            return Grade(correct=False, status="grader_error",
                         detail={**base, "error": f"worker died: {e} (exit code {e.exitcode})"})
        except Exception as e:
            return Grade(correct=False, status="grader_error", detail={**base, "error": f"{type(e).__name__}: {e}"})

    def close(self) -> None:
        self._pool.close()
        self._pool.join()

    def terminate(self) -> None:
        self._pool.stop()
        self._pool.join()

    def __enter__(self) -> "MathGradePool":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()

