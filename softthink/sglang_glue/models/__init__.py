"""Soft thinking on every SGLang decoder, through the model's own input-embedding module
(docs/design/sglang-plugin.md §4). Importing this package does not import SGLang; `soft_classes()` does.

One mechanism for every architecture: at construction, the model's input-embedding module (the one SGLang builds
for token ids: `VocabParallelEmbedding`, vocabulary-sharded under TP, or a model's own embedding class such as
Gemma 3's scaled one) gets an instance-level `forward` that, when armed for a decode batch, returns
`where(active[r], Σ_k w[r,k]·embed(ids[r,k]), embed(input_ids))` from the persistent tables (fixed shapes, no host
sync, CUDA-graph safe), and the plain lookup otherwise. Whatever the model does to a token embedding after the
lookup (Gemma's `hidden_states *= normalizer`, MiniCPM's `scale_emb`) therefore happens to the concept too, and a
scale applied inside the embedding module is applied to each concept row by the module itself.

Delivery: SGLang's registry imports every module of `SGLANG_EXTERNAL_MODEL_PACKAGE` and registers each
`EntryClass` under its name, ahead of the built-ins. `entry.EntryClass` is a same-named subclass of **every**
built-in model class, made here (`soft_class`). The subclass's `forward(input_ids, positions, forward_batch, ...)`
(signature reported as the base's, SGLang inspects it) arms the embedding for decode batches and hands the batch's
rows over (`reset_rows`) on every extend; everything else passes through. A model whose inputs are not token
embeddings (multimodal encoders feeding `input_embeds`, embedding / reward models without a language-model head,
the transformers-backend fallback) is refused at construction with `UnsupportedArchitecture`: no architecture
silently serves soft requests as plain decoding.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
from typing import Dict, List, Optional

logger = logging.getLogger("softthink.sglang_glue")

#: the paper's three architectures (token parity on the CPU since the first plugin); every other decoder is served
#: by the same mechanism, see docs/sglang.md "Architectures"
PAPER_ARCHITECTURES = ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM")
#: attribute paths of the token-embedding module, tried when `get_input_embeddings()` gives no module
EMBED_PATHS = ("model.embed_tokens", "embed_tokens", "model.language_model.embed_tokens", "transformer.wte",
               "transformer.embedding.word_embeddings", "model.word_embeddings", "gpt_neox.embed_in")

_CLASSES: Dict[type, type] = {}


class UnsupportedArchitecture(ValueError):
    """A model the plugin cannot feed concept tokens to (its inputs are not token embeddings)."""


# ------------------------------------------------------------------------------------------ inspection
def input_embedding(model):
    """The module the model looks token ids up with, or None. `get_input_embeddings()` first (some SGLang classes
    define it with an ids argument or return a tensor: those are skipped), then the usual attribute paths."""
    import torch

    fn = getattr(model, "get_input_embeddings", None)
    if callable(fn):
        try:
            required = [p for p in inspect.signature(fn).parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            emb = fn() if not required else None
        except Exception:  # noqa: BLE001 - a getter that needs state we lack: try the attribute paths
            emb = None
        if _is_embedding(emb, torch):
            return emb
    for path in EMBED_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if _is_embedding(obj, torch):
            return obj
    return None


def _is_embedding(m, torch) -> bool:
    w = getattr(m, "weight", None)
    return isinstance(m, torch.nn.Module) and isinstance(w, torch.Tensor) and w.dim() == 2


def refusal(model, config=None) -> Optional[str]:
    """Why this model cannot run soft requests, or None. Checked on the built instance."""
    name = type(model).__name__
    module = type(model).__module__ or ""
    if ".transformers" in module or name.startswith("Transformers"):
        return (f"{name} is SGLang's transformers backend (the fallback for architectures without a native SGLang "
                "class); the plugin feeds concepts through SGLang's own embedding module")
    if callable(getattr(model, "pad_input_ids", None)) or any(
            getattr(config, k, None) is not None for k in ("vision_config", "audio_config")):
        return (f"{name} is multimodal: its prompt inputs are encoder embeddings, not token embeddings; use its "
                "text-only checkpoint (e.g. Gemma3ForCausalLM) or the transformers engine")
    if getattr(model, "logits_processor", None) is None:
        return f"{name} has no language-model head (an embedding, reward or classification model)"
    if input_embedding(model) is None:
        return f"{name} has no token-embedding module the plugin can find (get_input_embeddings / embed_tokens)"
    return None


# ------------------------------------------------------------------------------------------ the embedding hook
class EmbeddingHook:
    """Replaces `embed.forward` on the instance. Armed by the model's forward with the decode batch's
    `req_pool_indices`; the first lookup of a batch of that size returns the mixed inputs, any other call (prefill,
    a second lookup, a tied LM head) the module's own result. Python state only at trace time: under a CUDA graph
    the captured kernels read the persistent tables and the static `req_pool_indices` buffer."""

    def __init__(self, embed, tables):
        self.embed, self.tables = embed, tables
        self.lookup = embed.forward  # the bound original: scaling inside the module applies to concept rows too
        self.sharded = _sharded_ops(embed)
        self.rows = None
        self.trace = MixTrace.from_env(embed)
        if self.trace is not None and self.sharded is not None:  # count the all-reduces the sharded mix makes
            self.sharded = (self.sharded[0], self.trace.counted(self.sharded[1]))
        embed.forward = self.forward  # instance attribute: the module object (and tied heads, weight loading) stay
        embed.softthink_hook = self

    def arm(self, rows) -> None:
        self.rows = rows

    def disarm(self) -> None:
        self.rows = None

    def forward(self, input_ids, *args, **kwargs):
        rows, self.rows = self.rows, None
        if rows is None or args or kwargs or input_ids.dim() != 1 or input_ids.shape[0] != rows.shape[0]:
            return self.lookup(input_ids, *args, **kwargs)
        if self.sharded is not None:  # TP: shard-local mix + one all-reduce
            out = self.tables.mix_sharded(*self.sharded, rows, input_ids)
        else:
            out = self.tables.mix_module(self.lookup, rows, input_ids)
        if self.trace is not None:
            self.trace.record(self.tables, rows, input_ids, "sharded" if self.sharded is not None else "module")
        return out


class MixTrace:
    """Debug/test aid, off unless `SOFTTHINK_SGLANG_MIX_TRACE=<dir>`: every armed decode mix of this process
    appends one JSON line to `<dir>/mix-tp<rank>-<pid>.jsonl` - the path taken (`sharded` under TP, else
    `module`), the rank and its vocabulary shard, how many soft rows were mixed, how many of their concept ids
    (weight > 0) lie inside / outside the shard, the all-reduces made, and a digest of the concepts read. Under TP
    every rank must log the same digests (identical tables, identical noise). Reading the tables syncs the
    device, so production runs leave it off."""

    def __init__(self, path: str, rank: int, tp: int, shard):
        self.path, self.rank, self.tp, self.shard = path, rank, tp, shard
        self.reduces = 0

    @classmethod
    def from_env(cls, embed) -> Optional["MixTrace"]:
        folder = os.environ.get("SOFTTHINK_SGLANG_MIX_TRACE", "").strip()
        if not folder:
            return None
        os.makedirs(folder, exist_ok=True)
        tp = int(getattr(embed, "tp_size", 1) or 1)
        group = getattr(embed, "tp_group", None)  # the layer keeps its group, not its rank
        rank = int(getattr(group, "rank_in_group", 0) or 0) if tp > 1 else 0
        si = getattr(embed, "shard_indices", None)
        shard = [int(si.org_vocab_start_index), int(si.org_vocab_end_index)] if si is not None else None
        return cls(os.path.join(folder, f"mix-tp{rank}-{os.getpid()}.jsonl"), rank, tp, shard)

    def counted(self, reduce):
        def all_reduce(x):
            self.reduces += 1
            return reduce(x)

        return all_reduce

    def record(self, tables, rows, input_ids, path: str) -> None:
        import hashlib
        import json

        import torch

        r = rows.to(torch.int64)
        k = tables.mix_width()
        act = tables.active.index_select(0, r)
        ids = tables.ids[:, :k].index_select(0, r)[act]
        w = tables.w[:, :k].index_select(0, r)[act]
        used = ids[w > 0]
        inside = None
        if self.shard is not None:
            inside = int(((used >= self.shard[0]) & (used < self.shard[1])).sum())
        digest = hashlib.sha1(ids.cpu().numpy().tobytes() + w.float().cpu().numpy().tobytes()
                              + input_ids.cpu().numpy().tobytes()).hexdigest()[:16]
        line = {"path": path, "rank": self.rank, "tp": self.tp, "shard": self.shard, "batch": int(r.shape[0]),
                "soft_rows": int(act.sum()), "ids": int(used.numel()), "ids_in_shard": inside,
                "all_reduces": self.reduces, "digest": digest}
        self.reduces = 0
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")


def _sharded_ops(embed):
    """(local_lookup, all_reduce) for a vocabulary-sharded `VocabParallelEmbedding` (tp_size > 1) whose forward
    is the stock one, or None. Uses the layer's own shard-local gather (`_embed_local_shard`, 0.5.23); otherwise
    the concept rows go through the module's own forward (K lookups, K x the all-reduce volume, any in-module scale
    applied)."""
    if int(getattr(embed, "tp_size", 1) or 1) <= 1 or not hasattr(embed, "_embed_local_shard"):
        return None
    from sglang.srt.layers.vocab_parallel_embedding import VocabParallelEmbedding

    if getattr(type(embed), "forward", VocabParallelEmbedding.forward) is not VocabParallelEmbedding.forward:
        return None  # a subclass that changes the lookup (e.g. scales it): use its own forward
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


# ------------------------------------------------------------------------------------------ tables
def _tables_for(embed, config):
    from softthink.sglang_glue import tables as T

    rows = T.env_int("SOFTTHINK_SGLANG_MAX_ROWS", T.DEFAULT_MAX_ROWS)
    kmax = T.env_int("SOFTTHINK_SGLANG_KMAX", T.DEFAULT_KMAX)
    marker_max = T.env_int("SOFTTHINK_SGLANG_MARKER_MAX", T.DEFAULT_MARKER_MAX)
    mix_dtype = os.environ.get("SOFTTHINK_SGLANG_MIX_DTYPE", "model").strip() or "model"
    device = embed.weight.device
    if device.type == "meta":
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


def attach(model, config=None):
    """Make a built model serve soft requests: refuse it, or publish the tables and hook its embedding module."""
    reason = refusal(model, config)
    if reason is not None:
        from softthink.sglang_glue import tables as T

        T.refuse(reason)
        raise UnsupportedArchitecture(
            f"softthink refuses {type(model).__name__}: {reason}. Launch it without the softthink plugin "
            "(unset SGLANG_EXTERNAL_MODEL_PACKAGE / SOFTTHINK_SGLANG_DRIVER) to serve plain requests.")
    embed = input_embedding(model)
    tables = _tables_for(embed, config)
    model.softthink_tables = tables
    model.softthink_embed_hook = EmbeddingHook(embed, tables)
    logger.info("softthink: soft thinking on %s via %s (rows=%d, kmax=%d, mix=%s)", type(model).__name__,
                type(embed).__name__, tables.rows, tables.kmax, tables.mix_dtype)
    return tables


# ------------------------------------------------------------------------------------------ the subclass
def soft_class(base: type) -> type:
    """A subclass of `base` named like it (so it shadows it in the registry) that serves soft requests."""
    if getattr(base, "softthink_soft", False):
        return base
    if base in _CLASSES:
        return _CLASSES[base]
    import torch

    base_forward = getattr(base, "forward", None)
    if not (isinstance(base, type) and issubclass(base, torch.nn.Module)) or base_forward is None \
            or base_forward is torch.nn.Module.forward:
        _CLASSES[base] = _refusing_class(base, "it is a dispatcher, not a model module the plugin can wrap")
        return _CLASSES[base]

    def __init__(self, *args, **kwargs):
        base.__init__(self, *args, **kwargs)
        _refuse_unsupported_modes()
        attach(self, kwargs.get("config", args[0] if args else getattr(self, "config", None)))

    @functools.wraps(base_forward)
    def forward(self, input_ids, positions, forward_batch, *args, **kwargs):
        mode = forward_batch.forward_mode
        hook = self.softthink_embed_hook
        if mode.is_extend():  # every prefill chunk hands the batch's rows over (also with client embeddings)
            self.softthink_tables.reset_rows(forward_batch.req_pool_indices)
        elif mode.is_decode() and not kwargs.get("get_embedding") and kwargs.get("input_embeds") is None \
                and not (args and args[0] is not None):
            hook.arm(forward_batch.req_pool_indices)
        try:
            return base_forward(self, input_ids, positions, forward_batch, *args, **kwargs)
        finally:
            hook.disarm()

    forward.__signature__ = inspect.signature(base_forward)  # SGLang reads it (pp_proxy_tensors, get_embedding)
    cls = type(base.__name__, (base,), {"__init__": __init__, "forward": forward, "softthink_soft": True,
                                         "__module__": __name__ + ".entry", "__qualname__": base.__name__})
    _CLASSES[base] = cls
    return cls


def _refusing_class(base: type, reason: str) -> type:
    """A same-named class that refuses to be built (so the architecture never serves soft requests as plain)."""
    name = getattr(base, "__name__", str(base))

    def __init__(self, *args, **kwargs):
        from softthink.sglang_glue import tables as T

        T.refuse(f"{name}: {reason}")
        raise UnsupportedArchitecture(f"softthink refuses {name}: {reason}. Launch it without the softthink plugin.")

    import torch

    return type(name, (torch.nn.Module,), {"__init__": __init__, "softthink_refused": True,
                                            "__module__": __name__ + ".entry", "__qualname__": name})


def builtin_classes() -> Dict[str, type]:
    """SGLang's own model classes by architecture name (imports every `sglang.srt.models` module, as SGLang does
    at start without an external package)."""
    from sglang.srt.models.registry import import_model_classes

    return dict(import_model_classes("sglang.srt.models"))


def soft_classes(names=None) -> List[type]:
    """Soft subclasses of the named built-in architectures (default: all of them). Imports SGLang."""
    builtins = builtin_classes()
    out = []
    for name in names or sorted(builtins):
        base = builtins.get(name)
        if base is None:
            raise KeyError(f"SGLang has no model class {name!r}")
        try:
            out.append(soft_class(base))
        except Exception as e:  # noqa: BLE001 - a class that cannot be subclassed is refused, never served plain
            logger.warning("softthink: cannot wrap %s (%s); refused", name, e)
            out.append(_refusing_class(base, f"the plugin cannot subclass it ({e})"))
    return out


def __getattr__(attr):  # `from softthink.sglang_glue.models import Qwen2ForCausalLM`
    if attr.endswith("ForCausalLM") or attr.endswith("ForConditionalGeneration"):
        try:
            return soft_classes([attr])[0]
        except KeyError:
            pass
    raise AttributeError(attr)
