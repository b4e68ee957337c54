"""The driver step of the SGLang plugin (docs/design/sglang-plugin.md §5): eager, after the logits, all on the
device, no host sync.

It gathers the rows' phase-machine state from the tables, runs `softthink.core.step` (the one definition of the
per-step math, shared with the transformers engine), writes the state and the next concept back, and returns the
visible token each row must produce. Pure torch; no SGLang import.

Per-request parameters travel in `sampling_params.custom_params` (JSON scalars/lists only):

| key          | value |
|--------------|-------|
| `st`         | 1 (marks a soft-thinking request) |
| `st_cfg`     | the resolved `GenerationConfig` as a JSON string (`cfg.to_json()`; a partial dict is accepted) |
| `st_marker`  | list of token ids of `think.end_str` (`tokenizer.encode(end_str, add_special_tokens=False)`) |
| `st_eos`     | the EOS id(s) (list; the first is forced for the answer-phase abort) |
| `st_uid`     | the sample uid (counter-RNG key; defaults to 0) |
| `st_answer`  | `"driver"` (default: the driver produces ANSWER tokens too, exactly the reference semantics and counter RNG) or `"native"` (ANSWER rows are left to SGLang's sampler with the request's native parameters) |

`RequestSpec.from_params` parses and caches them; `soft_custom_params(...)` builds them on the client side.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Dict, List, Optional, Sequence

import torch

from softthink import core
from softthink.methods import METHODS
from softthink.sglang_glue.tables import SoftStateTables

#: methods the plugin runs through the driver (the others: discrete methods run natively, the rest are refused:
#: COCONUT-TF feeds hidden states and SwiReasoning full-vocabulary inputs, neither fits the [R, K] tables)
DRIVER_METHODS = tuple(n for n, m in METHODS.items() if m.sglang == "driver")  # softthink/methods.py
NATIVE_METHODS = tuple(n for n, m in METHODS.items() if m.sglang == "native")


class PluginRequestError(ValueError):
    """A request the plugin cannot serve (clear message for the client)."""


@lru_cache(maxsize=256)
def _parse_config(cfg_json: str):
    from softthink.config import GenerationConfig

    data = json.loads(cfg_json) if cfg_json else {}
    return GenerationConfig.from_dict(data)


def check_config(cfg) -> None:
    """Refuse configurations the plugin cannot run (raised on the client side before anything is sent)."""
    if METHODS[cfg.method].sglang is None:
        raise PluginRequestError(
            f"method {cfg.method!r} is not supported by the sglang engine (supported: "
            f"{', '.join(n for n, m in METHODS.items() if m.sglang)}); use the transformers engine (--engine hf)"
        )
    if cfg.phase.start != "think":
        raise PluginRequestError(
            "phase.start='after_open_tag' is not supported by the sglang engine (the plugin never re-enters THINK); "
            "use the transformers engine"
        )


@dataclass(frozen=True)
class RequestSpec:
    """The parsed soft-thinking parameters of one request (host side, cached per request)."""

    cfg_json: str
    marker: tuple
    eos: tuple
    uid: int
    answer_by_driver: bool

    @property
    def cfg(self):
        return _parse_config(self.cfg_json)

    @classmethod
    def from_params(cls, p: Dict) -> Optional["RequestSpec"]:
        if not p or not p.get("st"):
            return None
        cached = p.get("__st_spec__")
        if isinstance(cached, RequestSpec):
            return cached
        cfg_json = p.get("st_cfg") or "{}"
        if isinstance(cfg_json, dict):
            cfg_json = json.dumps(cfg_json, sort_keys=True)
        cfg = _parse_config(cfg_json)
        check_config(cfg)
        marker = tuple(int(x) for x in (p.get("st_marker") or ()))
        if not marker:
            raise PluginRequestError("soft-thinking request without 'st_marker' (the ids of think.end_str)")
        eos = p.get("st_eos")
        eos = tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None and int(e) >= 0)
        answer = p.get("st_answer", "driver")
        if answer not in ("driver", "native"):
            raise PluginRequestError(f"st_answer must be 'driver' or 'native', not {answer!r}")
        if answer == "native" and cfg.method == "moi":
            raise PluginRequestError("method 'moi' mixes the sampled answer token into the next input: it needs "
                                     "st_answer='driver'")
        spec = cls(cfg_json, marker, eos, int(p.get("st_uid", 0)), answer == "driver")
        try:
            p["__st_spec__"] = spec  # cache on the request's own dict (a per-request copy in SGLang)
        except TypeError:
            pass
        return spec

    @property
    def uses_driver(self) -> bool:
        return uses_driver(self.cfg)

    def widths(self, vocab: int):
        return core.static_widths(self.cfg, vocab)


def with_copy_index(spec: RequestSpec, k: int) -> RequestSpec:
    """The spec of copy `k` of an `n > 1` request: its own counter-RNG key, uid + k."""
    return spec if k == 0 else dataclasses.replace(spec, uid=spec.uid + int(k))


def check_widths(spec: RequestSpec, kmax: int, marker_max: int, vocab: Optional[int] = None) -> None:
    """Raise `PluginRequestError` when the request does not fit the server's static tables: marker length
    (`SOFTTHINK_SGLANG_MARKER_MAX`) and concept width (`SOFTTHINK_SGLANG_KMAX`)."""
    m = len(spec.marker)
    if m > marker_max:
        raise PluginRequestError(
            f"think.end_str encodes to {m} ids; the server was started with SOFTTHINK_SGLANG_MARKER_MAX={marker_max}")
    _, cwidth = spec.widths(vocab or 1 << 30)
    if cwidth > kmax:
        raise PluginRequestError(
            f"the request's concept width {cwidth} (think.max_topk; moi.top_k + 1 for MoI) exceeds the server's "
            f"SOFTTHINK_SGLANG_KMAX={kmax} (sglang-serve --kmax)")


def uses_driver(cfg) -> bool:
    """Soft methods always; discrete ones only with a thinking budget (stock SGLang cannot force the marker)."""
    # a thinking budget needs the driver's phase machine even for discrete CoT (NoThinking has no thinking)
    method = METHODS[cfg.method]
    native_with_budget = method.sglang == "native" and not method.nothinking and cfg.think.budget > 0
    return method.sglang == "driver" or native_with_budget


def soft_custom_params(cfg, marker_ids: Sequence[int], eos_id, uid: int = 0, answer: str = "driver") -> Dict:
    """The `custom_params` of one soft-thinking request (client side)."""
    check_config(cfg)
    return {
        "st": 1,
        "st_cfg": cfg.to_json(),
        "st_marker": [int(x) for x in marker_ids],
        "st_eos": [] if eos_id is None else ([int(e) for e in eos_id] if isinstance(eos_id, (list, tuple))
                                             else [int(eos_id)]),
        "st_uid": int(uid),
        "st_answer": answer,
    }


# ------------------------------------------------------------------------------------------------ params cache
_PARAMS_CACHE: Dict[tuple, core.Params] = {}


def _params_row(spec: RequestSpec, device) -> core.Params:
    key = (spec.cfg_json, spec.marker, str(device))
    prm = _PARAMS_CACHE.get(key)
    if prm is None:
        prm = core.Params.from_config(spec.cfg, 1, list(spec.marker), device=device)
        if len(_PARAMS_CACHE) > 1024:
            _PARAMS_CACHE.clear()
        _PARAMS_CACHE[key] = prm
    return prm


def _cat_params(parts: List[core.Params]) -> core.Params:
    if len(parts) == 1:
        return parts[0]
    return core.Params(**{f.name: torch.cat([getattr(p, f.name) for p in parts], 0) for f in fields(core.Params)})


def _expand(prm: core.Params, n: int) -> core.Params:
    idx = torch.zeros(n, dtype=torch.int64, device=prm.seed.device)
    return prm.index(idx)


# ------------------------------------------------------------------------------------------------ the step
def h2d(values, dtype, device) -> torch.Tensor:
    """Host list -> device tensor without a host sync: pinned staging + non_blocking copy on CUDA (a pageable
    copy would block the host and break the overlap scheduler's CPU/GPU overlap)."""
    t = torch.tensor(values, dtype=dtype)
    if torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@dataclass
class DriverOut:
    token: torch.Tensor  # [n] the token each row must produce
    force: torch.Tensor  # [n] bool: the driver forces `token` (False: leave the row to the native sampler)
    step: Optional[core.StepOut]  # core output in batch order (None if no soft row)


def driver_step(
    tables: SoftStateTables,
    logits: torch.Tensor,
    rows: torch.Tensor,
    specs: Sequence[Optional[RequestSpec]],
    start_think: Optional[Sequence[bool]] = None,
) -> DriverOut:
    """Run the driver on `logits [n, V]` whose row i belongs to table row `rows[i]` with request `specs[i]`
    (None: not a soft request, left untouched). `start_think[i]`: the phase a fresh row starts in (False after a
    re-prefill whose history already contains the marker). Returns the forced tokens."""
    n, vocab = logits.shape
    device = logits.device
    rows = rows.to(device=device, dtype=torch.int64)
    token = torch.zeros(n, dtype=torch.int64, device=device)
    force = torch.zeros(n, dtype=torch.bool, device=device)
    if start_think is None:
        start_think = [True] * n

    groups: Dict[tuple, List[int]] = {}
    for i, s in enumerate(specs):
        if s is None or not s.uses_driver:
            continue
        check_widths(s, tables.kmax, tables.marker_max, vocab)
        m = len(s.marker)
        width, cwidth = s.widths(vocab)
        tables.note_width(cwidth)  # before the row's first decode mix reads its concept
        dirichlet = s.cfg.noise.kind == "dirichlet"
        groups.setdefault((m, width, cwidth, dirichlet), []).append(i)
    if not groups:
        return DriverOut(token, force, None)

    step_parts = {}
    for (m, width, cwidth, dirichlet), members in groups.items():
        sel = h2d(members, torch.int64, device)
        r = rows.index_select(0, sel)
        z = logits.index_select(0, sel)
        g_specs = [specs[i] for i in members]
        # per-row params: one cached row per distinct config, expanded and concatenated in member order
        prm = _cat_params([_params_row(s, device) for s in g_specs]) if len({s.cfg_json for s in g_specs}) > 1 \
            else _expand(_params_row(g_specs[0], device), len(members))
        if len({s.marker for s in g_specs}) > 1:  # same length, different ids
            prm.marker = h2d([list(s.marker) for s in g_specs], torch.int64, device)
        uid = h2d([s.uid for s in g_specs], torch.int64, device)
        st0 = h2d([bool(start_think[i]) for i in members], torch.bool, device)

        # 1. fresh rows: initialise (start phase, counters, RNG step) before use
        g = tables.gather(r)
        fresh = g["fresh"]
        zero = torch.zeros_like(g["cnt"], dtype=torch.int64)
        state = core.State(
            think=torch.where(fresh, st0, g["think"]),
            cnt=torch.where(fresh, zero, g["cnt"].long()),
            n_think=torch.where(fresh, zero, g["nthink"].long()),
            force=torch.where(fresh, zero, g["mpos"].long()),
            recent=torch.where(fresh[:, None], torch.full_like(g["hist"][:, -m:], -1), g["hist"][:, -m:]),
            abort=torch.where(fresh, torch.zeros_like(fresh), g["abort"]),
            step=torch.where(fresh, zero, g["step"].long()),
        )
        keys = core.row_keys(prm.seed, uid, state.step)
        out, new = core.step(z, state, prm, keys, width=width, concept_width=cwidth, dirichlet=dirichlet)

        # 2. write the rows back (in place). The next input is soft unless it is the one-hot of the token
        # (then the model side takes the plain lookup of the sampled id, which native ANSWER sampling may choose)
        onehot = (out.in_ids[:, 0] == out.token) & (out.in_w[:, 0] == 1) & (out.in_w[:, 1:] == 0).all(-1)
        active = ~onehot
        ids = torch.zeros((len(members), tables.kmax), dtype=torch.int64, device=device)
        w = torch.zeros((len(members), tables.kmax), dtype=torch.float32, device=device)
        ids[:, :cwidth] = out.in_ids
        w[:, :cwidth] = out.in_w.float()
        hist = torch.full((len(members), tables.marker_max), -1, dtype=torch.int64, device=device)
        hist[:, tables.marker_max - m:] = new.recent
        tables.scatter(r, {
            "active": active, "think": new.think, "ids": ids, "w": w, "cnt": new.cnt, "step": new.step,
            "nthink": new.n_think, "abort": new.abort, "fresh": torch.zeros_like(fresh), "mpos": new.force,
            "hist": hist,
        })

        # 3. visible token: THINK rows always; ANSWER rows when the driver samples them. Two finishes SGLang can
        # only see through a token: the answer-phase abort (EOS instead of the token after the flag) and an EOS
        # argmax replaced by the forced marker (the reference finishes on the raw EOS; we emit that EOS).
        ne = max(1, max(len(s.eos) for s in g_specs))
        eos = h2d([list(s.eos) + [-1] * (ne - len(s.eos)) for s in g_specs], torch.int64, device)
        by_driver = h2d([s.answer_by_driver for s in g_specs], torch.bool, device)
        abort_fin = out.abort_finish & (eos[:, 0] >= 0)
        raw_eos = (out.raw_token[:, None] == eos).any(-1) & (eos[:, 0] >= 0)
        tok = torch.where(raw_eos & (out.token != out.raw_token), out.raw_token, out.token)
        tok = torch.where(abort_fin, eos[:, 0], tok)
        frc = out.was_think | by_driver | abort_fin
        token.index_copy_(0, sel, tok)
        force.index_copy_(0, sel, frc)
        step_parts[tuple(members)] = out

    merged = _merge_outs(step_parts, n, device) if len(step_parts) > 1 or len(next(iter(step_parts))) != n else \
        next(iter(step_parts.values()))
    res = DriverOut(token, force, merged)
    if _OBSERVER is not None:
        _OBSERVER(rows, specs, res)
    return res


_OBSERVER = None


def set_observer(fn) -> None:
    """Debug/test hook: `fn(rows, specs, DriverOut)` after every driver step (None to remove). Reading the
    tensors syncs with the device, so production runs leave it unset."""
    global _OBSERVER
    _OBSERVER = fn


def _merge_outs(parts: Dict[tuple, core.StepOut], n: int, device) -> Optional[core.StepOut]:
    """StepOut in batch order (rows without a soft request hold zeros). Concept widths may differ between groups:
    the merged concept is padded to the widest."""
    kw = max(o.in_ids.shape[1] for o in parts.values())
    acc = {}
    ref = next(iter(parts.values()))
    names = [f.name for f in fields(core.StepOut) if getattr(ref, f.name) is not None]
    for name in names:
        t = getattr(ref, name)
        shape = (n, kw) if t.dim() == 2 else (n,)
        acc[name] = torch.zeros(shape, dtype=t.dtype, device=device)
    for members, o in parts.items():
        sel = h2d(members, torch.int64, device)
        for name in names:
            t = getattr(o, name)
            if t is None:
                continue
            if t.dim() == 2:
                t = torch.nn.functional.pad(t, (0, kw - t.shape[1]))
            acc[name].index_copy_(0, sel, t.to(acc[name].dtype))
    return core.StepOut(**acc)


def force_logits(logits: torch.Tensor, token: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
    """−inf everywhere except `token` on the forced rows (every SGLang sampling path then returns `token`,
    whatever the temperature/top-k/top-p/min-p); other rows unchanged. In place, one pass over the vocabulary
    (SGLang hands the processor its own copy of the rows and copies the result back)."""
    tok = token[:, None].to(torch.int64)
    kept = logits.gather(1, tok)
    logits.masked_fill_(force[:, None], float("-inf"))
    logits.scatter_(1, tok, torch.where(force[:, None], torch.zeros_like(kept), kept))
    return logits


def marker_in(ids: Sequence[int], marker: Sequence[int]) -> bool:
    """Does the history `ids` contain the marker (start phase of a re-prefilled request)?"""
    m = len(marker)
    if m == 0:
        return False
    ids = list(ids)
    for j in range(len(ids) - m + 1):
        if ids[j] == marker[0] and tuple(ids[j:j + m]) == tuple(marker):
            return True
    return False
