"""Entry point `sglang.srt.plugins: softthink = softthink.sglang_glue.plugin:register` (SGLANG.md §7, §10).

SGLang (>= 0.5.16) runs `register()` at the top of every scheduler, the DP controller, the detokenizer and the main
process, then `HookRegistry.apply_hooks()`. Being installed must not change anybody's SGLang, so `register()` is a
no-op unless selected:

* `SOFTTHINK_SGLANG_DRIVER=A` - shadow the Qwen2/Qwen3/Llama classes only (Driver A, the custom logit processor,
  does the rest; equivalent to `SGLANG_EXTERNAL_MODEL_PACKAGE=softthink.sglang_glue.models`);
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


def register_models() -> list:
    """Shadow the supported architectures in this process's `ModelRegistry`."""
    from sglang.srt.models.registry import ModelRegistry

    from softthink.sglang_glue.models import soft_classes

    classes = soft_classes()
    for cls in classes:
        ModelRegistry.models[cls.__name__] = cls
    return classes


# ---------------------------------------------------------------------------------------------- Driver B hooks
def on_req_init(result, req, *args, **kwargs):
    """AFTER `Req.__init__`: remember soft requests by rid; keep them out of the radix cache unless shared."""
    from softthink.sglang_glue.driver import RequestSpec

    params = getattr(getattr(req, "sampling_params", None), "custom_params", None)
    try:
        spec = RequestSpec.from_params(params) if isinstance(params, dict) else None
    except Exception:  # a malformed request must not kill the scheduler; the driver skips it
        logger.exception("softthink: bad soft-thinking parameters in request %s", getattr(req, "rid", "?"))
        spec = None
    if spec is not None:
        _REQS[req.rid] = weakref.ref(req)
        if spec.cfg.engine.prefix_cache_for_soft != "share":
            req.skip_radix_cache_insert = True
    return result


def _lookup(rid):
    ref = _REQS.get(rid)
    req = ref() if ref is not None else None
    if req is None:
        _REQS.pop(rid, None)
    return req


def soft_sample(original, runner, logits_output, forward_batch, *args, **kwargs):
    """AROUND `ModelRunner.sample`: the driver step on the logits (before the sampler softmaxes them in place),
    the native sampler, then the forced tokens replace the sampled ones on the driver's rows."""
    import torch

    from softthink.sglang_glue import driver as D
    from softthink.sglang_glue.processor import start_think
    from softthink.sglang_glue.tables import get_tables

    mode = forward_batch.forward_mode
    rids = getattr(forward_batch, "rids", None)
    tables = get_tables(required=False)
    if tables is None or rids is None or not (mode.is_decode() or mode.is_extend()):
        return original(runner, logits_output, forward_batch, *args, **kwargs)
    logits = logits_output.next_token_logits
    n = logits.shape[0]
    specs, starts = [], []
    for rid in rids[:n]:
        req = _lookup(rid)
        params = getattr(getattr(req, "sampling_params", None), "custom_params", None) if req is not None else None
        spec = D.RequestSpec.from_params(params) if isinstance(params, dict) else None
        specs.append(spec)
        starts.append(start_think(params, req, spec) if spec is not None else True)
    if all(s is None for s in specs):
        return original(runner, logits_output, forward_batch, *args, **kwargs)
    rows = forward_batch.req_pool_indices[:n]
    out = D.driver_step(tables, logits, rows, specs, starts)
    ids = original(runner, logits_output, forward_batch, *args, **kwargs)
    ids = torch.where(out.force, out.token.to(ids.dtype), ids)
    if out.step is not None:  # per-step concept records, one element per row (-> req.customized_info)
        logits_output.customized_info = {
            "st_ids": out.step.in_ids, "st_w": out.step.in_w, "st_H": out.step.entropy,
        }
    return ids


# ---------------------------------------------------------------------------------------------- entry point
def register(force: Optional[str] = None, apply_now: bool = False) -> Optional[str]:
    """The `sglang.srt.plugins` entry point. Returns the driver installed ("A", "B") or None."""
    driver = (force or "").upper() or selected_driver()
    if driver is None or _STATE["registered"] is not None:
        return _STATE["registered"]
    classes = register_models()
    if driver == "B":
        from sglang.srt.plugins.hook_registry import HookRegistry, HookType

        HookRegistry.register(SAMPLE_TARGET, soft_sample, HookType.AROUND)
        HookRegistry.register(REQ_INIT_TARGET, on_req_init, HookType.AFTER)
        if apply_now:
            HookRegistry.apply_hooks()
    _STATE["registered"] = driver
    logger.info("softthink plugin: driver %s, classes %s (pid %d)", driver, [c.__name__ for c in classes],
                os.getpid())
    return driver


def registered() -> Optional[str]:
    return _STATE["registered"]


__all__ = ["register", "register_models", "soft_sample", "on_req_init", "selected_driver", "registered"]
if "pytest" in sys.modules:  # tests reset between cases
    __all__.append("_STATE")
