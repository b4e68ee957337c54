"""Soft-thinking model classes for SGLang (docs/design/sglang-plugin.md §4), delivered two ways:

* `SGLANG_EXTERNAL_MODEL_PACKAGE=softthink.sglang_glue.models` - SGLang's registry imports every module of this
  package and registers each `EntryClass` under its `__name__`; external entries take precedence, so our classes
  named `Qwen2ForCausalLM` / `Qwen3ForCausalLM` / `LlamaForCausalLM` shadow the built-in ones (the module `entry`
  holds the `EntryClass` list);
* the `sglang.srt.plugins` entry point (`softthink.sglang_glue.plugin:register`) writes them into
  `ModelRegistry.models` inside every scheduler.

Importing this package does not import SGLang; `soft_classes()` does.

Decode (`forward_mode.is_decode()`, captured in the CUDA graph): `input_embeds = tables.mix(embed_tokens,
req_pool_indices, input_ids)`. Extend (every prefill chunk): `tables.reset_rows(req_pool_indices)` before the parent
forward. Everything else passes through unchanged.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Type

logger = logging.getLogger("softthink.sglang_glue")

_CLASSES: Dict[str, type] = {}

#: (module, class) of the shadowed built-ins in SGLang 0.5.x
BASES = {
    "Qwen2ForCausalLM": "sglang.srt.models.qwen2",
    "Qwen3ForCausalLM": "sglang.srt.models.qwen3",
    "LlamaForCausalLM": "sglang.srt.models.llama",
}


def _tables_for(model, config):
    from softthink.sglang_glue import tables as T

    rows = T.env_int("SOFTTHINK_SGLANG_MAX_ROWS", T.DEFAULT_MAX_ROWS)
    kmax = T.env_int("SOFTTHINK_SGLANG_KMAX", T.DEFAULT_KMAX)
    marker_max = T.env_int("SOFTTHINK_SGLANG_MARKER_MAX", T.DEFAULT_MARKER_MAX)
    mix_dtype = os.environ.get("SOFTTHINK_SGLANG_MIX_DTYPE", "model").strip() or "model"
    emb = model.get_input_embeddings()
    device = emb.weight.device if getattr(emb, "weight", None) is not None else None
    if device is None or device.type == "meta":
        import torch

        device = torch.get_default_device() if hasattr(torch, "get_default_device") else torch.device("cuda")
    tables = T.SoftStateTables(rows, kmax, marker_max=marker_max, device=device, mix_dtype=mix_dtype)
    tables.vocab = int(getattr(config, "vocab_size", 0) or 0) or None
    return T.publish(tables)


def _refuse_unsupported_modes() -> None:
    """Assert the modes the plugin refuses (docs/design/sglang-plugin.md §9), inside the scheduler process."""
    try:
        from sglang.srt.runtime_context import get_server_args

        args = get_server_args()
    except Exception:  # older layouts / not inside a scheduler: the launcher checked already
        return
    if args is None:
        return
    from softthink.sglang_glue.launch import check_server_args

    check_server_args(args)


def _sharded_ops(embed):
    """(local_lookup, all_reduce) for a vocabulary-sharded `VocabParallelEmbedding` (tp_size > 1), or None.
    Uses the layer's own shard-local gather (`_embed_local_shard`, 0.5.23); releases without it fall back to the
    public form in `SoftStateTables.mix` (K lookups through the module, K x the all-reduce volume)."""
    if int(getattr(embed, "tp_size", 1) or 1) <= 1 or not hasattr(embed, "_embed_local_shard"):
        return None
    if getattr(embed, "use_attn_tp_group", False):
        from sglang.srt.layers.dp_attention import attn_tp_all_reduce as reduce
    else:
        from sglang.srt.distributed import tensor_model_parallel_all_reduce as reduce
    try:
        from sglang.srt.layers.layer_boundary import get_attn_tp_context
    except ImportError:  # releases without scattered inputs
        get_attn_tp_context = None

    def all_reduce(x):
        # the stock layer skips its all-reduce when the inputs are scattered across the attention TP group
        if get_attn_tp_context is not None and get_attn_tp_context().input_scattered:
            return x
        return reduce(x)

    return embed._embed_local_shard, all_reduce


def _make(name: str) -> type:
    import importlib

    base_mod = importlib.import_module(BASES[name])
    base: Type = getattr(base_mod, name)

    class _Soft(base):  # type: ignore[misc, valid-type]
        softthink_soft = True

        def __init__(self, config, *args, **kwargs):
            super().__init__(config, *args, **kwargs)
            _refuse_unsupported_modes()
            self.softthink_tables = _tables_for(self, config)
            # the stock decode path is `embed_tokens(input_ids)` with no extra scale for these three classes;
            # a subclass for a scaled-embedding architecture would set this (applied to both branches)
            self.softthink_embed_scale = None
            logger.info(
                "softthink: soft-thinking %s active (rows=%d, kmax=%d, mix=%s)",
                name,
                self.softthink_tables.rows,
                self.softthink_tables.kmax,
                self.softthink_tables.mix_dtype,
            )

        def forward(
            self,
            input_ids,
            positions,
            forward_batch,
            input_embeds=None,
            get_embedding: bool = False,
            pp_proxy_tensors=None,
        ):
            mode = forward_batch.forward_mode
            tables = self.softthink_tables
            if not get_embedding and input_embeds is None:
                if mode.is_decode():
                    embed = self.get_input_embeddings()
                    sharded = _sharded_ops(embed)
                    if sharded is not None:  # TP: shard-local mix + one all-reduce
                        input_embeds = tables.mix_sharded(*sharded, forward_batch.req_pool_indices, input_ids)
                    else:
                        input_embeds = tables.mix(
                            embed,
                            forward_batch.req_pool_indices,
                            input_ids,
                            scale=self.softthink_embed_scale,
                        )
                elif mode.is_extend():
                    tables.reset_rows(forward_batch.req_pool_indices)
            elif mode.is_extend():
                # a prefill with client-supplied embeddings still hands the row over
                tables.reset_rows(forward_batch.req_pool_indices)
            return super().forward(
                input_ids,
                positions,
                forward_batch,
                input_embeds=input_embeds,
                get_embedding=get_embedding,
                pp_proxy_tensors=pp_proxy_tensors,
            )

    _Soft.__name__ = name
    _Soft.__qualname__ = name
    _Soft.__module__ = __name__ + ".entry"
    return _Soft


def soft_classes(names=None) -> List[type]:
    """The soft subclasses (built once per process). Imports SGLang."""
    out = []
    for name in names or BASES:
        if name not in _CLASSES:
            _CLASSES[name] = _make(name)
        out.append(_CLASSES[name])
    return out


def __getattr__(attr):  # `from softthink.sglang_glue.models import Qwen2ForCausalLM`
    if attr in BASES:
        return soft_classes([attr])[0]
    raise AttributeError(attr)
