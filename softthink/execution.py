"""Deprecated (kept for one release): ``softthink.execution`` was the sandbox and the code graders in one module.

The sandbox is now :mod:`softthink.sandbox` (``run_program``, ``run_many``, ``sandbox_info``, ``ExecResult``), code
grading :mod:`softthink.grading.code` (``grade_code``, ``grade_code_many``, ``extract_code``, the HumanEval / MBPP /
LiveCodeBench programs), next to math and GPQA grading. Every old name still resolves here, with one exception:
``answer_section``, whose flag meant "no think end" here and "has a think end" in ``softthink.answers``; use
``softthink.answers.answer_section`` (returns ``(section, has_end)``).
"""
from __future__ import annotations

import warnings
from typing import Any

from softthink.answers import THINK_END  # noqa: F401
from softthink.grading import code as _code
from softthink.grading.code import (HUMANEVAL_TIMEOUT, LCB_CODE_STATUS, LCB_IMPORTS, LCB_OFFICIAL_TIMEOUT,  # noqa: F401
                                    LCB_TIMEOUT, MBPP_HEADER, MBPP_TIMEOUT, OUTCOMES, Extraction, extract_code,
                                    grade_code, grade_code_many, grade_lcb, humaneval_program, lcb_compare_stdout,
                                    lcb_extract, lcb_tests, mbpp_entry_point, mbpp_header, mbpp_program,
                                    outcome_counts)
from softthink.grading.common import Grade  # noqa: F401
from softthink import sandbox as _sandbox
from softthink.sandbox import (DEFAULT_MEMORY_MB, OUTPUT_CAP, SANDBOX_UID_BASE, UID_POOL_SIZE, ExecResult,  # noqa: F401
                               SandboxInfo, default_workers, run_many, run_program, sandbox_info)

warnings.warn("softthink.execution is deprecated: use softthink.sandbox and softthink.grading.code",
              DeprecationWarning, stacklevel=2)


def __getattr__(name: str) -> Any:
    if name == "answer_section":
        raise AttributeError("softthink.execution.answer_section is gone (its flag meant 'no think end'); use "
                             "softthink.answers.answer_section, which returns (section, has_end)")
    if name == "CODE_DATASETS":   # the registry's code datasets (softthink.data.names("code"))
        from softthink.data import names

        return names("code")
    for mod in (_code, _sandbox):   # everything else, private names included, from its new home
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
