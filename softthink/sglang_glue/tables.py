"""Per-request state tables for the SGLang plugin (docs/design/sglang-plugin.md §3-§4). Pure torch, no SGLang import.

One `SoftStateTables` per scheduler process (one model instance per process), published through the module-level
registry (`publish` / `get_tables`) so the driver running in the same process can reach it. Rows are indexed by
`req_pool_idx` (`forward_batch.req_pool_indices` on the model side, `req.kv.req_pool_idx` on the request side).
Row 0 is SGLang's padding row: padded CUDA-graph batches read it, no live request ever owns it.

Rules (CUDA graphs): every tensor is allocated once, before graph capture, and only ever updated in place
(`index_fill_`, `index_copy_`, `copy_`); nothing here syncs with the host; no data-dependent shapes.

Tables (`R` rows, `K = kmax` concept slots, `M = marker_max` marker ids):

| name     | shape / dtype   | meaning |
|----------|-----------------|---------|
| `active` | [R] bool        | the next decode input of this row is a concept (soft) input |
| `think`  | [R] bool        | the row is in phase THINK (differs from `active` while a multi-id marker is forced) |
| `ids`    | [R, K] int64    | concept support (the next input), sorted by weight |
| `w`      | [R, K] float32  | concept weights; zero tail for requests with a smaller K |
| `cnt`    | [R] int32       | Cold-Stop consecutive low-entropy counter |
| `step`   | [R] int32       | steps since (re)initialisation: the counter-RNG key (host `output_ids` lags) |
| `nthink` | [R] int32       | THINK tokens recorded so far (thinking budget) |
| `abort`  | [R] bool        | answer-phase abort pending (docs/design/algorithm.md §5.3) |
| `fresh`  | [R] bool        | set by every extend (prefill chunk); the driver initialises the row before use |
| `mpos`   | [R] int32       | multi-id marker: number of marker ids still to force (0 = none) |
| `hist`   | [R, M] int64    | the last M recorded ids, newest last (multi-id marker detection); -1 = none |
"""
from __future__ import annotations

import os
import threading
from typing import Callable, Dict, Optional, Union

import torch

DEFAULT_MAX_ROWS = 65536
DEFAULT_KMAX = 30
DEFAULT_MARKER_MAX = 8

#: field name -> (tail shape key, dtype, fill value); tail key: "" scalar per row, "K" concept slots, "M" marker ids
FIELDS = {
    "active": ("", torch.bool, False),
    "think": ("", torch.bool, False),
    "ids": ("K", torch.int64, 0),
    "w": ("K", torch.float32, 0.0),
    "cnt": ("", torch.int32, 0),
    "step": ("", torch.int32, 0),
    "nthink": ("", torch.int32, 0),
    "abort": ("", torch.bool, False),
    "fresh": ("", torch.bool, False),
    "mpos": ("", torch.int32, 0),
    "hist": ("M", torch.int64, -1),
}


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


class SoftStateTables:
    """Persistent per-row state. Allocate before CUDA-graph capture; never rebind a tensor afterwards."""

    def __init__(
        self,
        rows: int = DEFAULT_MAX_ROWS,
        kmax: int = DEFAULT_KMAX,
        *,
        marker_max: int = DEFAULT_MARKER_MAX,
        device: Union[str, torch.device, None] = None,
        mix_dtype: str = "model",
    ):
        if rows < 2:
            raise ValueError("need at least 2 rows (row 0 is the padding row)")
        if kmax < 1:
            raise ValueError("kmax must be >= 1")
        if mix_dtype not in ("model", "fp32"):
            raise ValueError(f"mix_dtype must be 'model' or 'fp32', not {mix_dtype!r}")
        self.rows = int(rows)
        self.kmax = int(kmax)
        self.marker_max = int(marker_max)
        self.mix_dtype = mix_dtype
        self.vocab: Optional[int] = None  # the model's vocabulary size (set by the model class; admission checks)
        # widest concept admitted so far: eager decode mixes only these columns (the rest hold zero weights);
        # a CUDA-graph capture always takes all kmax (a graph cannot grow later), see `mix_width`
        self.k_used = 1
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        tails = {"": (), "K": (self.kmax,), "M": (self.marker_max,)}
        self._fields: Dict[str, torch.Tensor] = {}
        for name, (tail, dtype, fill) in FIELDS.items():
            t = torch.full((self.rows, *tails[tail]), fill, dtype=dtype, device=self.device)
            self._fields[name] = t
            setattr(self, name, t)

    # ------------------------------------------------------------------ access
    def field_names(self):
        return list(self._fields)

    def gather(self, r: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Copies of the rows `r` (int64 [n]) of every table."""
        return {k: t.index_select(0, r) for k, t in self._fields.items()}

    def scatter(self, r: torch.Tensor, values: Dict[str, torch.Tensor]) -> None:
        """Write rows `r` in place. `r` must hold distinct rows (a batch never holds one request twice)."""
        for k, v in values.items():
            t = self._fields[k]
            t.index_copy_(0, r, v.to(dtype=t.dtype).reshape(r.shape[0], *t.shape[1:]))

    def snapshot(self) -> Dict[str, torch.Tensor]:
        return {k: t.clone() for k, t in self._fields.items()}

    def clear(self) -> None:
        for name, (_, _, fill) in FIELDS.items():
            self._fields[name].fill_(fill)

    def note_width(self, k: int) -> None:
        """Host side, at admission: a request with concept width `k` is coming."""
        self.k_used = min(self.kmax, max(self.k_used, int(k)))

    def mix_width(self) -> int:
        """Columns the decode mix reads: the admitted maximum when eager, kmax inside a CUDA-graph capture."""
        if self.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return self.kmax
        return self.k_used

    # ------------------------------------------------------------------ model side (graph-safe)
    def reset_rows(self, r: torch.Tensor) -> None:
        """Extend (every prefill chunk, re-prefill after retraction): ownership hand-off of the rows `r`.

        A row left active by a request that ended mid-thinking must not leak into the next owner.
        Graph-safe: in-place fills only. `r` may contain padding entries (row 0); row 0 is then marked fresh,
        which is harmless since no live request owns it and decode only reads it."""
        r = r.to(torch.int64)
        self.active.index_fill_(0, r, False)
        self.think.index_fill_(0, r, False)
        self.abort.index_fill_(0, r, False)
        self.mpos.index_fill_(0, r, 0)
        self.fresh.index_fill_(0, r, True)

    def mix(
        self,
        embed: Union[Callable[[torch.Tensor], torch.Tensor], torch.Tensor],
        r: torch.Tensor,
        input_ids: torch.Tensor,
        *,
        scale: Optional[float] = None,
    ) -> torch.Tensor:
        """Decode input embeddings for a batch: `where(active[r], Σ_k w[r,k]·E[ids[r,k]], E[input_ids])`.

        `embed` is the model's embedding module (`VocabParallelEmbedding` under TP: the public form gathers
        `[B*K]` ids through it, which masks the local shard and all-reduces) or a plain weight matrix `[V, D]`.
        The `where` form keeps non-soft rows bit-identical to the stock lookup. Runs for every row of a padded
        graph batch (padding rows point at row 0, which is never active). Graph-safe: no host sync, fixed shapes.
        `scale` applies a model-specific embedding scale to both branches exactly like the parent does to ids."""
        r = r.to(torch.int64)
        B, k = input_ids.shape[0], self.mix_width()
        ids = self.ids[:, :k].index_select(0, r)  # [B, k]
        w = self.w[:, :k].index_select(0, r)  # [B, k]
        weight = embed if isinstance(embed, torch.Tensor) else None
        if weight is None and int(getattr(embed, "tp_size", 1) or 1) == 1 and getattr(embed, "weight", None) is not None:
            weight = embed.weight  # unsharded (padded) matrix: index it directly, like the reference engine
        if weight is not None:
            plain = torch.nn.functional.embedding(input_ids, weight)
            mixed = mix_embeddings(weight, ids, w, self.mix_dtype)
        else:  # vocabulary-sharded (TP): the public form, K lookups through the module (masked gather + all-reduce)
            plain = embed(input_ids)
            rows = embed(ids.reshape(-1)).view(B, k, -1)  # [B, k, D]
            mixed = mix_rows(rows, w, self.mix_dtype)
        if scale is not None:
            plain = plain * scale
            mixed = mixed * scale
        act = self.active.index_select(0, r).unsqueeze(-1)
        return torch.where(act, mixed.to(plain.dtype), plain)

    def mix_module(
        self,
        lookup: Callable[[torch.Tensor], torch.Tensor],
        r: torch.Tensor,
        input_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Decode inputs through the model's own embedding lookup (`lookup`: the module's original forward):
        `where(active[r], Σ_k w[r,k]·lookup(ids[r,k]), lookup(input_ids))`. The plain rows are the stock call
        itself (bit-identical); a scale the module applies inside its forward reaches every concept row, exactly
        as the transformers engine mixes the rows of its own embedding module. Graph-safe like `mix`."""
        r = r.to(torch.int64)
        B, k = input_ids.shape[0], self.mix_width()
        ids = self.ids[:, :k].index_select(0, r)
        w = self.w[:, :k].index_select(0, r)
        plain = lookup(input_ids)
        rows = lookup(ids.reshape(-1)).view(B, k, -1)
        mixed = mix_rows(rows, w, self.mix_dtype)
        act = self.active.index_select(0, r).unsqueeze(-1)
        return torch.where(act, mixed.to(plain.dtype), plain)

    def mix_sharded(
        self,
        local_lookup: Callable[[torch.Tensor], torch.Tensor],
        all_reduce: Callable[[torch.Tensor], torch.Tensor],
        r: torch.Tensor,
        input_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Tensor parallel, official style: gather the K concept rows and the plain row from this rank's
        vocabulary shard (out-of-shard rows are zero), mix locally, then ONE all-reduce of `[B, D]` - the same
        collective volume as the stock decode lookup. Inactive rows all-reduce exactly the stock partials, so they
        stay bit-identical to the stock path; soft rows differ from the single-GPU sum only in summation order."""
        return all_reduce(self.mix_module(local_lookup, r, input_ids))


def mix_embeddings(weight: torch.Tensor, ids: torch.Tensor, w: torch.Tensor, mix_dtype: str = "model") -> torch.Tensor:
    """`Σ_k w_k · E[ids_k]`: `softthink.core.mix_embeddings`, the one definition of the S10 numerics."""
    from softthink import core

    return core.mix_embeddings(weight, ids, w, fp32=mix_dtype == "fp32")


def mix_rows(rows: torch.Tensor, w: torch.Tensor, mix_dtype: str = "model") -> torch.Tensor:
    """The same numerics on already gathered rows `[B, K, D]` (TP path). Uses `softthink.core.mix_rows` when the
    core provides it; otherwise the identical formula of `core.mix_embeddings` (products in fp32, cast to the model
    dtype before the sum for `model`, one cast of the fp32 sum for `fp32`)."""
    from softthink import core

    fn = getattr(core, "mix_rows", None)
    if fn is not None:
        return fn(rows, w, fp32=mix_dtype == "fp32")
    prod = rows.float() * w[..., None].float()
    if mix_dtype == "fp32":
        return prod.sum(1).to(rows.dtype)
    return prod.to(rows.dtype).sum(1)


# ---------------------------------------------------------------------- process registry
_LOCK = threading.Lock()
_TABLES: Optional[SoftStateTables] = None
_REFUSED: Optional[str] = None  # why this process's model cannot serve soft requests (set instead of tables)


def publish(tables: SoftStateTables) -> SoftStateTables:
    """Make `tables` the process's tables (called by the model subclass's __init__, or the harness)."""
    global _TABLES
    with _LOCK:
        _TABLES = tables
    return tables


def refuse(reason: str) -> None:
    """Record that this process's model cannot serve soft requests (the model class refused it)."""
    global _REFUSED
    with _LOCK:
        _REFUSED = reason


def missing_reason() -> str:
    """Why there are no tables in this process."""
    if _REFUSED:
        return f"the model was refused: {_REFUSED}"
    return ("the model was not built through softthink: launch with "
            "SGLANG_EXTERNAL_MODEL_PACKAGE=softthink.sglang_glue.models (or the softthink plugin entry point)")


def get_tables(required: bool = True) -> Optional[SoftStateTables]:
    if _TABLES is None and required:
        raise RuntimeError("softthink: no soft-thinking state tables in this process; " + missing_reason())
    return _TABLES


def unpublish() -> None:
    global _TABLES, _REFUSED
    with _LOCK:
        _TABLES = None
        _REFUSED = None
