"""The run spec: what to generate and how to grade it, validated before anything loads.

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
    serving: {tp_size: 8}           # engine sglang only: the server's layout (softthink.serving.ServingSpec)
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

``RunSpec.generation`` holds the resolved :class:`softthink.GenerationConfig` (the spec's ``batch_size``, when set,
is folded into it). ``--set`` keys are dotted paths from the file's root (``generation.think.max_topk=5``, ``n=2``)
for every command.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from softthink.config import ConfigError, GenerationConfig, load_yaml, parse_override, set_dotted
from softthink.serving import ServingSpec
from softthink.store import _SECRET_KEY, resolve_runs_root

UID_STRIDE = 1_000_000  # sample_uid = item_index * UID_STRIDE + sample_index
GRADER_MODES = ("suite", "official")
ENGINES = ("hf", "sglang")


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
    generation: GenerationConfig = field(default_factory=GenerationConfig)  # resolved; batch_size folded in
    grader: GraderSpec = field(default_factory=GraderSpec)
    engine: str = "hf"
    batch_size: int | None = None  # overrides generation.batch_size when set
    device: str = "auto"
    dtype: str = "auto"
    runs_dir: str | None = None
    gpqa_options: str = "official_fixed"
    serving: ServingSpec = field(default_factory=ServingSpec)

    KEYS = ("model", "dataset", "start", "end", "limit", "n", "generation", "grader", "engine", "batch_size",
            "device", "dtype", "runs_dir", "gpqa_options", "serving")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        """Validate every key (one :class:`ConfigError` naming the first problem) before anything loads."""
        import difflib

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
        if d.get("serving") is not None and engine != "sglang":
            raise ConfigError("serving: a server layout is for engine 'sglang' only (this spec has engine "
                              f"{engine!r})")
        serving = ServingSpec.from_value(d.get("serving"))
        gen = dict(gen)
        if batch_size is not None:
            gen["batch_size"] = batch_size
        generation = GenerationConfig.from_dict(gen)
        if engine == "sglang" and generation.is_soft and generation.think.max_topk > serving.kmax:
            raise ConfigError(f"serving.kmax: {serving.kmax} is below generation.think.max_topk "
                              f"{generation.think.max_topk}; the server's concept width must hold it")
        return cls(model=d["model"], dataset=d["dataset"], start=start, end=end, limit=limit, n=n,
                   generation=generation, grader=GraderSpec.from_value(d.get("grader")), engine=engine,
                   batch_size=batch_size, device=d.get("device", "auto"), dtype=d.get("dtype", "auto"),
                   runs_dir=runs_dir, gpqa_options=gpqa, serving=serving)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Sequence[str] = ()) -> "RunSpec":
        """Load a YAML run spec; ``overrides`` are ``dotted.key=value`` strings (``--set``)."""
        return cls.from_dict(apply_overrides(load_yaml(path), overrides))

    def generation_config(self) -> GenerationConfig:
        """The resolved :class:`softthink.GenerationConfig` (kept for callers of the previous release)."""
        return self.generation

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["generation"] = self.generation.to_dict()
        d["grader"] = dataclasses.asdict(self.grader)
        if self.engine == "sglang":
            d["serving"] = self.serving.to_dict()
        else:
            d.pop("serving")
        return d

    def runs_root(self, override: str | os.PathLike | None = None) -> Path:
        return resolve_runs_root(override if override is not None else self.runs_dir)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items applied to a loaded file: KEY is a dotted path from the file's root
    (``generation.think.max_topk=5``, ``n=2``) for every command."""
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(data, key, value)
    return data
