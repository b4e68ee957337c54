"""GenerationConfig: every knob of one generation run, validated before any model loads.

Keys follow docs/design/algorithm.md §8 (`think.temperature`, `cold_stop.threshold`, ...). A config names a preset
(`corrected` by default, `as_published`, `official_head`); the preset fills the switches the user did not set,
and `to_dict()` returns the fully resolved values, which is what runs record and hash.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from softthink import methods as _methods

METHODS = tuple(_methods.METHODS)  # the registry (softthink/methods.py) is the one list
DISCRETE_METHODS = tuple(m.name for m in _methods.METHODS.values() if not m.soft)
PRESETS = ("corrected", "as_published", "official_head")


class ConfigError(ValueError):
    """A configuration problem, reported before anything expensive happens."""


# ---------------------------------------------------------------------------------------------------------------
# field checks: each returns the coerced value or raises ConfigError naming the key


def _num_trap(key: str, value: Any) -> None:
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value):
        raise ConfigError(
            f"{key}: got the string {value!r}, expected a number. YAML 1.1 reads exponent numbers without a dot "
            f"(like 1e-3) as strings: write 0.001 or 1.0e-3."
        )


def _float(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    def check(key: str, value: Any) -> float:
        _num_trap(key, value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r} ({type(value).__name__})")
        v = float(value)
        bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
        bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
        if bad_lo or bad_hi or v != v:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            rng = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
            raise ConfigError(f"{key}: {value!r} is out of range; allowed {rng}")
        return v

    return check


def _int(lo: int | None = None, allow: tuple[int, ...] = ()):
    def check(key: str, value: Any) -> int:
        _num_trap(key, value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r} ({type(value).__name__})")
        if value in allow:
            return value
        if lo is not None and value < lo:
            extra = f" or one of {list(allow)}" if allow else ""
            raise ConfigError(f"{key}: {value} is out of range; allowed integers >= {lo}{extra}")
        return value

    return check


def _choice(*options: str):
    def check(key: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(repr, options))}")
        return value

    return check


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    return value


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def _str_list(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s for s in value):
        raise ConfigError(f"{key}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def _opt(check):
    def wrapped(key: str, value: Any):
        return None if value is None else check(key, value)

    return wrapped


def F(default: Any, check) -> Any:
    return field(default=default, metadata={"check": check})


# ---------------------------------------------------------------------------------------------------------------
# sections


@dataclass(frozen=True)
class Think:
    temperature: float = F(0.6, _float(0.0))  # T; must be > 0 for soft methods (checked below)
    top_k: int = F(30, _int(1, allow=(-1,)))  # -1 = all
    top_p: float = F(0.95, _float(0.0, 1.0, lo_open=True))
    min_p: float = F(0.001, _float(0.0, 1.0))
    filter_order: str | None = F(None, _opt(_choice("sequential", "joint")))  # None: sequential (soft), joint (CoT)
    max_topk: int = F(10, _int(1))  # K, the concept width
    end_str: str = F("</think>", _str)
    budget: int = F(0, _int(0))  # force the think end after this many THINK tokens; 0 = off


@dataclass(frozen=True)
class Answer:
    mode: str | None = F(None, _opt(_choice("greedy_argmax", "sample")))
    temperature_source: str | None = F(None, _opt(_choice("thinking", "answer")))
    temperature: float = F(0.6, _float(0.0))
    top_k: int = F(30, _int(1, allow=(-1,)))
    top_p: float = F(0.95, _float(0.0, 1.0, lo_open=True))
    min_p: float = F(0.0, _float(0.0, 1.0))
    filter_order: str = F("sequential", _choice("sequential", "joint"))


@dataclass(frozen=True)
class ColdStop:
    threshold: float = F(0.0, _float(0.0))  # tau in nats; 0 = off
    length: int = F(256, _int(1))  # L consecutive low-entropy steps
    answer_phase: str | None = F(None, _opt(_choice("off", "abort")))


@dataclass(frozen=True)
class Noise:
    kind: str = F("none", _choice("none", "gumbel", "dirichlet"))
    gumbel_tau: float = F(0.5, _float(0.0, lo_open=True))
    dirichlet_alpha: float = F(4.0, _float(0.0, lo_open=True))
    dirichlet_support: str | None = F(None, _opt(_choice("support", "official_full")))
    rng: str | None = F(None, _opt(_choice("counter", "global")))


@dataclass(frozen=True)
class Entropy:
    temperature: str = F("thinking", _choice("thinking", "raw"))
    normalise: str = F("none", _choice("none", "log_vocab"))


@dataclass(frozen=True)
class Mix:
    dtype: str = F("model", _choice("model", "fp32"))


@dataclass(frozen=True)
class Phase:
    start: str = F("think", _choice("think", "after_open_tag"))
    open_str: str = F("<think>", _str)


@dataclass(frozen=True)
class EngineSwitches:
    prefix_cache_for_soft: str | None = F(None, _opt(_choice("isolate", "off", "share")))
    on_retraction: str | None = F(None, _opt(_choice("fail", "log", "replay_hard")))


@dataclass(frozen=True)
class MoI:  # Mixture of Inputs, arXiv 2505.14827
    beta: float = F(1.0, _float(0.0))
    top_k: int = F(20, _int(1))


@dataclass(frozen=True)
class SwiR:  # SwiReasoning, arXiv 2510.05069
    alpha0: float = F(0.5, _float(0.0, 1.0))
    beta0: float = F(0.7, _float(0.0, 1.0))
    window: int = F(512, _int(0))
    max_switches: int = F(0, _int(0))  # 0 = no cap
    answer_tokens: int = F(32, _int(1))


@dataclass(frozen=True)
class ThinkRouter:  # arXiv 2602.11683
    threshold: float = F(0.5, _float(0.0))
    confidence_source: str = F("filtered", _choice("filtered", "tempered", "raw"))
    discrete: str = F("sample", _choice("sample", "argmax"))


@dataclass(frozen=True)
class Coconut:  # training-free COCONUT
    hidden: str = F("post_norm", _choice("post_norm", "pre_norm"))


@dataclass(frozen=True)
class AvgEmbedding:
    k: int = F(5, _int(1))


SECTIONS: dict[str, type] = {
    "think": Think,
    "answer": Answer,
    "cold_stop": ColdStop,
    "noise": Noise,
    "entropy": Entropy,
    "mix": Mix,
    "phase": Phase,
    "engine": EngineSwitches,
    "moi": MoI,
    "swir": SwiR,
    "thinkrouter": ThinkRouter,
    "coconut": Coconut,
    "avg_embedding": AvgEmbedding,
}

# docs/design/algorithm.md §8 presets: switch values that differ between the paper-era code, official HEAD and our defaults.
PRESET_VALUES: dict[str, dict[str, dict[str, Any]]] = {
    "as_published": {
        "answer": {"mode": "greedy_argmax", "temperature_source": "thinking"},
        "cold_stop": {"answer_phase": "off"},
        "noise": {"dirichlet_support": "support", "rng": "counter"},
        "engine": {"prefix_cache_for_soft": "share", "on_retraction": "replay_hard"},
    },
    "official_head": {
        "answer": {"mode": "sample", "temperature_source": "thinking"},
        "cold_stop": {"answer_phase": "abort"},
        "noise": {"dirichlet_support": "official_full", "rng": "global"},
        "engine": {"prefix_cache_for_soft": "share", "on_retraction": "replay_hard"},
    },
    "corrected": {
        "answer": {"mode": "sample", "temperature_source": "answer"},
        "cold_stop": {"answer_phase": "off"},
        "noise": {"dirichlet_support": "support", "rng": "counter"},
        "engine": {"prefix_cache_for_soft": "isolate", "on_retraction": "log"},
    },
}

TOP_LEVEL: dict[str, Any] = {
    "method": lambda key, value: _choice(*_methods.METHODS)(key, value),  # the registry, read at validation time
    "preset": _choice(*PRESETS),
    "max_new_tokens": _int(1),
    "seed": _int(0),
    "trace": _bool,
    "stop": _str_list,
    "batch_size": _int(1),
}


@dataclass(frozen=True)
class GenerationConfig:
    """One generation setting. Build with `GenerationConfig.from_dict(d)` / `.from_yaml(path)` or keywords."""

    method: str = "soft"
    preset: str = "corrected"
    max_new_tokens: int = 32768
    seed: int = 0
    trace: bool = False
    stop: tuple[str, ...] = ()
    batch_size: int = 8
    think: Think = field(default_factory=Think)
    answer: Answer = field(default_factory=Answer)
    cold_stop: ColdStop = field(default_factory=ColdStop)
    noise: Noise = field(default_factory=Noise)
    entropy: Entropy = field(default_factory=Entropy)
    mix: Mix = field(default_factory=Mix)
    phase: Phase = field(default_factory=Phase)
    engine: EngineSwitches = field(default_factory=EngineSwitches)
    moi: MoI = field(default_factory=MoI)
    swir: SwiR = field(default_factory=SwiR)
    thinkrouter: ThinkRouter = field(default_factory=ThinkRouter)
    coconut: Coconut = field(default_factory=Coconut)
    avg_embedding: AvgEmbedding = field(default_factory=AvgEmbedding)

    # -- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any] | None = None, **overrides: Any) -> "GenerationConfig":
        """Validate a (possibly nested or dotted-key) dict, apply the preset, return the resolved config."""
        raw = _nest(dict(data or {}))
        _deep_update(raw, _nest(overrides))
        return _resolve(raw)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "GenerationConfig":
        data = load_yaml(path)
        if "generation" in data and isinstance(data["generation"], dict):  # a run spec: take its generation part
            data = data["generation"]
        for item in overrides or []:
            key, value = parse_override(item)
            set_dotted(data, key, value)
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "GenerationConfig":
        """A copy with dotted-key changes applied, revalidated: cfg.replace(**{"think.max_topk": 1})."""
        d = self.to_dict()
        _deep_update(d, _nest(changes))
        return _resolve(d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    # -- derived facts the engines use ---------------------------------------------------------------------------
    @property
    def is_soft(self) -> bool:
        """True when THINK-phase inputs are not plain token embeddings."""
        return _methods.METHODS[self.method].soft

    @property
    def greedy(self) -> bool:
        return self.method == "cot_greedy" or (not self.is_soft and self.think.temperature == 0.0)

    def __post_init__(self) -> None:
        """Coerce keyword dicts, fill unset switches from the preset, check cross-field rules."""
        for key, check in TOP_LEVEL.items():
            object.__setattr__(self, key, check(key, getattr(self, key)))
        preset = PRESET_VALUES[self.preset]
        for name, section in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                value = _build_section(name, section, value)
            elif not isinstance(value, section):
                raise ConfigError(f"{name}: expected a mapping of keys, got {value!r}")
            unset = {k: v for k, v in preset.get(name, {}).items() if getattr(value, k) is None}
            object.__setattr__(self, name, dataclasses.replace(value, **unset))
        if self.think.filter_order is None:  # B9: soft-thinking servers filter sequentially, stock SGLang jointly
            order = "sequential" if self.is_soft else "joint"
            object.__setattr__(self, "think", dataclasses.replace(self.think, filter_order=order))
        if self.is_soft and self.think.temperature <= 0.0:
            raise ConfigError(
                f"think.temperature: {self.think.temperature} is not allowed for method {self.method!r}; soft "
                "thinking needs T > 0 (T = 0 crashes the official engine, docs/design/algorithm.md S1). Use method 'cot_greedy' "
                "for greedy decoding."
            )
        if self.noise.kind == "dirichlet" and self.noise.dirichlet_support == "official_full":
            raise ConfigError(
                "noise.dirichlet_support: 'official_full' is the official Gamma over the full vocabulary, which raises "
                "on zero concentrations (docs/design/algorithm.md B3); use 'support'"
            )


# ---------------------------------------------------------------------------------------------------------------
# resolution


def _build_section(name: str, cls: type, values: dict[str, Any]):
    if not isinstance(values, dict):
        raise ConfigError(f"{name}: expected a mapping of keys, got {values!r}")
    allowed = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in allowed:
            raise ConfigError(_unknown(f"{name}.{key}", key, list(allowed), prefix=f"{name}."))
        kwargs[key] = allowed[key].metadata["check"](f"{name}.{key}", value)
    return cls(**kwargs)


def _unknown(full: str, key: str, allowed: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
    return f"unknown key {full!r}{hint}; allowed keys: {', '.join(prefix + a for a in sorted(allowed))}"


def _resolve(raw: dict[str, Any]) -> GenerationConfig:
    allowed = list(TOP_LEVEL) + list(SECTIONS)
    for key in raw:
        if key not in allowed:
            raise ConfigError(_unknown(key, key, allowed))
    top = {key: raw[key] for key in TOP_LEVEL if key in raw}
    sections = {}
    for name in SECTIONS:
        user = raw.get(name) or {}
        if not isinstance(user, dict):
            raise ConfigError(f"{name}: expected a mapping of keys, got {user!r}")
        sections[name] = user
    return GenerationConfig(**top, **sections)


# ---------------------------------------------------------------------------------------------------------------
# dict helpers and YAML


def _nest(d: dict[str, Any]) -> dict[str, Any]:
    """{'think.top_k': 5} -> {'think': {'top_k': 5}}; nested dicts pass through."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            value = _nest(value)
        set_dotted(out, key, value)
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: {p!r} is a value, not a section")
        d = nxt
    if isinstance(value, dict) and isinstance(d.get(parts[-1]), dict):
        _deep_update(d[parts[-1]], value)
    else:
        d[parts[-1]] = value


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` from the command line. Numbers are parsed as numbers (so 1e-3 is a float here)."""
    import yaml

    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value")
    key, text = item.split("=", 1)
    for conv in (int, float):
        try:
            return key.strip(), conv(text)
        except ValueError:
            pass
    return key.strip(), yaml.safe_load(text) if text else ""


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data
