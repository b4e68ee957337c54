"""Where the repository is, and file hashes: the one copy of each helper (data, models and runs import them)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def repo_root() -> Path:
    """The repository root: the folder above the ``softthink`` package."""
    return Path(__file__).resolve().parent.parent


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
