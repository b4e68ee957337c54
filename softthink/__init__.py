"""softthink: Soft Thinking (arXiv 2505.15778) on transformers and SGLang, graded and tabulated like the paper.

    model, tok = softthink.load_model("smollm2-135m")
    engine = softthink.HFEngine(model, tok)
    gens = engine.generate([softthink.render_chat(tok, "What is 12 * 3?")], softthink.GenerationConfig())
"""
from __future__ import annotations

__version__ = "0.1.0"

from softthink.chat import render_chat
from softthink.config import ConfigError, GenerationConfig
from softthink.engine import Generation, HFEngine, Trace
from softthink.models import load_model


def load_dataset(name: str, **kwargs):
    """See softthink.data.load_dataset."""
    from softthink.data import load_dataset as _load

    return _load(name, **kwargs)


def grade(dataset: str, item, completion: str, **kwargs):
    """See softthink.grading.grade."""
    from softthink.grading import grade as _grade

    return _grade(dataset, item, completion, **kwargs)


__all__ = ["ConfigError", "Generation", "GenerationConfig", "HFEngine", "Trace", "grade", "load_dataset",
           "load_model", "render_chat", "__version__"]
