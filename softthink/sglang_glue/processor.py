"""Driver A: a `CustomLogitProcessor` (SGLANG.md §6). Nothing in SGLang is patched.

Server: `--enable-custom-logit-processor` (bind to localhost: the processor string is dill) and
`SGLANG_EXTERNAL_MODEL_PACKAGE=softthink.sglang_glue.models`. Client: `custom_logit_processor=
SoftThinkingLogitProcessor.to_str()` (a ~120-byte by-reference string: the class lives in this installed module) and
`sampling_params={..answer-phase params.., "custom_params": soft_custom_params(...)}`.

`__call__(logits[n, V], custom_param_list)` gets the rows that carry this processor; each param dict holds the
request's `custom_params` plus `"__req__"` (a weak proxy to the scheduler's `Req`). The row index comes from
`req.kv.req_pool_idx` (0.5.20+) or `req.req_pool_idx` (up to 0.5.16) - the one version shim. The processor instance
is re-created per batch build, so all state lives in the tables (GPU) and in the per-request dicts.

Without SGLang installed this module still imports (a stand-in base class with the same `to_str`/`from_str`), so
the CPU simulation harness can drive the exact same `__call__`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

import torch

from softthink.sglang_glue import driver as D
from softthink.sglang_glue.tables import get_tables

logger = logging.getLogger("softthink.sglang_glue")

try:  # the real ABC when SGLang is installed
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor as _Base

    HAVE_SGLANG = True
except ImportError:  # stand-in with the same serialisation contract
    import json as _json
    from abc import ABC, abstractmethod

    HAVE_SGLANG = False

    class _Base(ABC):  # type: ignore[no-redef]
        @abstractmethod
        def __call__(self, logits, custom_param_list=None):
            raise NotImplementedError

        @classmethod
        def to_str(cls) -> str:
            import pickle

            return _json.dumps({"callable": pickle.dumps(cls).hex()})

        @classmethod
        def from_str(cls, json_str: str):
            import pickle

            return pickle.loads(bytes.fromhex(_json.loads(json_str)["callable"]))()


def req_pool_idx(req) -> int:
    """The request's table row: `req.kv.req_pool_idx` (0.5.20+) or `req.req_pool_idx` (<= 0.5.16)."""
    kv = getattr(req, "kv", None)
    idx = getattr(kv, "req_pool_idx", None) if kv is not None else None
    if idx is None:
        idx = getattr(req, "req_pool_idx", None)
    if idx is None:
        raise RuntimeError("softthink: request has no req_pool_idx (not scheduled?)")
    return int(idx)


def start_think(p: Dict, req, spec: "D.RequestSpec") -> bool:
    """Start phase for a fresh row: THINK, unless the request's history (re-prefill after retraction) already
    contains the think-end marker. Decided once per (retraction count) and cached on the request's param dict;
    the scan of `output_ids` is incremental, so it costs O(1) amortised per step."""
    if req is None:
        return True
    cache = p.get("__st_start__")
    rc = int(getattr(req, "retraction_count", 0) or 0)
    if cache is None or cache[0] != rc:
        out = list(getattr(req, "output_ids", []) or [])
        cache = (rc, not D.marker_in(out, spec.marker))
        if rc > 0:
            logger.warning("softthink: request %s re-prefilled after retraction %d: its soft history is replayed "
                           "as hard tokens (engine.on_retraction=replay_hard); start phase %s", getattr(req, "rid", "?"),
                           rc, "THINK" if cache[1] else "ANSWER")
        p["__st_start__"] = cache
    return cache[1]


class SoftThinkingLogitProcessor(_Base):
    """Soft Thinking driver as a custom logit processor."""

    def __call__(self, logits: torch.Tensor, custom_param_list: Optional[List[Dict[str, Any]]] = None):
        if not custom_param_list:
            return logits
        specs, rows, starts = [], [], []
        any_soft = False
        for p in custom_param_list:
            spec = D.RequestSpec.from_params(p) if p else None
            if spec is None or not spec.uses_driver:
                specs.append(None)
                rows.append(0)
                starts.append(True)
                continue
            any_soft = True
            req = p.get("__req__")
            specs.append(spec)
            rows.append(req_pool_idx(req) if req is not None else int(p["st_row"]))
            starts.append(start_think(p, req, spec))
        if not any_soft:
            return logits
        tables = get_tables()
        bad = [r for r, s in zip(rows, specs) if s is not None and not (0 < r < tables.rows)]
        if bad:
            raise RuntimeError(
                f"softthink: req_pool_idx {bad} outside the state tables (rows={tables.rows}); restart the server "
                f"with SOFTTHINK_SGLANG_MAX_ROWS larger than --max-running-requests")
        r = D.h2d(rows, torch.int64, logits.device)
        out = D.driver_step(tables, logits, r, specs, starts)
        return D.force_logits(logits, out.token, out.force)


def processor_str() -> str:
    """The serialised processor to send with each request."""
    return SoftThinkingLogitProcessor.to_str()
