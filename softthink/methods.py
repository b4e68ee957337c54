"""The methods, declared once (docs/design/algorithm.md §9). Config, core, the SGLang driver, the paper tables, the
comparison table and the figures all read these records; nothing else lists method names.

Two kinds of record, one dataclass:

* a **method** is a value of the config key `method` (`base` is None): it has a tensor code for `core.step`, says
  whether THINK-phase inputs are soft (anything but a token's own embedding), whether Cold Stop applies, which
  config section holds its parameters and how the SGLang plugin runs it;
* a **row** is what a table or figure shows: every method is a row, and a *variant* row (`base` set) is a method run
  with particular settings (`when`), e.g. Soft Thinking with Cold Stop off is Table 3's "w/o Cold Stop" row.

`ROWS` is in display order (tables, legends, x axes). Adding a soft-input method: a record here, its parameter
section in `config.py`, its branch in `core.step` (docs/architecture.md, "How to add a method").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Method:
    name: str  # config value of `method` (a row key for variants)
    label: str  # name in tables, legends and the paper
    color: tuple[str, int]  # (seaborn palette, index): one colour per row across every figure
    marker: str  # matplotlib marker: colour + shape keep neighbouring rows apart
    params: tuple[tuple[str, str], ...] = ()  # (symbol, dotted config key) shown beside the label in tables
    # --- methods only (variants take these from their base) ---
    code: int = -1  # core.METHOD_CODES: the per-row tensor code read by core.step
    soft: bool = True  # THINK inputs are not plain token embeddings
    sampled_output: bool = False  # every visible token sampled with the thinking parameters (no answer section)
    cold_stop: bool = False  # Cold Stop (and the answer-phase abort) applies
    section: str | None = None  # the config section holding its parameters
    sglang: str | None = None  # "driver": the plugin's driver step; "native": stock SGLang sampling; None: HF only
    nothinking: bool = False  # the prompt pre-fills the end of thinking (NoThinking)
    topk_concept: bool = True  # soft THINK inputs are top-k weights over token embeddings (the probe's subject)
    # --- variants only ---
    base: str | None = None  # the method this row runs
    when: tuple[tuple[str, Any], ...] = ()  # (dotted config key, value) that select this row among the base's runs
    table3_label: str | None = None  # Table 3 names the plain row differently ("Soft Thinking w/ Cold Stop")

    @property
    def engines(self) -> tuple[str, ...]:
        return ("hf", "sglang") if METHODS[self.base or self.name].sglang else ("hf",)


COLD = ("", "cold_stop")  # pseudo-parameter: "Cold Stop off" or "τ …, L …"
T, K, MIN_P = ("T", "think.temperature"), ("K", "think.max_topk"), ("min-p", "think.min_p")
TAU, L = ("τ", "cold_stop.threshold"), ("L", "cold_stop.length")

ROWS: dict[str, Method] = {m.name: m for m in [
    Method("cot_sample", "CoT Thinking", ("colorblind", 0), "o", (T, ("top-p", "think.top_p"), ("top-k", "think.top_k")),
           code=1, soft=False, sampled_output=True, sglang="native"),
    Method("cot_greedy", "CoT Thinking (Greedy)", ("colorblind", 1), "s", (),
           code=1, soft=False, sampled_output=True, sglang="native"),
    Method("nothinking", "NoThinking", ("colorblind", 6), "v", (T,),
           code=1, soft=False, sampled_output=True, sglang="native", nothinking=True),
    Method("soft", "Soft Thinking", ("colorblind", 2), "D", (K, MIN_P, TAU, L),
           code=0, cold_stop=True, sglang="driver", table3_label="Soft Thinking w/ Cold Stop"),
    Method("soft_no_cold_stop", "Soft Thinking w/o Cold Stop", ("colorblind", 3), "d", (K, MIN_P),
           base="soft", when=(("cold_stop.threshold", 0.0), ("noise.kind", "none"))),
    Method("avg_embedding", "Average Embedding", ("colorblind", 5), "P", (("k", "avg_embedding.k"),),
           code=3, cold_stop=True, section="avg_embedding", sglang="driver"),
    Method("coconut_tf", "COCONUT-TF", ("colorblind", 4), "X", (("h", "coconut.hidden"),),
           code=2, cold_stop=True, section="coconut", topk_concept=False),
    Method("soft_gumbel", "Soft Thinking + Gumbel", ("dark", 9), "p",
           (K, ("τ_g", "noise.gumbel_tau"), MIN_P, COLD), base="soft", when=(("noise.kind", "gumbel"),)),
    Method("soft_dirichlet", "Soft Thinking + Dirichlet", ("dark", 4), "h",
           (K, ("α", "noise.dirichlet_alpha"), MIN_P, COLD), base="soft", when=(("noise.kind", "dirichlet"),)),
    Method("moi", "Mixture of Inputs", ("colorblind", 7), "^", (("β", "moi.beta"), ("K_m", "moi.top_k")),
           code=4, sampled_output=True, section="moi", sglang="driver"),
    Method("swir", "SwiReasoning", ("colorblind", 8), "<",
           (("α₀", "swir.alpha0"), ("β₀", "swir.beta0"), ("W", "swir.window"), ("C", "swir.max_switches")),
           code=5, sampled_output=True, section="swir", topk_concept=False),
    Method("thinkrouter", "ThinkRouter", ("colorblind", 9), ">",
           (("τ_r", "thinkrouter.threshold"), ("conf", "thinkrouter.confidence_source"),
            ("discrete", "thinkrouter.discrete")),
           code=6, cold_stop=True, section="thinkrouter", sglang="driver"),
]}
#: the values of the config key `method`, in display order
METHODS: dict[str, Method] = {k: m for k, m in ROWS.items() if m.base is None}


def register(method: Method) -> Method:
    """Add a method or a variant row at run time (a plug-in, or a test): everything that reads the registry sees it.
    A method needs a `code` that `core.step` implements; a variant needs a registered `base`."""
    if method.name in ROWS:
        raise ValueError(f"method {method.name!r} is already registered")
    if method.base is None and method.code < 0:
        raise ValueError(f"method {method.name!r}: give the core.step code it runs (code=...)")
    if method.base is not None and method.base not in METHODS:
        raise ValueError(f"variant {method.name!r}: base {method.base!r} is not a registered method")
    ROWS[method.name] = method
    if method.base is None:
        METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    ROWS.pop(name, None)
    METHODS.pop(name, None)


def get(name: str) -> Method:
    """The record of a method or row; a KeyError names the known ones."""
    if name not in ROWS:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(ROWS)}")
    return ROWS[name]


def method_of(row: str) -> Method:
    """The config method a row runs (itself for a plain method)."""
    m = get(row)
    return METHODS[m.base] if m.base else m


def setting(gen: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A dotted key of a nested generation dict (`config.json` "generation")."""
    cur: Any = gen
    for part in key.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def row_of(gen: Mapping[str, Any]) -> str:
    """The table row of a run, from its resolved generation config: the variant of its method whose `when` settings
    it has (the `when` sets of one method's variants exclude each other), else the method itself."""
    method = gen.get("method")
    for name, v in ROWS.items():
        if v.base == method and all(_same(setting(gen, k), want) for k, want in v.when):
            return name
    return str(method)


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float):
        try:
            return float(got) == want
        except (TypeError, ValueError):
            return False
    return got == want


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def params_label(row: str, gen: Mapping[str, Any] | None) -> str:
    """The key parameters of a row as printed beside its name ("K 10, min-p 0.001, τ 0.01, L 32"), from the run's
    resolved generation config. Absent parameters are left out."""
    gen = gen or {}
    if row not in ROWS:
        return ""

    def value(key: str) -> str | None:
        v = setting(gen, key)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else _num(v)

    parts = []
    for symbol, key in ROWS[row].params:
        if (symbol, key) == COLD:
            tau = setting(gen, "cold_stop.threshold")
            if tau is None or (isinstance(tau, float) and math.isnan(tau)):
                continue
            if float(tau) == 0.0:
                parts.append("Cold Stop off")
                continue
            cold = ", ".join(f"{s} {value(k)}" for s, k in (TAU, L) if value(k) is not None)
            parts.append(cold + (" (H/ln V)" if setting(gen, "entropy.normalise") == "log_vocab" else ""))
        elif value(key) is not None:
            parts.append(f"{symbol} {value(key)}")
    return ", ".join(parts)
