"""Tests against the real SGLang 0.5.23 (`make test-sglang`, venv `.venv-sglang`); not collected where SGLang is not
importable (e.g. the main `make test` environment). The folder is `sglang_real`, not `sglang`: a test folder named
like the package would shadow it as a namespace package."""
from __future__ import annotations

import importlib.util
import os
import sys


def _have_sglang() -> bool:
    try:
        return importlib.util.find_spec("sglang.srt") is not None
    except (ImportError, ValueError):
        return False


collect_ignore_glob = [] if _have_sglang() else ["test_*.py"]
sys.path.insert(0, os.path.dirname(__file__))  # child.py, parity.py
