"""The decode step of the transformers engine: `core.step` on the last logits, the next input, one forward.

Two runners share one step body (`_think_and_input` then the model), so eager and compiled execution run the same
ops on the same batch composition:

* `StaticRunner`: the preallocated KV cache of `softthink.kv_cache`, batch sizes bucketed (`batch_bucket`), rows
  that finish stay in the batch as dead rows until the live count fits a smaller bucket, then every buffer is
  compacted with one `index_select`. With `compiled=True` the step is `torch.compile`d (CPU: inductor's C++
  backend; CUDA: mode "reduce-overhead", i.e. CUDA graphs); its shapes are (batch bucket, attention window), so a
  batch compiles at most (#batch buckets it passes) x (#windows it passes) graphs, counted in `CompileStats`.
* `DynamicRunner`: transformers' DynamicCache, compaction at every finish (models the static cache cannot serve:
  sliding windows, hybrid layers, flash-attention kernels).

When compiling pays (`should_compile`): compile once per new shape for c seconds, then save (t_eager - t_compiled)
per step. With s the decode steps a call will run, compile iff s * (t_eager - t_compiled) > c * n_shapes, using
per-device constants measured in docs/benchmarks.md (`COMPILE_RULE`); a shape compiled earlier in this process
costs nothing again.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch

from softthink import core
from softthink.kv_cache import StaticKVCache, decode_mask, prefill_mask, window_for

COMPILE_ENV = "SOFTTHINK_COMPILE"  # auto | on | off
CACHE_ENV = "SOFTTHINK_KV_CACHE"  # static | dynamic

# Break-even constants per device type (docs/benchmarks.md, "When compiling pays"): seconds to compile one decode
# shape, the fraction of an eager step the compiled step saves, and a typical eager step (small model, small batch).
# CPU: smollm2-135m on 2 idle cores, frozen weights (prepacked matmuls): 31-32 s per shape, saving 0.17 at batch 1
# (the batch-1 forward is bound by reading the fp32 weights) to 0.29 at batch 8, eager step 41 ms at batch 1.
# CUDA: not measured yet (tests/gpu/gpu_check.py "engine" measures it): gpt-fast-like assumptions.
COMPILE_RULE = {"cpu": {"compile_s": 32.0, "saving": 0.2, "step_s": 0.04},
                "cuda": {"compile_s": 40.0, "saving": 0.6, "step_s": 0.02}}


def batch_bucket(n: int) -> int:
    """Static batch sizes: 1, 2, 4, 8, then multiples of 8 (at most 2x, or +7 rows, of padding)."""
    if n <= 8:
        return 1 << (n - 1).bit_length()
    return -(-n // 8) * 8


@dataclass
class Statics:
    """The step's compile-time constants (a change means another graph)."""

    width: int
    concept_width: int
    dirichlet: bool
    gumbel: bool
    swir: bool
    fp32_mix: bool


@dataclass
class CompileStats:
    """Compiled shapes and the seconds their first calls took (compilation included)."""

    shapes: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_compiles(self) -> int:
        return len(self.shapes)


class ModelParts:
    """What the step needs from the model: decoder, head, the input-embedding module (Gemma-style scaling inside)."""

    def __init__(self, model, vocab_size: int):
        self.model = model
        self.base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        self.head = model.get_output_embeddings()
        self.embed_module = model.get_input_embeddings()
        self.embedding = self.embed_module.weight
        scale = getattr(self.embed_module, "embed_scale", None)
        self.embed_scale = None if scale is None else torch.as_tensor(scale).to(self.embedding.dtype)
        self.vocab_size = vocab_size
        import inspect

        # transformers >= 5.2x names the cache argument `cache`; older releases `past_key_values`
        self.cache_kw = "cache" if "cache" in inspect.signature(self.base.forward).parameters else "past_key_values"

    def forward(self, embeds, mask, pos, cache, pre_norm: bool = False):
        """Decoder on input embeddings; fp32 logits of the last position only (and its hidden state)."""
        captured: list[torch.Tensor] = []
        hook = None
        if pre_norm:
            hook = self.base.norm.register_forward_hook(lambda m, inp, o: captured.append(inp[0][:, -1]))
        try:
            h = self.base(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=True,
                          **{self.cache_kw: cache}).last_hidden_state[:, -1]
        finally:
            if hook is not None:
                hook.remove()
        logits = self.head(h).float()[:, : self.vocab_size]
        return logits, (captured[0] if captured else h)


def step_rule(logits, state, prm, uid, st: Statics, uniforms=None):
    """`core.step` with this batch's per-row keys and compile-time constants."""
    keys = core.row_keys(prm.seed, uid, state.step)
    return core.step(logits, state, prm, keys, width=st.width, concept_width=st.concept_width,
                     dirichlet=st.dirichlet, gumbel=st.gumbel, swir=st.swir, uniforms=uniforms)


def _think_and_input(parts: ModelParts, logits, hidden, state, prm, uid, st: Statics, uniforms=None):
    """core.step, then the next input vector: concept (THINK), one-hot (otherwise), dense mixture (SwiReasoning),
    or the last hidden state (COCONUT-TF)."""
    out, state = step_rule(logits, state, prm, uid, st, uniforms)
    if out.in_dense is not None:  # SwiReasoning: full-vocabulary mixtures
        emb = out.in_dense.to(parts.embedding.dtype) @ parts.embedding
        if parts.embed_scale is not None:
            emb = emb * parts.embed_scale
    else:
        emb = core.mix_rows(parts.embed_module(out.in_ids), out.in_w, fp32=st.fp32_mix)
    emb = torch.where(out.use_hidden[:, None], hidden.to(emb.dtype), emb)
    return out, state, emb


class DynamicRunner:
    """transformers' DynamicCache; the live batch is compacted at every finish."""

    kind = "dynamic"

    def __init__(self, parts: ModelParts, pre_norm: bool):
        from softthink.engine import _new_cache

        self.parts, self.pre_norm = parts, pre_norm
        self.cache = _new_cache(parts.model)
        self.mask = None

    def prefill(self, embeds, mask, pos):
        self.mask = mask
        return self.parts.forward(embeds, mask, pos, self.cache, self.pre_norm)

    def step(self, logits, hidden, state, prm, uid, next_pos, st: Statics, uniforms=None):
        out, state, emb = _think_and_input(self.parts, logits, hidden, state, prm, uid, st, uniforms)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
        logits, hidden = self.parts.forward(emb[:, None, :], self.mask, next_pos[:, None], self.cache, self.pre_norm)
        return out, state, logits, hidden

    def wants_compaction(self, n_live: int, n_rows: int) -> bool:
        return n_live < n_rows

    def select(self, sel: torch.Tensor) -> None:
        self.mask = self.mask[sel]
        self.cache.batch_select_indices(sel)


class StaticRunner:
    """The static KV cache, eager or compiled; see the module docstring."""

    kind = "static"

    def __init__(self, parts: ModelParts, batch: int, plen: int, max_new: int, compiled_fn=None,
                 stats: CompileStats | None = None, pre_norm: bool = False):
        self.parts = parts
        self.pre_norm = pre_norm  # eager only (a forward hook)
        self.plen = plen
        self.max_len = plen + max_new
        self.cache = StaticKVCache.for_model(parts.model, batch, self.max_len)
        self.fn = compiled_fn  # None: eager
        self.stats = stats
        self.additive = getattr(parts.model.config, "_attn_implementation", "eager") != "sdpa"
        self.dtype = parts.embedding.dtype
        self.prompt_valid = None
        self.plen_t = torch.tensor(plen, device=parts.embedding.device)
        self.t = 0  # decode steps run (slot of the next input = plen + t)

    def prefill(self, embeds, mask, pos):
        self.prompt_valid = torch.zeros((embeds.shape[0], self.max_len), dtype=torch.bool, device=embeds.device)
        self.prompt_valid[:, : self.plen] = mask.bool()
        self.cache.set_window(window_for(self.plen, self.max_len))
        self.cache.n_written = self.plen
        m = prefill_mask(self.prompt_valid, self.plen, self.cache.window, self.dtype, self.additive)
        logits, hidden = self.parts.forward(embeds, m, pos, self.cache, self.pre_norm)
        # the strides the compiled step returns (a strided slice would be a second graph)
        return logits.contiguous(), hidden.contiguous()

    def next_slot(self) -> int:
        """Point the cache at the next input's slot (grown to its window); returns the window."""
        slot = self.plen + self.t
        self.t += 1
        self.cache.slot.fill_(slot)
        self.cache.n_written = slot + 1
        window = window_for(slot + 1, self.max_len)
        self.cache.set_window(window)
        return window

    def step(self, logits, hidden, state, prm, uid, next_pos, st: Statics, uniforms=None):
        window = self.next_slot()
        out, state, emb = _think_and_input(self.parts, logits, hidden, state, prm, uid, st, uniforms)
        args = (self.parts, self.cache, emb, next_pos, self.prompt_valid, self.plen_t)
        if self.fn is None:
            logits, hidden = _static_forward(*args, window=window, additive=self.additive, pre_norm=self.pre_norm)
        else:
            before = _graphs_compiled()
            t0 = time.perf_counter()
            logits, hidden = self.fn(*args, window=window, additive=self.additive)
            if _graphs_compiled() != before:  # this call compiled (a new shape, or a guard that failed)
                if logits.is_cuda:
                    torch.cuda.synchronize()
                self.stats.shapes.append((emb.shape[0], window))
                self.stats.seconds += time.perf_counter() - t0
        return out, state, logits, hidden

    def wants_compaction(self, n_live: int, n_rows: int) -> bool:
        return batch_bucket(n_live) < n_rows

    def select(self, sel: torch.Tensor) -> None:
        self.cache.select_rows(sel)
        self.prompt_valid = self.prompt_valid[sel]


def _graphs_compiled() -> int:
    """Dynamo's count of compiled frames (every compile and recompile of this process)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _static_forward(parts: ModelParts, cache: StaticKVCache, emb, next_pos, prompt_valid, plen_t, *, window: int,
                    additive: bool, pre_norm: bool = False):
    """The decode forward on the static cache (what `torch.compile` sees): mask, decoder, head.

    `core.step` stays outside the graph on purpose: compiled fp32 softmax/exp/sum reductions round differently from
    ATen's in the last ulp, and a soft-thinking trajectory feeds its weights back into the next input, so a
    compiled step would drift from the eager reference. The forward's differences stay below what the fp32 logits
    resolve on float64 models (tests/test_engine_compile.py)."""
    mask = decode_mask(prompt_valid, plen_t, cache.slot, window, emb.dtype, additive)
    return parts.forward(emb[:, None, :], mask, next_pos[:, None], cache, pre_norm)


def compile_mode() -> str:
    mode = os.environ.get(COMPILE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"{COMPILE_ENV}={mode!r}: choose auto, on or off")
    return mode


def should_compile(device: torch.device, steps: int, new_shapes: int, eager_step_s: float | None = None) -> bool:
    """The break-even rule: steps * saving * t_eager > compile_s * new_shapes (module docstring). `eager_step_s`
    defaults to the device's `step_s` (CPU: 50 ms, smollm2-135m at batch 1-8 on 2 cores)."""
    if new_shapes <= 0:
        return True
    rule = COMPILE_RULE["cuda" if device.type == "cuda" else "cpu"]
    t = rule["step_s"] if eager_step_s is None else eager_step_s
    return steps * rule["saving"] * t > rule["compile_s"] * new_shapes


def make_compiled(device: torch.device):
    """torch.compile of the fused step. CUDA: CUDA graphs (mode reduce-overhead). Static shapes (dynamic=False):
    one graph per (batch bucket, window), each counted."""
    import torch._dynamo
    import torch._inductor.config

    # per batch: up to ~6 batch buckets x ~6 windows; room for a few configs (statics) on top
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    # round where eager rounds (RMSNorm's fp32 upcast, fp32 -> model dtype casts) instead of keeping the wider value
    torch._inductor.config.emulate_precision_casts = True
    if device.type == "cuda":
        return torch.compile(_static_forward, dynamic=False, mode="reduce-overhead")
    # CPU: freezing folds the weights into the graph as constants, so inductor prepacks every linear's weight once
    # (MKL packed sgemm for fp32, oneDNN/AMX for bf16): 1.4x faster matmuls at batch 4-8 than ATen's plain sgemm
    # (docs/benchmarks.md). The price: a graph holds its own packed copy of the weights and does not see later
    # in-place weight updates (the engine never makes any).
    # Set around each call, where the compile happens (as torch.compile(options=...) it does not reach the lifting
    # of the weights into constants), so other torch.compile users in the process keep their settings.
    compiled = torch.compile(_static_forward, dynamic=False)

    def frozen(*args, **kwargs):
        with torch._inductor.config.patch(freezing=True):
            return compiled(*args, **kwargs)

    return frozen

