"""Rule grading: ``grade(dataset, item, completion) -> Grade`` and the pooled batch API ``grade_many``.

One grader per dataset kind, the kind read from the registry (``softthink.data.DATASETS``):

* ``math``  -- :mod:`softthink.grading.math` (math-verify; batches in the killable :class:`MathGradePool`);
* ``gpqa``  -- :mod:`softthink.grading.gpqa` (answer letters; regex work in this process);
* ``code``  -- :mod:`softthink.grading.code` (program building and comparison; programs run in
  :mod:`softthink.sandbox`).

Answer extraction (the answer section after the last ``</think>``, boxes, answer statements, GPQA letters) is pure
text work in :mod:`softthink.answers`. docs/grading.md states every rule with examples.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Iterable, Sequence

from softthink.data import DATASETS, names
from softthink.grading import code
from softthink.grading.common import GRADER_VERSION, MODES, Grade
from softthink.grading.gpqa import extract_gpqa_letter, grade_gpqa
from softthink.grading.math import OUTER_TIMEOUT_S, MathGradePool, grade_math

# names this module had when it was one file (extraction helpers, pool settings and test hooks), still importable here
from softthink.answers import THINK_END, answer_section, boxed_contents, last_boxed  # noqa: E402,F401
from softthink.grading.math import (PARSE_TIMEOUT_S, VERIFY_TIMEOUT_S, _contended_job, _hang_job,  # noqa: E402,F401
                                    _payload, default_context)

__all__ = ["GRADER_VERSION", "MODES", "Grade", "MathGradePool", "answer_section", "boxed_contents",
           "extract_gpqa_letter", "grade", "grade_gpqa", "grade_many", "grade_math", "last_boxed"]


def _kind(dataset: str) -> str:
    spec = DATASETS.get(dataset)
    if spec is None:
        raise KeyError(f"no grader for dataset {dataset!r}")
    return spec.kind


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
    return code.grade_code(dataset, item, completion, mode=mode)


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
    GPQA is regex work done in this process; code goes to the sandbox (``grading.code.grade_code_many``).
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
    return code.grade_code_many(dataset, [(item, completion) for item, completion, _ in entries], mode=mode,
                                workers=workers)


# Deprecated (one release): the dataset lists this module used to define, now read from the registry at each access.
_DEPRECATED_LISTS = {
    "MATH_DATASETS": lambda: frozenset(names("math")),
    "EXPR_GOLD_DATASETS": lambda: frozenset(n for n in names("math") if DATASETS[n].grader == "math_expr"),
    "GPQA_DATASETS": lambda: frozenset(names("gpqa")),
    "CODE_DATASETS": lambda: frozenset(names("code")),
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED_LISTS:
        return _DEPRECATED_LISTS[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
