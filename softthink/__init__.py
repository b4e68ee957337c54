"""softthink: Soft Thinking (arXiv 2505.15778) on transformers and SGLang, graded and tabulated like the paper.

    model, tok = softthink.load_model("smollm2-135m")
    engine = softthink.HFEngine(model, tok)
    gens = engine.generate([softthink.render_chat(tok, "What is 12 * 3?")], softthink.GenerationConfig())

Names resolve lazily, so `import softthink.grading` (graders, sandbox workers) never imports torch.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "softthink.config",
    "GenerationConfig": "softthink.config",
    "Generation": "softthink.engine",
    "HFEngine": "softthink.engine",
    "Trace": "softthink.engine",
    "load_model": "softthink.models",
    "render_chat": "softthink.chat",
    "load_dataset": "softthink.data",
    "grade": "softthink.grading",
    "Grade": "softthink.grading",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'softthink' has no attribute {name!r}")


__all__ = [*_EXPORTS, "__version__"]
