"""Launch SGLang with the soft-thinking plugin: `SGLangEngine` (offline, `sgl.Engine`), server command lines,
refusals of unsupported modes, and the CLI commands `sglang-serve` / `sglang-check`.

Imports without SGLang (and without CUDA): everything SGLang-specific is imported inside functions, and a missing
piece raises one `SGLangUnavailable` error saying what to install or which engine to use.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from softthink.sglang_glue import EXTERNAL_MODEL_PACKAGE, SUPPORTED_SGLANG

INSTALL_HINT = (
    "pip install 'softthink[sglang]' (pins sglang==" + SUPPORTED_SGLANG + "; Linux x86_64/aarch64, Python 3.11+; an "
    "NVIDIA GPU with CUDA 13 drivers, or device='cpu' on x86-64, see docs/sglang.md), or run the transformers engine "
    "instead (--engine hf / HFEngine)"
)


class SGLangUnavailable(RuntimeError):
    """SGLang (or CUDA) is missing: the message says what to install or which engine to use."""


class UnsupportedMode(ValueError):
    """A server mode the plugin refuses (docs/design/sglang-plugin.md §9)."""


class UnsafeServer(ValueError):
    """A server that would let anyone who reaches its port run code in it (docs/sglang.md, "Server security")."""


#: the environment variable holding the API key of SGLang servers (`--api-key`) and of the clients that talk to them
API_KEY_ENV = "SOFTTHINK_SGLANG_API_KEY"


def api_key_from_env(environ=None) -> Optional[str]:
    """The API key servers require and clients send, from `$SOFTTHINK_SGLANG_API_KEY` (None when unset or empty).

    Read where it is used and nowhere kept: not a `LaunchOptions` field, so it never reaches run records, run keys
    or a printed command line."""
    key = (os.environ if environ is None else environ).get(API_KEY_ENV, "").strip()
    return key or None


def is_loopback(host: str) -> bool:
    """Does `host` only accept connections from this machine? `localhost`, 127.0.0.0/8 and ::1 do; `0.0.0.0`,
    `::`, interface addresses and other names (they may resolve to anything) do not."""
    import ipaddress

    h = (host or "").strip().strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------- checks
def require_sglang(need_cuda: bool = True):
    """Import SGLang and check the version and CUDA. Raises `SGLangUnavailable` with one clear message."""
    import importlib.util

    try:
        found = importlib.util.find_spec("sglang.srt") is not None  # not a stray folder named `sglang`
    except (ImportError, ValueError):
        found = False
    if not found:
        raise SGLangUnavailable(f"the sglang engine needs SGLang, which is not installed. {INSTALL_HINT}")
    import sglang

    version = getattr(sglang, "__version__", "?")
    if version != SUPPORTED_SGLANG:
        import warnings

        warnings.warn(f"softthink is pinned to sglang=={SUPPORTED_SGLANG}; found {version} (Driver A supports "
                      "0.5.10-0.5.23, Driver B 0.5.16-0.5.23)", stacklevel=2)
    if need_cuda:
        import torch

        if not torch.cuda.is_available():
            raise SGLangUnavailable(
                "the sglang engine on device 'cuda' needs an NVIDIA GPU with CUDA; on this machine use device='cpu' "
                "(SGLangEngine(model, device='cpu'), sglang-serve --device cpu; real SGLang forward passes on the CPU) "
                "or the transformers engine (--engine hf / HFEngine)")
    return sglang


def _get(args, name, default=None):
    if isinstance(args, dict):
        return args.get(name, default)
    return getattr(args, name, default)


def check_server_args(args) -> List[str]:
    """Refuse the modes the plugin does not support; returns warnings for untested ones.
    `args` is a `ServerArgs` or a dict of its fields."""
    version = SUPPORTED_SGLANG
    refusals = []
    if int(_get(args, "pp_size", 1) or 1) > 1:
        refusals.append("pipeline parallelism (pp_size > 1)")
    if _get(args, "speculative_algorithm", None):
        refusals.append(f"speculative decoding (speculative_algorithm={_get(args, 'speculative_algorithm')})")
    if _get(args, "enable_mixed_chunk", False):
        refusals.append("mixed chunked prefill (enable_mixed_chunk)")
    if _get(args, "enable_dp_attention", False) or int(_get(args, "attn_dp_size", 1) or 1) > 1:
        refusals.append("DP attention (enable_dp_attention / attn_dp_size > 1)")
    # modes whose forward passes skip the model subclass's extend reset or its decode mix (stale row state)
    if str(_get(args, "disaggregation_mode", "null") or "null") != "null":
        refusals.append(f"PD disaggregation (disaggregation_mode={_get(args, 'disaggregation_mode')})")
    if int(_get(args, "attn_cp_size", 1) or 1) > 1 or int(_get(args, "dcp_size", 1) or 1) > 1:
        refusals.append("context parallelism (attn_cp_size / dcp_size > 1)")
    if _get(args, "enable_pdmux", False):
        refusals.append("PD multiplexing / split prefill (enable_pdmux)")
    if str(_get(args, "model_impl", "auto") or "auto") == "transformers":
        refusals.append("--model-impl transformers (the soft classes are SGLang implementations)")
    if int(_get(args, "tp_size", 1) or 1) > 1 and (_get(args, "enable_symm_mem", False)
                                                   or _get(args, "enable_torch_symm_mem", False)):
        refusals.append("symmetric-memory all-reduce with TP (enable_symm_mem / enable_torch_symm_mem): the "
                        "shard-local concept mix allocates outside the symmetric pool")
    if refusals:
        raise UnsupportedMode(
            "softthink (SGLang " + version + " plugin) refuses to start with: " + "; ".join(refusals) +
            ". Supported: TP (--tp-size), DP replicas (--dp-size), CUDA graphs, the overlap scheduler.")
    warnings = []
    if _get(args, "enable_lora", False) or _get(args, "lora_paths", None):
        warnings.append("LoRA is untested with soft thinking")
    if int(_get(args, "num_continuous_decode_steps", 1) or 1) > 1:
        warnings.append("num_continuous_decode_steps > 1 is untested with soft thinking")
    return warnings


# ----------------------------------------------------------------------------------------------- options
@dataclass
class LaunchOptions:
    """What the launchers need; field names follow SGLang's ServerArgs where they exist."""

    model_path: str
    tokenizer_path: Optional[str] = None
    device: str = "cuda"  # "cpu": SGLang's CPU backend with the settings of cpu.CPU_SERVER_ARGS
    driver: str = "A"  # A: custom logit processor; B: entry-point AROUND hook on ModelRunner.sample
    tp_size: int = 1
    dp_size: int = 1
    num_gpus: Optional[int] = None  # tp_size * dp_size when None
    mem_fraction_static: Optional[float] = None
    max_running_requests: Optional[int] = None
    cuda_graph_bs: Optional[List[int]] = None  # -> cuda_graph_bs_decode
    cuda_graph_max_bs: Optional[int] = None
    disable_radix_cache: bool = True
    disable_cuda_graph: bool = False
    disable_overlap_schedule: bool = False
    random_seed: int = 0
    deterministic: bool = False  # --enable-deterministic-inference (parity runs)
    kmax: int = 30  # static concept width (SOFTTHINK_SGLANG_KMAX)
    max_rows: Optional[int] = None  # state-table rows (SOFTTHINK_SGLANG_MAX_ROWS)
    mix_dtype: str = "model"
    host: str = "127.0.0.1"  # loopback: only this machine reaches the server (see allow_remote_code_execution)
    port: int = 30000
    #: Driver A on a host beyond loopback. SGLang's `--enable-custom-logit-processor` (Driver A) runs `dill.loads`
    #: on a string every client sends, so anyone who reaches the port can run code in the server; refused unless
    #: this is set. Driver B deserialises nothing from clients: use it on shared networks.
    allow_remote_code_execution: bool = False
    nnodes: int = 1
    node_rank: int = 0
    dist_init_addr: Optional[str] = None
    dtype: Optional[str] = None
    context_length: Optional[int] = None
    max_total_tokens: Optional[int] = None  # KV pool size in tokens (CPU default cpu.CPU_DEFAULT_MAX_TOTAL_TOKENS)
    chunked_prefill_size: Optional[int] = None
    log_level: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.driver = self.driver.upper()
        if self.driver not in ("A", "B"):
            raise ValueError("driver must be 'A' (custom logit processor) or 'B' (sample hook)")
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda' or 'cpu', not {self.device!r}")
        if self.num_gpus is not None:  # GPUs per node: DP replicas fill what TP leaves
            if self.num_gpus % self.tp_size:
                raise ValueError(f"num_gpus={self.num_gpus} is not a multiple of tp_size={self.tp_size}")
            self.dp_size = max(1, self.num_gpus // self.tp_size)
        for name, use in (("host", "host / --host"), ("api_key", f"the environment variable {API_KEY_ENV}")):
            if name in self.extra:  # the checks below read the real ones; a key in the options would be stored
                raise ValueError(f"set {name!r} through {use}, not through extra / --extra")
        kw = self.server_kwargs()
        check_server_args(kw)
        if kw.get("enable_custom_logit_processor") and not is_loopback(self.host) \
                and not self.allow_remote_code_execution:
            raise UnsafeServer(
                f"a server on host {self.host!r} with Driver A (SGLang's --enable-custom-logit-processor, which "
                "deserialises code every client sends) lets anyone who reaches the port run code on this machine. "
                "Use Driver B (--driver B), which deserialises nothing from clients, or listen on 127.0.0.1; "
                "to accept the risk on a network you trust, pass --allow-remote-code-execution "
                "(LaunchOptions(allow_remote_code_execution=True))")

    def env(self) -> Dict[str, str]:
        env = {"SOFTTHINK_SGLANG_KMAX": str(self.kmax), "SOFTTHINK_SGLANG_MIX_DTYPE": self.mix_dtype}
        if self.device == "cpu":
            from softthink.sglang_glue.cpu import cpu_env

            env.update(cpu_env(ranks=self.tp_size * self.dp_size, tp=self.tp_size))
        if self.max_rows:
            env["SOFTTHINK_SGLANG_MAX_ROWS"] = str(self.max_rows)
        if self.driver == "A":
            env["SGLANG_EXTERNAL_MODEL_PACKAGE"] = EXTERNAL_MODEL_PACKAGE
            env["SOFTTHINK_SGLANG_DRIVER"] = "A"  # the plugin's admission check of processor strings
        else:
            env["SOFTTHINK_SGLANG_DRIVER"] = "B"
            env["SGLANG_EXTERNAL_MODEL_PACKAGE"] = EXTERNAL_MODEL_PACKAGE  # classes also via the registry scan
        return env

    def server_kwargs(self) -> Dict[str, Any]:
        kw: Dict[str, Any] = {
            "model_path": self.model_path,
            "tp_size": self.tp_size,
            "dp_size": self.dp_size,
            "random_seed": self.random_seed,
            "disable_radix_cache": self.disable_radix_cache,
        }
        if self.tokenizer_path:
            kw["tokenizer_path"] = self.tokenizer_path
        if self.driver == "A":
            kw["enable_custom_logit_processor"] = True
        for name in ("mem_fraction_static", "max_running_requests", "dtype", "context_length", "dist_init_addr",
                     "max_total_tokens", "chunked_prefill_size", "log_level"):
            v = getattr(self, name)
            if v is not None:
                kw[name] = v
        if self.device == "cpu":
            from softthink.sglang_glue import cpu

            kw.update(cpu.CPU_SERVER_ARGS)
            kw.setdefault("dtype", cpu.CPU_DEFAULT_DTYPE)
            kw.setdefault("max_total_tokens", cpu.CPU_DEFAULT_MAX_TOTAL_TOKENS)
        if self.cuda_graph_bs:
            kw["cuda_graph_bs_decode"] = list(self.cuda_graph_bs)
        if self.cuda_graph_max_bs:
            kw["cuda_graph_max_bs_decode"] = self.cuda_graph_max_bs
        if self.disable_cuda_graph:
            kw["disable_cuda_graph"] = True
        if self.disable_overlap_schedule:
            kw["disable_overlap_schedule"] = True
        if self.deterministic:
            kw["enable_deterministic_inference"] = True
        if self.nnodes > 1:
            kw["nnodes"] = self.nnodes
            kw["node_rank"] = self.node_rank
        kw.update(self.extra)
        return kw

    def server_command(self) -> List[str]:
        """`python -m sglang.launch_server ...` for these options (env from `env()`)."""
        cmd = [sys.executable, "-m", "sglang.launch_server", "--host", self.host, "--port", str(self.port)]
        for k, v in self.server_kwargs().items():
            if k == "disable_cuda_graph":  # no CLI flag in 0.5.23
                cmd += ["--disable-decode-cuda-graph", "--disable-prefill-cuda-graph"]
                continue
            flag = "--" + k.replace("_", "-")
            if isinstance(v, bool):
                if v:
                    cmd.append(flag)
            elif isinstance(v, (list, tuple)):
                cmd += [flag, *map(str, v)]
            else:
                cmd += [flag, str(v)]
        key = api_key_from_env()
        if key:  # read now, never kept in the options (server_kwargs, run records); masked when printed
            cmd += ["--api-key", key]
        return cmd


# ----------------------------------------------------------------------------------------------- engine
def _finish_reason(meta: dict, eos_ids: Sequence[int]) -> str:
    fr = meta.get("finish_reason") or {}
    kind = fr.get("type") if isinstance(fr, dict) else str(fr)
    if kind == "length":
        return "length"
    if kind == "abort":
        return "abort"
    matched = fr.get("matched") if isinstance(fr, dict) else None
    if isinstance(matched, int) and matched in set(eos_ids):
        return "eos"
    return "stop"


def _think_end_reason(cfg, end_step: Optional[int], m: int) -> Optional[str]:
    """`budget` when the marker sits exactly where the budget forces it, else `marker` (a Cold Stop also ends with
    the marker; the records of Driver B tell them apart)."""
    if end_step is None:
        return None
    if cfg.think.budget > 0 and end_step == cfg.think.budget + m:
        return "budget"
    return "marker"


def think_stats(token_ids: Sequence[int], marker: Sequence[int], soft: bool):
    """(think_end_step, num_thinking_tokens) from the recorded ids: THINK lasts until the marker's last id."""
    m = len(marker)
    if not soft or m == 0:
        return None, 0
    ids = list(token_ids)
    for j in range(m - 1, len(ids)):
        if tuple(ids[j - m + 1:j + 1]) == tuple(marker):
            return j + 1, j + 1
    return None, len(ids)


def _allow_nested_event_loop() -> None:
    """SGLang's offline Engine drives its own asyncio loop with `run_until_complete`; inside a Jupyter kernel (the
    notebooks, papermill) a loop is already running in this thread, so patch it to allow nesting."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # a plain script: nothing to do
    try:
        import nest_asyncio
    except ImportError:
        raise SGLangUnavailable("SGLangEngine inside a running event loop (Jupyter) needs nest_asyncio: "
                                "pip install nest_asyncio (part of softthink[sglang])") from None
    nest_asyncio.apply()


class SGLangEngine:
    """Soft Thinking on SGLang behind the `GenerationConfig` / `Generation` API of `HFEngine`.

    >>> eng = SGLangEngine("Qwen/QwQ-32B", tp_size=8)               # doctest: +SKIP
    >>> gens = eng.generate(["<rendered prompt>"], GenerationConfig.from_dict({"method": "soft"}))  # doctest: +SKIP
    """

    def __init__(self, model_path: str, tokenizer=None, **options):
        device = options.get("device", "cuda")
        require_sglang(need_cuda=device != "cpu")
        from softthink.sglang_glue import cpu

        if device == "cpu":
            cpu.activate_cpu()
        self.model_spec = model_path
        self.options = LaunchOptions(model_path=cpu.materialize(model_path), **options)
        os.environ.update(self.options.env())  # inherited by the spawned scheduler processes
        if self.options.driver == "B":
            from softthink.sglang_glue.plugin import register

            register(force="B")  # this process (the schedulers run it through the entry point)
        _allow_nested_event_loop()
        import sglang as sgl

        self._engine = sgl.Engine(**self.options.server_kwargs())
        if tokenizer is None:
            from softthink.models import ALIASES, load_tokenizer

            tokenizer = load_tokenizer(model_path) if model_path in ALIASES else None
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.options.tokenizer_path or self.options.model_path)
        self.tokenizer = tokenizer
        self.retractions = 0
        self.last_meta: List[dict] = []

    # -- request building ------------------------------------------------------------------------------------
    def marker_ids(self, cfg) -> List[int]:
        return marker_ids(self.tokenizer, cfg)

    def eos_ids(self) -> List[int]:
        return eos_ids(self.tokenizer)

    def request(self, cfg, uid: int) -> Dict[str, Any]:
        """The request for `cfg`, checked here against this engine's static tables (the server would refuse it)."""
        return checked_request(self.tokenizer, cfg, uid, self.options.driver, self.options.kmax)

    # -- generation ------------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence, config, sample_uids: Optional[Sequence[int]] = None) -> list:
        """One `Generation` per prompt, all with `config` (a `GenerationConfig` or dict)."""
        return self.generate_mixed(prompts, [config] * len(prompts), sample_uids)

    def generate_mixed(self, prompts: Sequence, configs: Sequence, sample_uids: Optional[Sequence[int]] = None,
                       ) -> list:
        """One `Generation` per prompt, prompt i with `configs[i]`: methods and settings may differ inside one batch
        (SGLang batches them together). `self.last_meta` keeps SGLang's `meta_info` of each output."""
        from softthink.chat import encode_prompt  # the same prompt encoding as HFEngine
        from softthink.config import GenerationConfig

        configs = [c if isinstance(c, GenerationConfig) else GenerationConfig.from_dict(c) for c in configs]
        uids = list(sample_uids) if sample_uids is not None else list(range(len(prompts)))
        if not (len(uids) == len(configs) == len(prompts)):
            raise ValueError(f"{len(prompts)} prompts, {len(configs)} configs and {len(uids)} sample uids")
        input_ids = [encode_prompt(self.tokenizer, p) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
        reqs = [self.request(c, u) for c, u in zip(configs, uids)]
        t0 = time.time()
        kwargs: Dict[str, Any] = {"input_ids": input_ids, "sampling_params": [r["sampling_params"] for r in reqs]}
        if any(r.get("custom_logit_processor") for r in reqs):
            kwargs["custom_logit_processor"] = [r.get("custom_logit_processor") for r in reqs]
        salts = [r.get("cache_salt") or "" for r in reqs]  # SGLang reads "" as no salt
        if any(salts):
            kwargs["cache_salt"] = salts
        outs = self._engine.generate(**kwargs)
        wall = time.time() - t0
        self.last_meta = [o.get("meta_info", {}) for o in outs]
        self.retractions += sum(int(m.get("num_retractions") or 0) for m in self.last_meta)
        return [output_to_generation(self.tokenizer, cfg, len(p), uid, o, wall)
                for p, uid, cfg, o in zip(input_ids, uids, configs, outs)]

    def shutdown(self):
        eng = getattr(self, "_engine", None)
        if eng is not None:
            eng.shutdown()
            self._engine = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


def marker_ids(tokenizer, cfg) -> List[int]:
    ids = tokenizer.encode(cfg.think.end_str, add_special_tokens=False)
    if not ids:
        raise ValueError(f"think.end_str {cfg.think.end_str!r} encodes to no ids")
    return list(ids)


def eos_ids(tokenizer) -> List[int]:
    eos = tokenizer.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [])


def checked_request(tokenizer, cfg, uid: int, driver: str, kmax: int) -> Dict[str, Any]:
    """`build_request` for `cfg`, its widths checked on the client side against the server's static tables (the
    server would finish the request with an abort)."""
    from softthink.sglang_glue import tables as T
    from softthink.sglang_glue.driver import RequestSpec, check_widths, soft_custom_params, uses_driver

    marker = marker_ids(tokenizer, cfg)
    if uses_driver(cfg):
        spec = RequestSpec.from_params(soft_custom_params(cfg, marker, eos_ids(tokenizer), uid))
        check_widths(spec, kmax, T.env_int("SOFTTHINK_SGLANG_MARKER_MAX", T.DEFAULT_MARKER_MAX), len(tokenizer))
    return build_request(cfg, marker, eos_ids(tokenizer), uid, driver=driver)


def output_to_generation(tokenizer, cfg, prompt_tokens: int, uid: int, out: dict, wall: float):
    """One SGLang output (`Engine.generate` or HTTP `/generate`: `output_ids`, `meta_info`) as a `Generation`, with
    the thinking statistics read off the recorded ids and the text cut at a stop string as `HFEngine` does."""
    from softthink.engine import Generation

    meta = out.get("meta_info", {})
    ids = list(out.get("output_ids") or meta.get("output_ids") or [])
    marker = marker_ids(tokenizer, cfg)
    tracked = cfg.method != "nothinking"  # the prompt of NoThinking already closed the thinking
    end_step, n_think = think_stats(ids, marker, tracked)
    reason = _finish_reason(meta, eos_ids(tokenizer))
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if reason == "stop":  # cut at the stop string, as the transformers engine does
        cut = min((text.find(s) for s in cfg.stop if s in text), default=-1)
        text = text[:cut] if cut >= 0 else text
    return Generation(text=text, token_ids=ids, finish_reason=reason,
                      think_end_reason=_think_end_reason(cfg, end_step, len(marker)), num_thinking_tokens=n_think,
                      num_answer_tokens=len(ids) - n_think, think_end_step=end_step, wall_time=wall,
                      prompt_tokens=prompt_tokens, sample_uid=uid, trace=None)


def build_request(cfg, marker_ids: Sequence[int], eos_ids: Sequence[int], uid: int, driver: str = "A",
                  answer: str = "driver") -> Dict[str, Any]:
    """One request's `sampling_params` (+ `custom_logit_processor`, `cache_salt`) for `cfg`.

    Native sampling parameters = the ANSWER-phase parameters (discrete methods: the thinking ones); soft-thinking
    parameters ride in `custom_params`. Usable for `Engine.generate`, `/generate` and OpenAI `extra_body`."""
    from softthink.sglang_glue.driver import check_config, soft_custom_params, uses_driver

    check_config(cfg)
    t, a = cfg.think, cfg.answer
    if cfg.is_soft:
        if a.mode == "greedy_argmax":
            temp, top_k, top_p, min_p = 0.0, a.top_k, a.top_p, a.min_p
        else:
            temp = (t.temperature if a.temperature_source == "thinking" and a.temperature >= 1e-6 else a.temperature)
            top_k, top_p, min_p = a.top_k, a.top_p, a.min_p
    else:
        temp = 0.0 if cfg.greedy else t.temperature
        top_k, top_p, min_p = t.top_k, t.top_p, t.min_p
    sp: Dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens, "temperature": temp, "top_k": top_k, "top_p": top_p, "min_p": min_p,
        "skip_special_tokens": False,
    }
    if cfg.stop:
        sp["stop"] = list(cfg.stop)
    req: Dict[str, Any] = {"sampling_params": sp}
    if uses_driver(cfg):
        sp["custom_params"] = soft_custom_params(cfg, marker_ids, list(eos_ids), uid, answer=answer)
        if driver.upper() == "A":
            from softthink.sglang_glue.processor import processor_str

            req["custom_logit_processor"] = processor_str()
        if cfg.engine.prefix_cache_for_soft == "isolate":
            import hashlib

            h = hashlib.sha256(cfg.to_json().encode()).hexdigest()[:16]
            req["cache_salt"] = f"softthink-{h}-{uid}"
    return req


# ----------------------------------------------------------------------------------------------- CLI
def _options_from_args(a) -> LaunchOptions:
    try:
        extra = json.loads(a.extra) if a.extra else {}
    except ValueError as e:
        raise SystemExit(f"sglang-serve: --extra is not a JSON object ({e})")
    return LaunchOptions(
        model_path=a.model, device=a.device, driver=a.driver, tp_size=a.tp_size, dp_size=a.dp_size,
        num_gpus=a.num_gpus, mem_fraction_static=a.mem_fraction_static, max_running_requests=a.max_running_requests,
        cuda_graph_bs=a.cuda_graph_bs, cuda_graph_max_bs=a.cuda_graph_max_bs,
        disable_radix_cache=not a.enable_radix_cache, disable_cuda_graph=a.disable_cuda_graph,
        disable_overlap_schedule=a.disable_overlap_schedule, random_seed=a.seed, deterministic=a.deterministic,
        kmax=a.kmax, max_rows=a.max_rows, host=a.host, port=a.port, nnodes=a.nnodes, node_rank=a.node_rank,
        dist_init_addr=a.dist_init_addr, max_total_tokens=a.max_total_tokens,
        chunked_prefill_size=a.chunked_prefill_size, allow_remote_code_execution=a.allow_remote_code_execution,
        extra=extra)


def masked_command(cmd: Sequence[str]) -> List[str]:
    """`cmd` with the value of `--api-key` replaced by `***` (for printing and logs)."""
    out = list(cmd)
    for i, part in enumerate(out[:-1]):
        if part == "--api-key":
            out[i + 1] = "***"
    return [("--api-key=***" if p.startswith("--api-key=") else p) for p in out]


def cmd_serve(a) -> int:
    try:
        opts = _options_from_args(a)
    except (ValueError, UnsupportedMode) as e:
        print(f"sglang-serve: {e}", file=sys.stderr)
        return 2
    if not a.dry_run:
        try:
            require_sglang(need_cuda=opts.device != "cpu")
        except SGLangUnavailable as e:
            print(f"sglang-serve: {e}", file=sys.stderr)
            return 2
        from softthink.sglang_glue.cpu import materialize

        opts.model_path = materialize(opts.model_path)  # bundled aliases -> an HF-format directory
    cmd = opts.server_command()
    env_s = " ".join(f"{k}={shlex.quote(v)}" for k, v in opts.env().items())
    print(f"{env_s} {shlex.join(masked_command(cmd))}", flush=True)
    if not is_loopback(opts.host):  # say who can reach it; the refusals of LaunchOptions have already run
        if api_key_from_env():
            who = f"only clients that send the API key (${API_KEY_ENV}) can use it"
        else:
            who = f"anyone who reaches the port can use it (set {API_KEY_ENV} to require an API key)"
        rce = ("; Driver A: whoever can send a request can run code on this machine (--allow-remote-code-execution)"
               if opts.server_kwargs().get("enable_custom_logit_processor") else "")
        print(f"sglang-serve: listening on {opts.host}:{opts.port} beyond loopback: {who}{rce}", file=sys.stderr)
    if a.dry_run:
        return 0
    env = dict(os.environ, **opts.env())
    return subprocess.call(cmd, env=env)


def cmd_check(a) -> int:
    """Report what this machine can do with the sglang engine."""
    try:
        sgl = require_sglang(need_cuda=False)
        print(f"sglang {sgl.__version__} importable")
    except SGLangUnavailable as e:
        print(str(e))
        return 1
    import torch

    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    from softthink.sglang_glue.models import soft_classes

    from softthink.sglang_glue import PAPER_ARCHITECTURES

    classes = soft_classes()
    print(f"soft classes: {len(classes)} SGLang model classes wrapped (paper architectures: "
          f"{[c.__name__ for c in classes if c.__name__ in PAPER_ARCHITECTURES]})")
    return 0 if torch.cuda.is_available() else 2


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("sglang-serve", help="launch an SGLang server with the soft-thinking plugin")
    p.add_argument("--model", required=True,
                   help="checkpoint path, HF id or bundled alias (smollm2-135m, tiny-random-*); Qwen2/Qwen3/Llama")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="cpu: SGLang's CPU backend (x86-64; torch-native attention, fp32; docs/sglang.md)")
    p.add_argument("--driver", default="A", choices=["A", "B", "a", "b"])
    p.add_argument("--tp-size", type=int, default=1)
    p.add_argument("--dp-size", type=int, default=1)
    p.add_argument("--num-gpus", type=int, default=None, help="total GPUs on this node (dp = num_gpus / tp)")
    p.add_argument("--mem-fraction-static", type=float, default=None)
    p.add_argument("--max-running-requests", type=int, default=None)
    p.add_argument("--cuda-graph-bs", type=int, nargs="+", default=None, help="decode CUDA-graph batch sizes")
    p.add_argument("--cuda-graph-max-bs", type=int, default=None)
    p.add_argument("--enable-radix-cache", action="store_true", help="keep the prefix cache (soft requests salted)")
    p.add_argument("--disable-cuda-graph", action="store_true")
    p.add_argument("--disable-overlap-schedule", action="store_true")
    p.add_argument("--deterministic", action="store_true", help="--enable-deterministic-inference (parity runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kmax", type=int, default=30, help="static concept width (max think.max_topk)")
    p.add_argument("--max-rows", type=int, default=None, help="state-table rows (default 65536)")
    p.add_argument("--max-total-tokens", type=int, default=None, help="KV pool size in tokens (CPU default 16384)")
    p.add_argument("--chunked-prefill-size", type=int, default=None)
    p.add_argument("--host", default="127.0.0.1",
                   help="127.0.0.1 (default): this machine only. Beyond loopback use --driver B, and set "
                        f"{API_KEY_ENV} so that SGLang requires an API key (--api-key)")
    p.add_argument("--allow-remote-code-execution", action="store_true",
                   help="start Driver A on a non-loopback --host although anyone who reaches the port can then run "
                        "code in the server (SGLang's --enable-custom-logit-processor deserialises what clients send)")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=0)
    p.add_argument("--dist-init-addr", default=None)
    p.add_argument("--extra", default=None, help="JSON dict of further ServerArgs fields")
    p.add_argument("--dry-run", action="store_true", help="print the command and exit")
    p.set_defaults(func=cmd_serve)
    c = subparsers.add_parser("sglang-check", help="is SGLang + CUDA usable here for the sglang engine?")
    c.set_defaults(func=cmd_check)


__all__ = ["SGLangEngine", "LaunchOptions", "build_request", "check_server_args", "require_sglang",
           "SGLangUnavailable", "UnsupportedMode", "UnsafeServer", "add_commands", "think_stats", "api_key_from_env",
           "API_KEY_ENV", "is_loopback", "masked_command"]
