"""Driver A: a `CustomLogitProcessor` (docs/design/sglang-plugin.md §6). Nothing in SGLang is patched.

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
import weakref
from typing import Any, Dict, List, Optional

import torch

from softthink.sglang_glue import driver as D
from softthink.sglang_glue.tables import get_tables, missing_reason

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


def req_pool_idx(req) -> Optional[int]:
    """The request's table row: `req.kv.req_pool_idx` (0.5.20+) or `req.req_pool_idx` (<= 0.5.16); None when the
    row is already freed (a request finished by EOS before a delayed sampling step) or not yet allocated."""
    if req is None:
        return None
    try:
        kv = getattr(req, "kv", None)
        idx = getattr(kv, "req_pool_idx", None) if kv is not None else None
        if idx is None:
            idx = getattr(req, "req_pool_idx", None)
    except ReferenceError:  # weak proxy of a request the scheduler already dropped
        return None
    return None if idx is None else int(idx)


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


# ------------------------------------------------------------------------------------------ admission
#: native sampling options that change the logits before Driver A sees them but after Driver B reads them: both
#: drivers refuse them for soft requests, so the two always compute the same THINK phase
REFUSED_SAMPLING = {
    "frequency_penalty": 0.0, "presence_penalty": 0.0, "repetition_penalty": 1.0, "min_new_tokens": 0,
    "logit_bias": None, "json_schema": None, "regex": None, "ebnf": None, "structural_tag": None,
    "beam_width": None,
}


def refused_sampling(sampling_params) -> List[str]:
    """The native sampling options of a soft request that the plugin refuses (names with their values)."""
    bad = []
    for name, neutral in REFUSED_SAMPLING.items():
        v = getattr(sampling_params, name, neutral) if sampling_params is not None else neutral
        if name == "beam_width" and v is not None and int(v) <= 1:
            continue
        if v not in (neutral, None, {}, "") and not (isinstance(neutral, float) and float(v) == neutral):
            bad.append(f"{name}={v!r}")
    return bad


def admit(p: Optional[Dict], req, tables=None) -> Optional["D.RequestSpec"]:
    """The request's soft-thinking spec, validated once (at its first sight); None for a plain request.

    A request the plugin cannot serve is finished with an error for that request alone
    (`req.set_finish_with_abort`, the client sees the message) and is treated as plain from then on: nothing is
    raised into the scheduler, which would kill the server."""
    if not p or not p.get("st"):
        return None
    cached = p.get("__st_admit__")
    if cached is not None:
        return cached or None
    try:
        spec = D.RequestSpec.from_params(p)
        problems = refused_sampling(getattr(req, "sampling_params", None)) if req is not None else []
        if problems:
            raise D.PluginRequestError(
                "soft-thinking requests cannot use " + ", ".join(problems) + " (they would change the thinking "
                "distribution differently in the two drivers); send them as plain requests")
        if tables is None:
            tables = get_tables(required=False)
        if tables is None:
            raise D.PluginRequestError(
                "this server has no soft-thinking state tables (" + missing_reason() + "); refusing to serve it as "
                "plain decoding")
        if spec.uses_driver:
            D.check_widths(spec, tables.kmax, tables.marker_max, tables.vocab)
            tables.note_width(spec.widths(tables.vocab or 1 << 30)[1])
        spec = D.with_copy_index(spec, copy_index(req, spec))
    except Exception as e:  # noqa: BLE001 - every failure is this request's alone
        reject(req, e)
        p["__st_admit__"] = False
        return None
    p["__st_admit__"] = spec
    return spec


def reject(req, err) -> None:
    """Finish `req` with `err` as its own result (finish reason `abort` with the message). No HTTP status code:
    SGLang then returns the other requests of a batch normally instead of failing the whole call."""
    msg = str(err) if isinstance(err, D.PluginRequestError) else f"softthink plugin error: {type(err).__name__}: {err}"
    logger.error("softthink: request %s refused: %s", getattr(req, "rid", "?"), msg)
    if req is None:
        return
    try:
        from sglang.srt.managers.schedule_batch import FINISH_ABORT

        # set_finish_with_abort would also replace origin_input_ids, wrong for a request already running
        req.to_finish = FINISH_ABORT(msg, None, "SoftThinkingRequestError")
        return
    except ImportError:  # the CPU harness's stand-ins
        pass
    except (AttributeError, ReferenceError, TypeError):
        logger.exception("softthink: could not abort request %s", getattr(req, "rid", "?"))
        return
    fn = getattr(req, "set_finish_with_abort", None)
    if fn is not None:
        fn(msg)


# n > 1: SGLang expands a request into n copies with fresh rids and identical parameters; each copy gets its own
# counter-RNG key, uid + copy index (in admission order), like the suite's sample uids (item * stride + sample).
_COPIES: Dict[tuple, list] = {}


def copy_index(req, spec: "D.RequestSpec") -> int:
    n = int(getattr(getattr(req, "sampling_params", None), "n", 1) or 1)
    if req is None or n <= 1:
        return 0
    key = (spec.cfg_json, spec.uid, spec.marker)
    group = _COPIES.get(key)
    if group is None or len(group) >= n or not any(map(_alive, group)):
        group = _COPIES[key] = []  # a new expansion of the same request
    try:
        group.append(weakref.ref(req))
    except TypeError:  # already a weakref.proxy (Driver A's __req__)
        group.append(req)
    if len(_COPIES) > 1024:
        for k in [k for k, g in _COPIES.items() if not any(map(_alive, g))]:
            _COPIES.pop(k, None)
    return len(group) - 1


def _alive(ref) -> bool:
    if isinstance(ref, weakref.ref):
        return ref() is not None
    try:
        getattr(ref, "rid")
        return True
    except ReferenceError:
        return False


class SoftThinkingLogitProcessor(_Base):
    """Soft Thinking driver as a custom logit processor. Never raises into the scheduler."""

    def __call__(self, logits: torch.Tensor, custom_param_list: Optional[List[Dict[str, Any]]] = None):
        if not custom_param_list:
            return logits
        tables = get_tables(required=False)
        specs, rows, starts, reqs = [], [], [], []
        for p in custom_param_list:
            req = p.get("__req__") if p else None
            spec = admit(p, req, tables) if p else None
            row = req_pool_idx(req) if req is not None else (p.get("st_row") if p else None)
            if spec is None or not spec.uses_driver or row is None:  # plain, refused, or row already freed
                spec, row = None, 0
            elif not 0 < int(row) < tables.rows:
                reject(req, D.PluginRequestError(
                    f"req_pool_idx {row} is outside the state tables (rows={tables.rows}); restart the server with "
                    "SOFTTHINK_SGLANG_MAX_ROWS larger than --max-running-requests"))
                p["__st_admit__"] = False
                spec, row = None, 0
            specs.append(spec)
            rows.append(int(row))
            reqs.append(req)
            starts.append(start_think(p, req, spec) if spec is not None else True)
        if all(s is None for s in specs):
            return logits
        try:
            r = D.h2d(rows, torch.int64, logits.device)
            out = D.driver_step(tables, logits, r, specs, starts)
            return D.force_logits(logits, out.token, out.force)
        except Exception as e:  # noqa: BLE001 - a driver failure ends these requests, not the server
            logger.exception("softthink: driver step failed")
            for p, req, s in zip(custom_param_list, reqs, specs):
                if s is not None:
                    reject(req, e)
                    p["__st_admit__"] = False
            return logits


def processor_str() -> str:
    """The serialised processor to send with each request."""
    return SoftThinkingLogitProcessor.to_str()
