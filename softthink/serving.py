"""The serving layout of an SGLang run: its `serving` section, validated, and the memory sizing rule.

A run spec's (or a profile's defaults') ``serving`` section says how the run's SGLang server is laid out::

    serving:
      tp_size: 8                 # tensor-parallel ranks per replica (changes numerics: part of the run key)
      dp_size: 1                 # data-parallel replicas (each tp_size GPUs)
      nnodes: 1                  # nodes one replica spans (multi-node TP)
      mem_fraction_static: 0.85  # share of each GPU for weights + KV pool (sizing default 0.85 on CUDA)
      max_running_requests: null # null: sized from the KV pool (below)
      kmax: 30                   # static concept width of the server (>= think.max_topk)
      driver: A                  # A: custom logit processor (loopback only); B: sample hook (changes numerics
                                 #   only through float order: part of the run key)
      context_length: null       # SGLang's --context-length
      gpu_memory_gb: 80          # memory of one GPU, for the sizing check
      extra: {}                  # further SGLang ServerArgs fields
      url: null                  # attach to a running server instead of starting one
      api_key_env: SOFTTHINK_SGLANG_API_KEY   # the server's --api-key is read from this variable, never stored

Sizing (CUDA; docs/sglang.md "Memory sizing")::

    weights      = parameters x dtype bytes
    KV per token = 2 x layers x kv_heads x head_dim x dtype bytes
    KV per GPU   = mem_fraction_static x GPU memory - weights / tp_size - activations (ACTIVATION_GB)
    KV tokens    = KV per GPU x tp_size / KV per token          (one replica)
    max_running_requests = floor(0.9 x KV tokens / (prompt + max_new_tokens))

A layout whose KV tokens cannot hold one ``prompt + max_new_tokens`` request is refused with these numbers.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softthink.config import ConfigError

DEFAULT_API_KEY_ENV = "SOFTTHINK_SGLANG_API_KEY"  # the variable servers started by softthink read (launch.API_KEY_ENV)
DEFAULT_MEM_FRACTION = 0.85
ACTIVATION_GB = 4.0  # per GPU: activations, CUDA graphs, the plugin's tables (measured order of magnitude)
PROMPT_TOKENS_ALLOWANCE = 1024  # prompts of the paper's benchmarks stay below this (LiveCodeBench's longest ~900)
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4, "auto": 2}
DRIVERS = ("A", "B")


@dataclass
class ServingSpec:
    """An SGLang run's serving layout (see the module docstring). Build with :meth:`from_value` (validated)."""

    tp_size: int = 1
    dp_size: int = 1
    nnodes: int = 1
    mem_fraction_static: float | None = None
    max_running_requests: int | None = None
    kmax: int = 30
    driver: str = "A"
    context_length: int | None = None
    gpu_memory_gb: float = 80.0
    extra: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV

    KEYS = ("tp_size", "dp_size", "nnodes", "mem_fraction_static", "max_running_requests", "kmax", "driver",
            "context_length", "gpu_memory_gb", "extra", "url", "api_key_env")
    # what changes the numbers a run produces (reduction order, the sampling path): part of the run key
    NUMERIC_KEYS = ("tp_size", "driver")

    @classmethod
    def from_value(cls, v: Any) -> "ServingSpec":
        import difflib

        if v is None:
            return cls()
        if not isinstance(v, dict):
            raise ConfigError(f"serving: expected a mapping of {', '.join(cls.KEYS)}, got {v!r}")
        for k in v:
            if k not in cls.KEYS:
                close = difflib.get_close_matches(str(k), cls.KEYS, n=1)
                hint = f" (did you mean 'serving.{close[0]}'?)" if close else ""
                secret = " (secrets come from the environment: name the variable in serving.api_key_env)" \
                    if "key" in str(k).lower() or "token" in str(k).lower() else ""
                raise ConfigError(f"unknown key 'serving.{k}'{hint}{secret}; allowed keys: "
                                  + ", ".join(f"serving.{a}" for a in cls.KEYS))
        d = dict(v)
        for k in ("tp_size", "dp_size", "nnodes", "kmax"):
            if k in d and (isinstance(d[k], bool) or not isinstance(d[k], int) or d[k] < 1):
                raise ConfigError(f"serving.{k}: expected an integer >= 1, got {d[k]!r}")
        for k in ("max_running_requests", "context_length"):
            if d.get(k) is not None and (isinstance(d[k], bool) or not isinstance(d[k], int) or d[k] < 1):
                raise ConfigError(f"serving.{k}: expected an integer >= 1 or null, got {d[k]!r}")
        mf = d.get("mem_fraction_static")
        if mf is not None and (isinstance(mf, bool) or not isinstance(mf, (int, float)) or not 0 < mf < 1):
            raise ConfigError(f"serving.mem_fraction_static: expected a number in (0, 1) or null, got {mf!r}")
        gm = d.get("gpu_memory_gb", 80.0)
        if isinstance(gm, bool) or not isinstance(gm, (int, float)) or gm <= 0:
            raise ConfigError(f"serving.gpu_memory_gb: expected a positive number, got {gm!r}")
        drv = str(d.get("driver", "A")).upper()
        if drv not in DRIVERS:
            raise ConfigError(f"serving.driver: {d.get('driver')!r} is not allowed; choose A or B")
        d["driver"] = drv
        if d.get("nnodes", 1) > 1 and drv == "A":  # its other nodes listen beyond loopback (docs/sglang.md)
            raise ConfigError("serving.driver: a multi-node server (serving.nnodes > 1) runs Driver B: Driver A "
                              "deserialises code from every client and is kept to loopback servers")
        if not isinstance(d.get("extra", {}), dict):
            raise ConfigError(f"serving.extra: expected a mapping of SGLang ServerArgs fields, got {d['extra']!r}")
        url = d.get("url")
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise ConfigError(f"serving.url: expected an http(s):// URL of a running sglang-serve, got {url!r}")
        ake = d.get("api_key_env", DEFAULT_API_KEY_ENV)
        if not isinstance(ake, str) or not ake.replace("_", "").isalnum():
            raise ConfigError(f"serving.api_key_env: expected the name of an environment variable, got {ake!r}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def key_part(self) -> dict[str, Any] | None:
        """The numerics-changing keys for the run key; None for the defaults (so older runs keep their keys)."""
        part = {k: getattr(self, k) for k in self.NUMERIC_KEYS}
        return None if part == {"tp_size": 1, "driver": "A"} else part

    def group_key(self) -> tuple:
        """Everything a server is started with: runs with equal group keys (and model, dtype) share one server."""
        return (self.tp_size, self.dp_size, self.nnodes, self.mem_fraction_static, self.max_running_requests,
                self.kmax, self.driver, self.context_length, json.dumps(self.extra, sort_keys=True), self.url)

    @property
    def gpus_per_node(self) -> int:
        """GPUs one server takes on each of its nodes (one replica of tp_size spans nnodes)."""
        return max(1, self.tp_size // self.nnodes) * self.dp_size


# ================================================================================================================
# model shapes and sizing


@dataclass
class ModelShape:
    """What sizing needs of a model: parameter count and the KV cache's per-token width."""

    params: float
    layers: int
    kv_heads: int
    head_dim: int
    kv_width: int | None = None  # MLA: the compressed KV width per layer (kv_lora_rank + rope dim), replaces 2*h*d

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        per_layer = self.kv_width if self.kv_width else 2 * self.kv_heads * self.head_dim
        return self.layers * per_layer * dtype_bytes


# The paper's models, from their published config.json (no hub here): parameters, layers, KV heads, head dim.
KNOWN_SHAPES = {
    "Qwen/QwQ-32B": ModelShape(32.76e9, 64, 8, 128),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": ModelShape(32.76e9, 64, 8, 128),
    "deepseek-ai/DeepSeek-R1-Distill-Llama-70B": ModelShape(70.55e9, 80, 8, 128),
    "Qwen/Qwen3-30B-A3B-Thinking-2507": ModelShape(30.53e9, 48, 4, 128),
}


def shape_from_config(cfg: dict[str, Any], params: float | None = None) -> ModelShape:
    """A :class:`ModelShape` from a config.json mapping; ``params`` counted from the config when not given
    (dense and MoE decoders: embeddings, attention, MLP or experts; norms ignored)."""
    c = cfg.get("text_config", cfg)
    h, L = int(c["hidden_size"]), int(c["num_hidden_layers"])
    nq = int(c["num_attention_heads"])
    kvh = int(c.get("num_key_value_heads") or nq)
    hd = int(c.get("head_dim") or h // nq)
    kv_width = None
    if c.get("kv_lora_rank"):  # multi-head latent attention: one compressed vector + the rope part per layer
        kv_width = int(c["kv_lora_rank"]) + int(c.get("qk_rope_head_dim", 64))
    if params is None:
        V = int(c["vocab_size"])
        emb = V * h * (1 if c.get("tie_word_embeddings") else 2)
        attn = h * nq * hd + 2 * h * kvh * hd + nq * hd * h
        n_exp = int(c.get("num_experts") or c.get("n_routed_experts") or 0)
        if n_exp:
            mlp = n_exp * 3 * h * int(c.get("moe_intermediate_size") or c["intermediate_size"])
        else:
            mlp = 3 * h * int(c["intermediate_size"])
        params = emb + L * (attn + mlp)
    return ModelShape(float(params), L, kvh, hd, kv_width)


def model_shape(model: str) -> ModelShape | None:
    """The model's shape: the table of paper models, else a local folder's config.json; None when it cannot be
    known offline (a hub id not in the table: the layout is then not sized)."""
    if model in KNOWN_SHAPES:
        return KNOWN_SHAPES[model]
    cfg = Path(model) / "config.json"
    return shape_from_config(json.loads(cfg.read_text())) if cfg.is_file() else None


@dataclass
class Sizing:
    """The numbers of one layout check (all per replica unless named per GPU)."""

    model: str
    tp_size: int
    gpu_memory_gb: float
    mem_fraction_static: float
    weights_gb: float
    kv_gb_per_gpu: float
    kv_bytes_per_token: int
    kv_tokens: int
    request_tokens: int
    max_running_requests: int

    def describe(self) -> str:
        return (f"{self.model} with tp_size {self.tp_size} on {self.gpu_memory_gb:g} GB GPUs at mem_fraction_static "
                f"{self.mem_fraction_static:g}: weights {self.weights_gb:.1f} GB ({self.weights_gb / self.tp_size:.1f} "
                f"GB per GPU), KV pool {self.kv_gb_per_gpu:.1f} GB per GPU = {self.kv_tokens:,} tokens at "
                f"{self.kv_bytes_per_token / 1024:.0f} KiB per token; one request = {self.request_tokens:,} tokens "
                f"-> max_running_requests {self.max_running_requests}")


def size_layout(model: str, serving: ServingSpec, dtype: str, max_new_tokens: int, shape: ModelShape | None = None,
                prompt_tokens: int = PROMPT_TOKENS_ALLOWANCE) -> Sizing | None:
    """Check that ``serving`` holds ``model``'s weights plus at least one ``prompt + max_new_tokens`` request on
    its GPUs (rule in the module docstring). Returns the numbers, None when the model's shape is unknown offline;
    raises :class:`ConfigError` with the numbers when it does not fit."""
    shape = shape or model_shape(model)
    if shape is None:
        return None
    db = DTYPE_BYTES.get(dtype, 2)
    mf = serving.mem_fraction_static or DEFAULT_MEM_FRACTION
    weights_gb = shape.params * db / 1e9
    kv_gb = mf * serving.gpu_memory_gb - weights_gb / serving.tp_size - ACTIVATION_GB
    kv_tok_bytes = shape.kv_bytes_per_token(db)
    kv_tokens = max(0, int(kv_gb * 1e9 * serving.tp_size / kv_tok_bytes))
    req = prompt_tokens + max_new_tokens
    s = Sizing(model, serving.tp_size, serving.gpu_memory_gb, mf, weights_gb, kv_gb, kv_tok_bytes, kv_tokens, req,
               int(0.9 * kv_tokens / req))
    if kv_tokens < req:
        need = next((t for t in (1, 2, 4, 8, 16, 32) if t > serving.tp_size and
                     mf * serving.gpu_memory_gb - weights_gb / t - ACTIVATION_GB > req * kv_tok_bytes / t / 1e9),
                    None)
        hint = f"; tp_size {need} would fit" if need else ""
        raise ConfigError(f"serving: the layout cannot hold one request: {s.describe()}{hint}")
    return s


def check_layout(spec: Any, gpus_given: int | None = None) -> Sizing | None:
    """Validate an SGLang run spec's layout before anything loads (the spec already checked kmax): the GPUs it
    needs against ``gpus_given`` (when known), then sizing on CUDA. Returns the sizing (None off CUDA or for a
    model whose shape is unknown offline)."""
    sv: ServingSpec = spec.serving
    if sv.url:
        return None  # an attached server is checked against the spec when the client connects
    if gpus_given is not None and gpus_given > 0 and sv.gpus_per_node > gpus_given:
        raise ConfigError(f"serving: tp_size {sv.tp_size} x dp_size {sv.dp_size} needs {sv.gpus_per_node} GPUs per "
                          f"node, only {gpus_given} given (--gpus)")
    if spec.device in ("cpu",) or (spec.device == "auto" and not _cuda()):
        return None
    dtype = spec.dtype if spec.dtype != "auto" else "bfloat16"
    return size_layout(spec.model, sv, dtype, spec.generation.max_new_tokens)


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def launch_options(spec: Any, sizing: Sizing | None = None, port: int = 30000, host: str = "127.0.0.1"):
    """The :class:`softthink.sglang_glue.launch.LaunchOptions` of a run spec's server (``sglang-serve`` takes
    the same fields as flags)."""
    from softthink.runkey import resolve_device
    from softthink.sglang_glue.launch import LaunchOptions

    sv: ServingSpec = spec.serving
    device = resolve_device(spec.device)
    mrr = sv.max_running_requests or (sizing.max_running_requests if sizing else None)
    mf = sv.mem_fraction_static or (DEFAULT_MEM_FRACTION if device == "cuda" else None)
    return LaunchOptions(model_path=spec.model, device="cuda" if device.startswith("cuda") else "cpu",
                         driver=sv.driver, tp_size=sv.tp_size, dp_size=sv.dp_size, nnodes=sv.nnodes,
                         mem_fraction_static=mf, max_running_requests=mrr, kmax=sv.kmax,
                         dtype=None if spec.dtype == "auto" else spec.dtype, context_length=sv.context_length,
                         host=host, port=port, extra=dict(sv.extra))
