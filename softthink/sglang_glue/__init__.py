"""SGLang plugin for Soft Thinking (docs/design/sglang-plugin.md).

Layout (none of these import SGLang at import time except `processor` with a fallback base class and the
`models` factory, which imports SGLang only when the classes are built):

* `tables`    - per-request GPU state tables indexed by `req_pool_idx`, the extend reset (row hand-off) and the
                concept mixing that runs inside the decode CUDA graph (pure torch);
* `driver`    - the driver step on a batch of logits rows (pure torch; calls `softthink.core`);
* `processor` - Driver A, a `CustomLogitProcessor`;
* `plugin`    - `register()` for the `sglang.srt.plugins` entry point (model shadowing + Driver B hook);
* `models`    - a same-named soft subclass of every SGLang model class, feeding concepts through the model's own
                input-embedding module (`SGLANG_EXTERNAL_MODEL_PACKAGE=softthink.sglang_glue.models`);
* `launch`    - `SGLangEngine`, offline/server launch, refusals, CLI commands.
"""
from __future__ import annotations

SUPPORTED_SGLANG = "0.5.23"
#: versions with the mechanisms the drivers need (docs/design/sglang-plugin.md §1)
DRIVER_A_RANGE = ("0.5.10", "0.5.23")
DRIVER_B_RANGE = ("0.5.16", "0.5.23")
#: the paper's architectures; every other SGLang decoder runs through the same mechanism or is refused at load
#: (softthink.sglang_glue.models; the support table by architecture is in docs/sglang.md)
PAPER_ARCHITECTURES = ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM")
EXTERNAL_MODEL_PACKAGE = "softthink.sglang_glue.models"

__all__ = [
    "SUPPORTED_SGLANG",
    "DRIVER_A_RANGE",
    "DRIVER_B_RANGE",
    "PAPER_ARCHITECTURES",
    "EXTERNAL_MODEL_PACKAGE",
]
