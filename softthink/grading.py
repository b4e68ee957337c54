"""Rule grading: ``grade(dataset, item, completion) -> Grade`` and the pooled batch API ``grade_many``.

Math (EVALUATION.md §2.3/§2.4), gold configs per dataset: ``Expr`` gold for aime2024/aime2025/gsm8k,
``$gold$`` + LaTeX gold for math500/amc23; always ``verify(gold, pred)`` (the function is asymmetric).

* ``suite`` (default): answer section = text after the LAST ``</think>`` (absent: flag ``no_think_end``, use the
  full text) -> the last brace-balanced ``\\boxed{...}`` in it, graded as ``parse("$" + content + "$")`` with the
  default normalisation (path ``boxed``) -> else math-verify with anchored extraction only (path ``anchored``)
  -> else status ``no_answer``. ``detail["path"]`` records which fired.
* ``official``: the official ``matheval.py`` configuration on the FULL text (thinking included): LaTeX with
  ``malformed_operators=False, nits=False``, ``boxed_match_priority=0``, no unanchored LaTeX, plus an unanchored
  ``ExprExtractionConfig``; ``extraction_mode="first_match"``. Runs on the installed math-verify (0.9.0 here; the
  official run used 0.8.0) -- the version is recorded in ``detail``.

GPQA (§3.1): ``suite`` extractor on the answer section, markdown emphasis (``*``, ``_``) removed, letters A-D,
rules in priority order, each taking its last match: 1 ``\\boxed{X}`` / ``\\boxed{\\text{X}}`` (``X:``, ``X)``,
``X.`` prefixes accepted); 2 ``"answer": "X"``; 3 ``Answer: X``; 4 ``(answer|choice|option) is X``; else
``no_answer``. Never a stray capital. ``official`` approximates the official grader: math-verify
``StringExtractionConfig`` on the full text for both gold and prediction.

Code datasets dispatch to ``softthink.execution.grade_code`` (imported lazily).

math-verify's internal timeouts use ``signal.alarm`` (main thread only) and do not always fire, so batch math
grading runs in a killable ``pebble.ProcessPool`` (forkserver/spawn, never fork) whose workers pre-import
math-verify; every item has an outer timeout (30 s) after which it scores ``correct=False, status="timeout"`` and
pebble replaces the worker.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import re
import sys
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

GRADER_VERSION = "1"

MATH_DATASETS = frozenset({"aime2024", "aime2025", "amc23", "math500", "gsm8k"})
EXPR_GOLD_DATASETS = frozenset({"aime2024", "aime2025", "gsm8k"})  # the rest of MATH_DATASETS: $gold$ LaTeX
GPQA_DATASETS = frozenset({"gpqa_diamond"})
CODE_DATASETS = frozenset({"humaneval", "mbpp", "livecodebench"})
MODES = ("suite", "official")

THINK_END = "</think>"
OUTER_TIMEOUT_S = 30.0
PARSE_TIMEOUT_S = 5
VERIFY_TIMEOUT_S = 5


@dataclass
class Grade:
    """Verdict for one completion. `correct` is None when the sample could not be graded (e.g. no tests)."""

    correct: bool | None
    extracted: str | None = None
    status: str = "graded"  # passed | failed | no_answer | no_code | timeout | runtime_error | sandbox_error | ungraded | ...
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "extracted": self.extracted, "status": self.status, "detail": self.detail}


# ------------------------------------------------------------------------------------------------ text helpers

def answer_section(text: str) -> tuple[str, bool]:
    """(text after the last ``</think>``, True) or (the full text, False) when there is no think end."""
    pos = text.rfind(THINK_END)
    if pos < 0:
        return text, False
    return text[pos + len(THINK_END):], True


_BOXED_RE = re.compile(r"\\boxed\s*\{")


def boxed_contents(text: str) -> list[str]:
    """Contents of all top-level, brace-balanced ``\\boxed{...}`` in order; unclosed boxes are skipped."""
    out: list[str] = []
    pos = 0
    while True:
        m = _BOXED_RE.search(text, pos)
        if m is None:
            return out
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
                i += 2  # escaped brace \{ or \} does not count
                continue
            depth += c == "{"
            depth -= c == "}"
            i += 1
        if depth == 0:
            out.append(text[m.end(): i - 1])
            pos = i
        else:
            pos = m.end()


def last_boxed(text: str) -> str | None:
    """Content of the last top-level brace-balanced ``\\boxed{...}``, or None."""
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


# ------------------------------------------------------------------------------------------------ math

@functools.lru_cache(maxsize=1)
def _mv() -> Any:
    """math-verify and its config classes, imported once (workers call it from the initializer)."""
    import math_verify
    from latex2sympy2_extended import NormalizationConfig

    return math_verify, NormalizationConfig


def _math_verify_version() -> str:
    from importlib.metadata import version

    try:
        return version("math-verify")
    except Exception:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


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


@functools.lru_cache(maxsize=4096)
def _parse_gold(dataset: str, gold: str) -> list[Any]:
    mv, _ = _mv()
    gold = str(gold).strip()
    if dataset in EXPR_GOLD_DATASETS:
        return mv.parse(gold, [mv.ExprExtractionConfig()], parsing_timeout=PARSE_TIMEOUT_S)
    if not gold.startswith("$"):
        gold = f"${gold}$"
    return mv.parse(gold, [mv.LatexExtractionConfig()], parsing_timeout=PARSE_TIMEOUT_S)


def _raw(parsed: list[Any]) -> str | None:
    """math-verify returns [sympy..., raw string]; the raw string is the extracted answer text."""
    if not parsed:
        return None
    return str(parsed[-1]) if isinstance(parsed[-1], str) else str(parsed[0])


def grade_math(dataset: str, gold: str, completion: str, mode: str = "suite") -> Grade:
    """Grade one math completion in this process (main thread only: math-verify uses ``signal.alarm``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    mv, _ = _mv()
    detail: dict[str, Any] = {"mode": mode, "gold": str(gold), "math_verify": _math_verify_version(),
                              "grader_version": GRADER_VERSION}
    gold_parsed = _parse_gold(dataset, str(gold))
    if not gold_parsed:
        detail["error"] = "gold did not parse"
        return Grade(correct=None, status="grader_error", detail=detail)

    if mode == "official":
        pred = mv.parse(completion, _pred_configs("official", anchored_only=False), extraction_mode="first_match",
                        parsing_timeout=PARSE_TIMEOUT_S)
        detail["path"] = "official"
    else:
        section, has_end = answer_section(completion)
        if not has_end:
            detail["no_think_end"] = True
        pred = []
        box = last_boxed(section)
        if box is not None:
            detail["boxed"] = box
            pred = mv.parse("$" + box + "$", _pred_configs("suite", anchored_only=False),
                            extraction_mode="first_match", parsing_timeout=PARSE_TIMEOUT_S)
            detail["path"] = "boxed"
            if not pred:
                detail["box_unparsed"] = True
        if not pred:
            pred = mv.parse(section, _pred_configs("suite", anchored_only=True), extraction_mode="first_match",
                            parsing_timeout=PARSE_TIMEOUT_S)
            detail["path"] = "anchored" if pred else "none"

    extracted = _raw(pred)
    if not pred:
        return Grade(correct=False, extracted=None, status="no_answer", detail=detail)
    detail["pred"] = [str(p) for p in pred]
    ok = bool(mv.verify(gold_parsed, pred, timeout_seconds=VERIFY_TIMEOUT_S))
    return Grade(correct=ok, extracted=extracted, status="passed" if ok else "failed", detail=detail)


# ------------------------------------------------------------------------------------------------ GPQA

_LETTER_IN_BOX = re.compile(r"^\(?([A-D])\)?(?:[.:)].*)?$", re.S)
_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|textit|mbox)\s*\{(.*)\}$", re.S)
_RULE_JSON = re.compile(r"[\"'](?i:answer)[\"']\s*:\s*[\"']?\(?([A-D])\)?(?![A-Za-z0-9])")
_RULE_ANSWER = re.compile(r"(?<![A-Za-z])(?i:answer)\s*:\s*\(?([A-D])\)?(?![A-Za-z0-9])")
_RULE_IS = re.compile(r"(?<![A-Za-z])(?i:answer|choice|option)\s+is\s*:?\s*\(?([A-D])\)?(?![A-Za-z0-9])")


def _box_letter(content: str) -> str | None:
    s = content.strip()
    while True:
        m = _TEXT_WRAP.match(s)
        if not m:
            break
        s = m.group(1).strip()
    m = _LETTER_IN_BOX.match(s)
    return m.group(1) if m else None


def extract_gpqa_letter(completion: str) -> tuple[str | None, dict[str, Any]]:
    """Suite GPQA letter extraction (rules in the module docstring). Returns (letter or None, detail)."""
    section, has_end = answer_section(completion)
    detail: dict[str, Any] = {}
    if not has_end:
        detail["no_think_end"] = True
    section = section.replace("*", "").replace("_", "")
    box = last_boxed(section)
    if box is not None:
        letter = _box_letter(box)
        if letter:
            detail["rule"] = "boxed"
            return letter, detail
    for rule, pat in (("json_answer", _RULE_JSON), ("answer_colon", _RULE_ANSWER), ("answer_is", _RULE_IS)):
        found = pat.findall(section)
        if found:
            detail["rule"] = rule
            return found[-1], detail
    detail["rule"] = "none"
    return None, detail


def grade_gpqa(gold: str, completion: str, mode: str = "suite") -> Grade:
    """Grade one GPQA completion against ``gold`` (a letter A-D)."""
    gold = str(gold).strip()
    detail: dict[str, Any] = {"mode": mode, "gold": gold, "grader_version": GRADER_VERSION}
    if mode == "suite":
        letter, d = extract_gpqa_letter(completion)
        detail.update(d)
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


# ------------------------------------------------------------------------------------------------ single item

def _kind(dataset: str) -> str:
    if dataset in MATH_DATASETS:
        return "math"
    if dataset in GPQA_DATASETS:
        return "gpqa"
    if dataset in CODE_DATASETS:
        return "code"
    raise KeyError(f"no grader for dataset {dataset!r}")


def grade(dataset: str, item: Any, completion: str, *, mode: str = "suite", gold: Any = None) -> Grade:
    """Grade one completion of ``item``. ``gold`` overrides ``item.answer`` (GPQA per-sample order).

    Math runs in this process and needs the main thread (no outer kill: use :func:`grade_many` for batches).
    """
    gold = item.answer if gold is None else gold
    kind = _kind(dataset)
    if kind == "math":
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("math grading in-process needs the main thread (math-verify uses signal.alarm); "
                               "use grade_many() or MathGradePool from other threads")
        return grade_math(dataset, gold, completion, mode)
    if kind == "gpqa":
        return grade_gpqa(gold, completion, mode)
    from softthink import execution

    return execution.grade_code(dataset, item, completion, mode=mode)


# ------------------------------------------------------------------------------------------------ pool

def _worker_init() -> None:
    """Pool initializer: import math-verify (and its ANTLR parser) once per worker."""
    mv, _ = _mv()
    mv.parse("$1$", [mv.LatexExtractionConfig()])


def _math_job(dataset: str, gold: str, completion: str, mode: str) -> Grade:
    try:
        return grade_math(dataset, gold, completion, mode)
    except BaseException as e:  # math-verify's TimeoutException is a BaseException
        return Grade(correct=False, status="grader_error",
                     detail={"mode": mode, "error": f"{type(e).__name__}: {e}", "grader_version": GRADER_VERSION})


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
            raise ValueError("fork is not allowed for grading pools (EVALUATION.md §2.4); use forkserver or spawn")
        ctx = multiprocessing.get_context(context)
        if context == "forkserver":
            # takes effect only if this process has not started its fork server yet
            ctx.set_forkserver_preload(["softthink.grading", "math_verify"])
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.timeout = timeout
        self.context = context
        self._pool = pebble.ProcessPool(max_workers=self.workers, initializer=_worker_init, context=ctx)

    def grade(self, dataset: str, jobs: Iterable[tuple[Any, str]], mode: str = "suite") -> list[Grade]:
        """Grade (gold, completion) pairs of one math dataset; results in input order."""
        if _kind(dataset) != "math":
            raise ValueError(f"MathGradePool grades math datasets only, not {dataset!r}")
        return self.run(_math_job, [(dataset, str(g), c, mode) for g, c in jobs], mode=mode)

    def run(self, fn: Callable[..., Grade], arglist: Sequence[tuple], mode: str = "suite") -> list[Grade]:
        """Schedule ``fn(*args)`` for each args (``fn`` must be importable); timeouts and crashes become Grades."""
        from pebble import ProcessExpired

        futures = [self._pool.schedule(fn, args=args, timeout=self.timeout) for args in arglist]
        out: list[Grade] = []
        for fut in futures:
            base = {"mode": mode, "grader_version": GRADER_VERSION}
            try:
                out.append(fut.result())
            except FutureTimeout:
                out.append(Grade(correct=False, status="timeout", detail={**base, "outer_timeout_s": self.timeout}))
            except ProcessExpired as e:
                out.append(Grade(correct=False, status="grader_error",
                                 detail={**base, "error": f"worker died: {e} (exit code {e.exitcode})"}))
            except Exception as e:
                out.append(Grade(correct=False, status="grader_error",
                                 detail={**base, "error": f"{type(e).__name__}: {e}"}))
        return out

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


def _unpack(entry: Sequence[Any]) -> tuple[Any, str, Any]:
    if len(entry) == 2:
        item, completion = entry
        return item, completion, item.answer
    item, completion, gold = entry
    return item, completion, item.answer if gold is None else gold


def grade_many(dataset: str, items_and_completions: Iterable[Sequence[Any]], *, mode: str = "suite",
               workers: int | None = None, pool: MathGradePool | None = None,
               timeout: float = OUTER_TIMEOUT_S) -> list[Grade]:
    """Grade ``(item, completion)`` or ``(item, completion, gold)`` entries; results in input order.

    Math goes through ``pool`` (or a pool created and closed here, ``workers`` processes, outer ``timeout``);
    GPQA is regex work done in this process; code goes to ``softthink.execution`` (its own sandbox).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    entries = [_unpack(e) for e in items_and_completions]
    kind = _kind(dataset)
    if kind == "math":
        jobs = [(gold, completion) for _, completion, gold in entries]
        if not jobs:
            return []
        if pool is not None:
            return pool.grade(dataset, jobs, mode)
        with MathGradePool(workers or min(len(jobs), os.cpu_count() or 1), timeout=timeout) as own:
            return own.grade(dataset, jobs, mode)
    if kind == "gpqa":
        return [grade_gpqa(gold, completion, mode) for _, completion, gold in entries]
    from softthink import execution

    many = getattr(execution, "grade_code_many", None)
    if many is not None:
        return many(dataset, [(item, completion) for item, completion, _ in entries], mode=mode, workers=workers)
    return [execution.grade_code(dataset, item, completion, mode=mode) for item, completion, _ in entries]
