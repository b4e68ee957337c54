"""A static, preallocated KV cache for the transformers engine (gpt-fast style), and the attention mask it needs.

Every layer owns K and V buffers of shape [B, H_kv, W, D], W the attention window below (grown, never per step). All rows of a batch advance in
lockstep (one input per step, prompts left-padded to a common length P), so step t writes slot P + t - 1 of every row
with one `index_copy_` at a position held in a 0-dim tensor: the write neither grows a tensor (the dynamic cache's
per-layer `torch.cat`) nor changes a shape. The buffers hold a *window* of W slots, W = the smallest bucket >= the
slots written (MIN_WINDOW * 2^j, capped at S = prompt + max_new_tokens); when the next slot would not fit they are
reallocated at the next bucket (log2 times per batch), so short sequences do not pay for S, memory follows the
sequence, and a compiled decode step sees at most log2(S / MIN_WINDOW) + 1 distinct shapes per batch size.

The mask of row b over slot s (True = attend) is

    valid[b, s] = prompt_valid[b, s]           for s < P     (left padding masked out)
                = P <= s <= last_slot          for s >= P    (every generated input)

built in-graph from tensors (no host work, no shape change), as a bool mask for SDPA or an additive one (0 / finfo.min)
for the eager attention implementation. Slots beyond `last_slot` hold zeros or stale values and are always masked.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import Cache

MIN_WINDOW = 128  # a prompt plus a few hundred tokens in one or two compiled shapes


def window_for(n_slots: int, max_len: int) -> int:
    """The attention window for `n_slots` written slots: the smallest MIN_WINDOW * 2^j >= n_slots, capped at max_len."""
    w = MIN_WINDOW
    while w < n_slots:
        w *= 2
    return min(w, max_len)


def supports_static(model) -> str | None:
    """None when the static cache can serve `model`, else the reason it cannot (the engine then keeps the dynamic
    cache). It needs full causal attention in every layer (no sliding windows, no linear or recurrent layers) and an
    attention implementation that takes an explicit 4D mask."""
    cfg = model.config
    impl = getattr(cfg, "_attn_implementation", None) or "eager"
    if impl not in ("sdpa", "eager"):
        return f"attention implementation {impl!r}"
    types = getattr(cfg, "layer_types", None)
    if types is not None and any(t != "full_attention" for t in types):
        return "layer types other than full attention"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention"
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder model"
    if getattr(cfg, "kv_lora_rank", None) or getattr(cfg, "v_head_dim", None) or getattr(cfg, "qk_rope_head_dim", None):
        return "multi-head latent attention (keys and values of different widths)"  # DeepSeek-V2/V3
    return None


class StaticKVCache(Cache):
    """Preallocated K/V per layer; `update` writes at `self.slot` and returns the first `self.window` slots.

    The engine sets `slot` (a 0-dim int64 tensor, updated in place so compiled graphs keep its address) and `window`
    (a Python int: part of the compiled graph's shape) before each forward.
    """

    is_compileable = True

    def __init__(self, n_layers: int, batch: int, n_kv_heads: int, head_dim: int, max_len: int, dtype, device):
        # Cache.__init__ wants layer objects; this class keeps its own buffers and serves `update` itself
        self.layers = []
        self.layer_class_to_replicate = None
        self.offloading = False
        self.max_len = max_len
        self.n_layers, self.shape = n_layers, (batch, n_kv_heads, 0, head_dim)
        self.dtype, self.device = dtype, device
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.slot = torch.zeros(1, dtype=torch.int64, device=device)  # positions written by the next update
        self.window = 0
        self.n_written = 0  # host copy of the slots filled so far

    def set_window(self, window: int) -> None:
        """Grow the buffers to `window` slots (zeros after the old ones). Buffers are never longer than the window
        in use, so a batch holds at most 2x the slots it needs instead of prompt + max_new_tokens from the start
        (a 32k-token budget would otherwise be allocated for every batch); growth happens log2 times."""
        if window <= self.window:
            return
        b, h, _, d = self.shape
        grown = []
        for old in self.k + self.v if self.k else [None] * (2 * self.n_layers):
            new = torch.zeros((b, h, window, d), dtype=self.dtype, device=self.device)
            if old is not None:
                new[:, :, : old.shape[2]] = old
            grown.append(new)
        self.k, self.v = grown[: self.n_layers], grown[self.n_layers:]
        self.window = window
        self._mark_static()

    def _mark_static(self) -> None:
        """CUDA graphs (reduce-overhead) replay only if the buffers mutated in place keep fixed addresses."""
        if torch.device(self.device).type == "cuda":
            for t in self.k + self.v + [self.slot]:
                torch._dynamo.mark_static_address(t)

    @classmethod
    def for_model(cls, model, batch: int, max_len: int) -> "StaticKVCache":
        cfg = model.config
        n_heads = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
        n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
        p = next(model.parameters())
        return cls(cfg.num_hidden_layers, batch, n_kv, head_dim, max_len, p.dtype, p.device)

    @property
    def batch(self) -> int:
        return self.shape[0]

    # -- the transformers Cache surface the decoder uses -------------------------------------------------------------
    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        n = key_states.shape[-2]
        pos = self.slot if n == 1 else torch.arange(n, device=self.slot.device)  # prefill fills slots [0, n)
        self.k[layer_idx].index_copy_(2, pos, key_states)
        self.v[layer_idx].index_copy_(2, pos, value_states)
        return self.k[layer_idx], self.v[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.n_written

    def get_mask_sizes(self, query_length: int, layer_idx: int = 0) -> tuple[int, int]:
        return self.window, 0

    def get_max_length(self) -> int:
        return self.max_len

    def __len__(self) -> int:
        return len(self.k)

    @property
    def is_sliding(self) -> list[bool]:
        return [False] * len(self.k)

    # -- engine side ------------------------------------------------------------------------------------------------
    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (new, smaller batch): fresh buffers, so compiled graphs see a new static shape."""
        self.k = [k.index_select(0, rows) for k in self.k]
        self.v = [v.index_select(0, rows) for v in self.v]
        self.shape = (len(rows),) + self.shape[1:]
        self._mark_static()


def decode_mask(prompt_valid: torch.Tensor, plen: torch.Tensor, last_slot: torch.Tensor, window: int,
                dtype: torch.dtype, additive: bool) -> torch.Tensor:
    """[B, 1, 1, W] mask of one decode query over slots [0, W): prompt_valid for s < P, P <= s <= last_slot after."""
    s = torch.arange(window, device=prompt_valid.device)
    gen = (s >= plen) & (s <= last_slot)
    valid = (prompt_valid[:, :window] & (s < plen)) | gen
    return _as_mask(valid[:, None, None, :], dtype, additive)


def prefill_mask(prompt_valid: torch.Tensor, plen: int, window: int, dtype: torch.dtype,
                 additive: bool) -> torch.Tensor:
    """[B, 1, P, W] causal mask of the prefill (query i attends to valid prompt slots j <= i)."""
    dev = prompt_valid.device
    q = torch.arange(plen, device=dev)[:, None]
    s = torch.arange(window, device=dev)[None, :]
    causal = s <= q
    valid = causal[None] & prompt_valid[:, None, :window]
    # a fully padded query row (left padding) would softmax over nothing: let it see itself (its output is unused)
    valid = valid | ((s == q) & ~prompt_valid[:, :plen, None])
    return _as_mask(valid[:, None], dtype, additive)


def _as_mask(valid: torch.Tensor, dtype: torch.dtype, additive: bool) -> torch.Tensor:
    if not additive:
        return valid
    zero = torch.zeros((), dtype=dtype, device=valid.device)
    return torch.where(valid, zero, torch.full((), torch.finfo(dtype).min, dtype=dtype, device=valid.device))
