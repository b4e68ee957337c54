"""Results store: the run directory and everything written into it (docs/design/evaluation.md §6).

This module alone knows the file names of a run directory:

* ``config.json``: run spec, run key, resolved generation config, versions (secrets scrubbed: any key that looks
  like a key/token/secret/password; API keys are never accepted in a spec anyway);
* ``samples.jsonl``: one JSON object per (item, sample), appended, flushed and fsynced per sample;
* ``traces/i<item>-s<sample>.json.gz``: per-step trace of one sample, only with ``generation.trace: true``
  (written atomically before the sample's line, so a sample line implies its trace);
* ``grades/<grader_version>-<mode>.jsonl`` (written atomically), ``summary.json`` (temp file + ``os.replace``);
* ``.lock``: an exclusive ``flock`` that keeps two generators off the same run.

A run lives in ``<root>/<slug>-<hash12>`` (``softthink.runkey``); ``root`` is the spec's ``runs_dir``, else
``$SOFTTHINK_RUNS_DIR``, else ``./runs``. A torn last line of ``samples.jsonl`` (the process died mid-write) is
dropped on the next append, so a killed run resumes without losing or duplicating a sample (``softthink.generate``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import re

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from softthink.runspec import RunSpec

RUNS_ENV = "SOFTTHINK_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
SAMPLES_FILE = "samples.jsonl"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
GRADES_DIR = "grades"
TRACES_DIR = "traces"
LOCK_FILE = ".lock"


# ================================================================================================================
# canonical JSON, hashing, secrets


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8, NaN refused: the byte string that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_jsonable)


def _jsonable(o: Any) -> Any:
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, Path):
        return str(o)
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_key(key: dict[str, Any]) -> str:
    return sha256_text(canonical_json(key))


# a key names a secret when its last word is one of these (max_new_tokens, aime2024_key, api_key_env are not)
_SECRET_KEY = re.compile(r"(^|[_\-.])(api_?key|access_?key|private_?key|secret(_?key)?|password|passwd|token|auth"
                         r"|credentials?)$|^key$", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^(sk-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{20,}|gh[pous]_[A-Za-z0-9]{20,})$")
REDACTED = "<redacted>"


def scrub_secrets(obj: Any) -> Any:
    """Copy of ``obj``: values of secret-looking keys, and secret-looking strings, replaced by ``<redacted>``."""
    if isinstance(obj, dict):
        return {k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "", False)
                    else scrub_secrets(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_secrets(v) for v in obj]
    if isinstance(obj, str) and _SECRET_VALUE.match(obj.strip()):
        return REDACTED
    return obj


# ================================================================================================================
# atomic writes and the append-only samples file


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` via a temp file in the same folder + fsync + ``os.replace``."""
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False, default=_jsonable) + "\n")


def write_text_atomic(path: str | os.PathLike, text: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(text.encode("utf-8") if isinstance(text, str) else text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path: str | os.PathLike, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a JSONL file written by :class:`JsonlAppender`.

    A torn last line (no trailing newline, or not valid JSON) is what a process killed mid-write leaves behind:
    it is ignored, and with ``repair=True`` truncated away on disk so the next append starts on a clean line.
    An invalid line anywhere else is corruption and raises ``ValueError``.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict[str, Any]] = []
    pos = 0
    good_end = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:  # no newline: torn
            break
        line = data[pos:nl]
        try:
            rec = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            if data.find(b"\n", nl + 1) >= 0 or data[nl + 1:].strip():
                raise ValueError(f"{path}: invalid JSON on a line that is not the last (byte {pos})") from None
            break  # invalid last line: torn
        if rec is not None:
            if not isinstance(rec, dict):
                raise ValueError(f"{path}: line at byte {pos} is not a JSON object")
            records.append(rec)
        pos = nl + 1
        good_end = pos
    if repair and good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return records


class JsonlAppender:
    """Append one JSON object per line; every line is flushed and fsynced before ``write`` returns."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False, default=_jsonable).encode("utf-8") + b"\n"
        self._f.write(line)
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextlib.contextmanager
def run_lock(run_path: Path) -> Iterator[None]:
    """Exclusive, non-blocking ``flock`` on ``<run>/.lock`` (released by the kernel if the process dies)."""
    import fcntl

    run_path.mkdir(parents=True, exist_ok=True)
    with open(run_path / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{run_path} is being generated by another process (lock held on {LOCK_FILE})") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)



def resolve_runs_root(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit`` argument, else ``$SOFTTHINK_RUNS_DIR``, else ``./runs``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR)


# ================================================================================================================
# run directory


def _slug_part(s: str) -> str:
    s = s.rstrip("/").split("/")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_.-")[:48] or "x"


@dataclass
class RunDir:
    """A planned or existing run directory."""

    path: Path
    hash: str = ""
    key: dict[str, Any] = field(default_factory=dict)
    spec: RunSpec | None = None

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def summary_path(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def grades_dir(self) -> Path:
        return self.path / GRADES_DIR

    @property
    def traces_dir(self) -> Path:
        return self.path / TRACES_DIR

    def grades_path(self, grader_version: str, mode: str, variant: str | None = None) -> Path:
        """``grades/<grader_version>[-<variant>]-<mode>.jsonl`` (the label always ends in ``-<mode>``)."""
        mid = f"-{variant}" if variant else ""
        return self.grades_dir / f"{_slug_part(grader_version)}{mid}-{mode}.jsonl"

    def config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    def samples(self) -> list[dict[str, Any]]:
        return read_jsonl(self.samples_path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunDir":
        """An existing run directory (reads ``config.json``)."""
        p = Path(path)
        if not (p / CONFIG_FILE).exists():
            raise FileNotFoundError(f"{p}: not a run directory (no {CONFIG_FILE})")
        from softthink.runspec import RunSpec

        cfg = json.loads((p / CONFIG_FILE).read_text())
        spec = RunSpec.from_dict(cfg["spec"]) if "spec" in cfg else None
        return cls(path=p, hash=cfg.get("hash", ""), key=cfg.get("run_key", {}), spec=spec)


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run directory's ``config.json``, or None when it is missing or unreadable (readers that skip such dirs)."""
    try:
        return json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None



def write_config(rd: RunDir, versions: dict[str, Any]) -> None:
    """Write ``config.json`` (or check an existing one belongs to the same key)."""
    assert rd.spec is not None
    if rd.config_path.exists():
        old = rd.config()
        if old.get("hash") != rd.hash:
            raise RuntimeError(f"{rd.path}: config.json has hash {old.get('hash')!r}, expected {rd.hash!r}")
        # grader settings are not part of the key: the latest spec's grader is what `grade RUN_DIR` uses
        grader = scrub_secrets(dataclasses.asdict(rd.spec.grader))
        if old.get("spec", {}).get("grader") != grader:
            old["spec"]["grader"] = grader
            write_json_atomic(rd.config_path, old)
        return
    body = {
        "hash": rd.hash,
        "slug": rd.path.name,
        "spec": rd.spec.to_dict(),
        "run_key": rd.key,
        "generation": rd.key["generation"],
        "versions": versions,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(rd.config_path, scrub_secrets(body))


def trace_path(rd: RunDir, item_index: int, sample_index: int) -> Path:
    return rd.traces_dir / f"i{item_index:06d}-s{sample_index:04d}.json.gz"


def write_trace(rd: RunDir, item_index: int, sample_index: int, trace: Any) -> None:
    write_text_atomic(trace_path(rd, item_index, sample_index),
                      gzip.compress(json.dumps(trace, default=_jsonable).encode("utf-8"), mtime=0))


def read_trace(rd: RunDir, item_index: int, sample_index: int) -> dict[str, Any] | None:
    p = trace_path(rd, item_index, sample_index)
    return json.loads(gzip.decompress(p.read_bytes())) if p.exists() else None


def write_grades(path: Path, records: list[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=_jsonable) + "\n" for r in records))


def load_grades(rd: RunDir) -> dict[str, list[dict[str, Any]]]:
    """``{<grader_version>-<mode>: records}`` for every grades file of the run."""
    out = {}
    if rd.grades_dir.exists():
        for p in sorted(rd.grades_dir.glob("*.jsonl")):
            out[p.stem] = read_jsonl(p)
    return out


def expected_samples(rd: RunDir) -> int | None:
    idx = rd.key.get("dataset", {}).get("item_indices")
    return None if idx is None else len(idx) * int(rd.key.get("n", 1))


def run_dirs_under(root: str | os.PathLike) -> list[str]:
    """Every run directory directly under ``root`` (those with a ``config.json``), sorted."""
    return sorted(str(p.parent) for p in Path(root).glob(f"*/{CONFIG_FILE}"))
