"""Tiny seeded checkpoints for every architecture family the suite supports (no files, no hub).

`tiny-random-<family>`: two decoder layers, hidden 64, the byte-level tokenizer of `models.byte_tokenizer` (single-id
`</think>`, a template that opens `<think>`), weights drawn from numpy's PCG64 in parameter-name order, so they are
identical on every machine and torch version. `tiny-random-qwen2` and `tiny-random-llama` stay in
`models._tiny_random` (their weights must not change); this module adds the other families:

| family | transformers class | what it exercises |
|---|---|---|
| `qwen3` | `Qwen3ForCausalLM` | q/k norms |
| `mistral` | `MistralForCausalLM` | the Llama path under another class name |
| `gemma2` | `Gemma2ForCausalLM` | embeddings scaled by sqrt(hidden) after the lookup, tied, final soft-capping |
| `gemma3` | `Gemma3ForCausalLM` | the scale inside the embedding module (`Gemma3TextScaledWordEmbedding`), tied |
| `phi3` | `Phi3ForCausalLM` | fused qkv / gate-up projections (Phi-4-reasoning's architecture) |
| `qwen3moe` | `Qwen3MoeForCausalLM` | mixture of experts (Qwen3-30B-A3B's architecture) |
| `deepseekv3` | `DeepseekV3ForCausalLM` | MLA attention + MoE with a shared expert (DeepSeek-R1 / V3) |
| `deepseekv2` | `DeepseekV2ForCausalLM` | MLA + MoE, greedy routing (DeepSeek-V2-Lite) |
"""
from __future__ import annotations

import numpy as np
import torch

#: family -> (transformers config class, extra config fields, seed offset)
_COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               max_position_embeddings=8192, rms_norm_eps=1e-6, bos_token_id=None)
# DeepSeek's published configs use YaRN rope scaling; SGLang's CPU MLA path supports only that rope (deepseek_yarn)
_YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 2048, "beta_fast": 32, "beta_slow": 1,
         "mscale": 1.0, "mscale_all_dim": 1.0, "rope_theta": 10000.0}
FAMILIES = {
    "qwen3": ("Qwen3Config", dict(head_dim=16, tie_word_embeddings=False), 11),
    "mistral": ("MistralConfig", dict(head_dim=16, sliding_window=None, tie_word_embeddings=False), 12),
    "gemma2": ("Gemma2Config", dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=4096,
                                    attn_logit_softcapping=None, final_logit_softcapping=30.0,
                                    hidden_activation="gelu_pytorch_tanh", hidden_act="gelu_pytorch_tanh",
                                    tie_word_embeddings=True), 13),
    "gemma3": ("Gemma3TextConfig", dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=4096,
                                        sliding_window_pattern=2, hidden_activation="gelu_pytorch_tanh",
                                        tie_word_embeddings=True), 14),
    "phi3": ("Phi3Config", dict(tie_word_embeddings=False, sliding_window=None, original_max_position_embeddings=8192,
                                resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0), 15),
    "qwen3moe": ("Qwen3MoeConfig", dict(head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                                        decoder_sparse_step=1, norm_topk_prob=True, mlp_only_layers=[],
                                        tie_word_embeddings=False), 16),
    "deepseekv3": ("DeepseekV3Config", dict(kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=8, qk_nope_head_dim=16,
                                            v_head_dim=16, n_routed_experts=4, n_shared_experts=1,
                                            num_experts_per_tok=2, first_k_dense_replace=1, moe_intermediate_size=32,
                                            n_group=1, topk_group=1, routed_scaling_factor=1.0, norm_topk_prob=True,
                                            moe_layer_freq=1, topk_method="noaux_tc", scoring_func="sigmoid",
                                            rope_theta=10000.0, num_key_value_heads=4, rope_interleave=True,
                                            rope_parameters=_YARN, tie_word_embeddings=False), 17),
    "deepseekv2": ("DeepseekV2Config", dict(kv_lora_rank=32, q_lora_rank=None, qk_rope_head_dim=8, qk_nope_head_dim=16,
                                            v_head_dim=16, n_routed_experts=4, n_shared_experts=1,
                                            num_experts_per_tok=2, first_k_dense_replace=1, moe_intermediate_size=32,
                                            topk_method="greedy", routed_scaling_factor=1.0, norm_topk_prob=False,
                                            moe_layer_freq=1, scoring_func="softmax", rope_theta=10000.0,
                                            num_key_value_heads=4, rope_parameters=_YARN,
                                            tie_word_embeddings=False), 18),
}
ALIASES = tuple(f"tiny-random-{f}" for f in FAMILIES)
# Gemma multiplies its (tied) embeddings by sqrt(64) = 8: smaller draws keep the next-token distribution spread
# (with 0.5 the tiny Gemma 3 repeats one token whatever its input; with 0.05 its distributions are near uniform)
_EMBED_STD = {"gemma2": 0.2, "gemma3": 0.15}


def tokenizer():
    from softthink.models import byte_tokenizer

    return byte_tokenizer(single_think_tokens=True, template_opens_think=True)


def config(family: str):
    import transformers

    cls_name, extra, _ = FAMILIES[family]
    tok = tokenizer()
    fields = dict(_COMMON, vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    fields.update(extra)
    return getattr(transformers, cls_name)(**fields)


def build(family: str, dtype: torch.dtype, seed: int = 1234):
    """(model, tokenizer) of `tiny-random-<family>`, weights seeded."""
    from transformers import AutoModelForCausalLM

    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; choose one of {sorted(FAMILIES)}")
    tok = tokenizer()
    model = AutoModelForCausalLM.from_config(config(family), dtype=torch.float32)
    rng = np.random.Generator(np.random.PCG64(seed + FAMILIES[family][2]))
    gemma = family.startswith("gemma")
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                # Gemma's RMSNorm multiplies by (1 + weight): zero is its identity
                param.fill_(0.0 if gemma else 1.0)
            elif name.endswith(".bias"):
                param.zero_()
            else:
                std = _EMBED_STD.get(family, 0.5) if ("embed" in name or "lm_head" in name) else 0.15
                param.copy_(torch.from_numpy(rng.normal(0.0, std, tuple(param.shape))))
    model = model.to(dtype)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.softthink_info = {"spec": f"tiny-random-{family}", "source": "seeded-random", "seed": seed}
    return model, tok


def code_sha256() -> str:
    """Identity of the code that draws these weights (cache keys of materialised copies)."""
    import hashlib
    import inspect
    import sys

    return hashlib.sha256(inspect.getsource(sys.modules[__name__]).encode()).hexdigest()
