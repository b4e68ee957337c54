"""Entry point `sglang.srt.plugins: softthink = softthink.sglang_glue.plugin:register`
(docs/design/sglang-plugin.md §7, §10).

SGLang (>= 0.5.16) runs `register()` at the top of every scheduler, the DP controller, the detokenizer and the main
process, then `HookRegistry.apply_hooks()`. Being installed must not change anybody's SGLang, so `register()` is a
no-op unless selected:

* `SOFTTHINK_SGLANG_DRIVER=A` - shadow the model classes (Driver A, the custom logit processor, does the rest;
  equivalent to `SGLANG_EXTERNAL_MODEL_PACKAGE=softthink.sglang_glue.models`) and check each request's processor
  string at admission (`on_req_init_a`: one that does not load fails alone instead of killing the scheduler);
* `SOFTTHINK_SGLANG_DRIVER=B` (or `SGLANG_PLUGINS` naming `softthink` explicitly) - shadow the classes and install
  Driver B: an `AROUND` hook on `ModelRunner.sample` plus an `AFTER` hook on `Req.__init__` that records
  `rid -> request` and keeps soft requests out of the radix cache (`skip_radix_cache_insert`).

On 0.5.10-0.5.15 (no plugin framework) call `register(force="B")` from an `Engine.run_scheduler_process_func`
wrapper and apply the hooks by hand (`apply_now=True`).
"""
from __future__ import annotations

import logging
import os
import sys
import weakref
from typing import Dict, Optional

logger = logging.getLogger("softthink.sglang_glue")

SAMPLE_TARGET = "sglang.srt.model_executor.model_runner.ModelRunner.sample"
REQ_INIT_TARGET = "sglang.srt.managers.schedule_batch.Req.__init__"

_REQS: Dict[str, "weakref.ref"] = {}
_STATE = {"registered": None}


def selected_driver() -> Optional[str]:
    d = os.environ.get("SOFTTHINK_SGLANG_DRIVER", "").strip().upper()
    if d in ("A", "B"):
        return d
    allowed = {x.strip() for x in os.environ.get("SGLANG_PLUGINS", "").split(",") if x.strip()}
    if "softthink" in allowed:
        return "B"
    return None


def _deliver_models() -> list:
    """Model classes for this process, lazily: through `SGLANG_EXTERNAL_MODEL_PACKAGE`, which SGLang's registry
    reads only in the processes that resolve a model (the schedulers), so the detokenizer, the DP controller and
    the main process never import model code. Registers directly only when the registry is already imported."""
    from softthink.sglang_glue import EXTERNAL_MODEL_PACKAGE

    current = os.environ.get("SGLANG_EXTERNAL_MODEL_PACKAGE", "")
    if current and current != EXTERNAL_MODEL_PACKAGE:
        logger.warning("softthink: SGLANG_EXTERNAL_MODEL_PACKAGE=%s is not softthink's; registering directly",
                       current)
        return register_models()
    if "sglang.srt.models.registry" in sys.modules:
        from sglang.srt.models.registry import ModelRegistry

        if not getattr(ModelRegistry.models.get("Qwen2ForCausalLM"), "softthink_soft", False):
            return register_models()
        return []
    os.environ["SGLANG_EXTERNAL_MODEL_PACKAGE"] = EXTERNAL_MODEL_PACKAGE
    return []


def register_models() -> list:
    """Shadow every model class in this process's `ModelRegistry` with its soft subclass."""
    from sglang.srt.models.registry import ModelRegistry

    from softthink.sglang_glue.models import soft_classes

    classes = soft_classes()
    for cls in classes:
        ModelRegistry.models[cls.__name__] = cls
    return classes


# ---------------------------------------------------------------------------------------------- Driver B hooks
def on_req_init(result, req, *args, **kwargs):
    """AFTER `Req.__init__`: validate a soft request at admission (a bad one is finished with its own error),
    remember it by rid, keep it out of the radix cache unless shared. Never raises into the scheduler."""
    from softthink.sglang_glue.processor import admit

    params = getattr(getattr(req, "sampling_params", None), "custom_params", None)
    spec = admit(params, req) if isinstance(params, dict) else None
    if spec is not None:
        _remember(req)
        if spec.cfg.engine.prefix_cache_for_soft != "share":
            req.skip_radix_cache_insert = True
    return result


def on_req_init_a(result, req, *args, **kwargs):
    """Driver A, AFTER `Req.__init__`: a `custom_logit_processor` string that does not load is that request's own
    error (stock SGLang loads it while building the batch, where the exception kills the scheduler and with it the
    server). Loading here is no extra work: SGLang caches the loaded processor by its string."""
    text = getattr(req, "custom_logit_processor", None)
    if text:
        try:
            from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

            CustomLogitProcessor.from_str(text)
        except Exception as e:  # noqa: BLE001 - any failure to load is the request's, never the scheduler's
            from softthink.sglang_glue.processor import reject

            req.custom_logit_processor = None
            reject(req, ValueError(f"custom_logit_processor does not load ({type(e).__name__}: {e})"))
    return result


_PRUNE_EVERY = 256


def _remember(req) -> None:
    _REQS[req.rid] = weakref.ref(req)
    _STATE["inserts"] = _STATE.get("inserts", 0) + 1
    if _STATE["inserts"] % _PRUNE_EVERY == 0:  # finished requests: their weak references are dead
        for rid in [rid for rid, ref in _REQS.items() if ref() is None or _finished(ref())]:
            _REQS.pop(rid, None)


def _finished(req) -> bool:
    fn = getattr(req, "finished", None)
    try:
        return bool(fn()) if callable(fn) else False
    except Exception:  # noqa: BLE001
        return False


def _lookup(rid):
    ref = _REQS.get(rid)
    req = ref() if ref is not None else None
    if req is None:
        _REQS.pop(rid, None)
    return req


class HostRows:
    """Per-step records on the host, one element per batch row (SGLang copies `v[i]` into `req.customized_info`):
    one non-blocking device-to-host copy per step; rows read as plain lists, so `meta_info` serialises to JSON."""

    def __init__(self, packed, kw: int):
        self.packed, self.kw = packed, kw  # [n, 2K+1] float32: ids, weights, entropy

    def field(self, name: str) -> "HostField":
        return HostField(self, name)


class HostField:
    def __init__(self, rows: HostRows, name: str):
        self.rows, self.name = rows, name

    def __getitem__(self, i: int):
        row, kw = self.rows.packed[i], self.rows.kw
        if self.name == "st_ids":
            return [int(x) for x in row[:kw].tolist()]
        if self.name == "st_w":
            return row[kw:2 * kw].tolist()
        return float(row[2 * kw])


def host_records(step) -> dict:
    import torch

    kw = step.in_ids.shape[1]
    packed = torch.cat([step.in_ids.float(), step.in_w.float(), step.entropy.float()[:, None]], 1)
    if packed.device.type == "cuda":  # stream-ordered before the scheduler's copy-done event of the sampled ids
        host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        host.copy_(packed, non_blocking=True)
    else:
        host = packed
    rows = HostRows(host, kw)
    return {name: rows.field(name) for name in ("st_ids", "st_w", "st_H")}


def soft_sample(original, runner, logits_output, forward_batch, *args, **kwargs):
    """AROUND `ModelRunner.sample`: the driver step on the logits (before the sampler softmaxes them in place),
    the native sampler, then the forced tokens replace the sampled ones on the driver's rows."""
    import torch

    from softthink.sglang_glue import driver as D
    from softthink.sglang_glue.processor import reject, start_think
    from softthink.sglang_glue.tables import get_tables

    mode = forward_batch.forward_mode
    rids = getattr(forward_batch, "rids", None)
    if not _REQS or rids is None or not (mode.is_decode() or mode.is_extend()):
        return original(runner, logits_output, forward_batch, *args, **kwargs)
    logits = logits_output.next_token_logits
    n = logits.shape[0]
    specs, starts, reqs = [], [], []
    for rid in rids[:n]:
        req = _lookup(rid)
        params = getattr(getattr(req, "sampling_params", None), "custom_params", None) if req is not None else None
        spec = params.get("__st_admit__") or None if isinstance(params, dict) else None
        specs.append(spec)
        reqs.append(req)
        starts.append(start_think(params, req, spec) if spec is not None else True)
    if all(s is None for s in specs):
        return original(runner, logits_output, forward_batch, *args, **kwargs)
    try:
        out = D.driver_step(get_tables(), logits, forward_batch.req_pool_indices[:n], specs, starts)
    except Exception as e:  # noqa: BLE001 - a driver failure ends these requests, not the server
        logger.exception("softthink: driver step failed")
        for req, s in zip(reqs, specs):
            if s is not None:
                reject(req, e)
                req.sampling_params.custom_params["__st_admit__"] = False
        return original(runner, logits_output, forward_batch, *args, **kwargs)
    ids = original(runner, logits_output, forward_batch, *args, **kwargs)
    ids = torch.where(out.force, out.token.to(ids.dtype), ids)
    if out.step is not None:  # per-step concept records, one element per row (-> req.customized_info)
        logits_output.customized_info = host_records(out.step)
    return ids


# ---------------------------------------------------------------------------------------------- entry point
def register(force: Optional[str] = None, apply_now: bool = False) -> Optional[str]:
    """The `sglang.srt.plugins` entry point. Returns the driver installed ("A", "B") or None."""
    from softthink.sglang_glue import cpu

    if cpu.cpu_selected():  # both drivers: CPU ranks need their GPU-only communicators off before TP groups exist
        cpu.register_cpu_hooks()
    driver = (force or "").upper() or selected_driver()
    if driver is None or _STATE["registered"] is not None:
        return _STATE["registered"]
    classes = _deliver_models()
    from sglang.srt.plugins.hook_registry import HookRegistry, HookType

    if driver == "B":
        HookRegistry.register(SAMPLE_TARGET, soft_sample, HookType.AROUND)
        HookRegistry.register(REQ_INIT_TARGET, on_req_init, HookType.AFTER)
    else:
        HookRegistry.register(REQ_INIT_TARGET, on_req_init_a, HookType.AFTER)
    if apply_now:
        HookRegistry.apply_hooks()
    _STATE["registered"] = driver
    logger.info("softthink plugin: driver %s (pid %d)%s", driver, os.getpid(),
                f", classes {[c.__name__ for c in classes]}" if classes else "")
    return driver


def registered() -> Optional[str]:
    return _STATE["registered"]


__all__ = ["register", "register_models", "soft_sample", "on_req_init", "on_req_init_a", "selected_driver",
           "registered"]
if "pytest" in sys.modules:  # tests reset between cases
    __all__.append("_STATE")
