"""Shared fixtures: the bundled models, loaded once per test session."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

_CACHE: dict = {}


def model_and_tokenizer(spec: str, dtype=torch.float32):
    key = (spec, dtype)
    if key not in _CACHE:
        from softthink.models import load_model

        _CACHE[key] = load_model(spec, dtype=dtype)
    return _CACHE[key]


@pytest.fixture(scope="session")
def tiny_llama():
    return model_and_tokenizer("tiny-random-llama")


@pytest.fixture(scope="session")
def tiny_qwen():
    return model_and_tokenizer("tiny-random-qwen2")


@pytest.fixture(scope="session", params=["tiny-random-llama", "tiny-random-qwen2"])
def tiny64(request):
    """Both tiny models in float64 (exact batch invariance, docs/design/algorithm.md §10.11)."""
    return model_and_tokenizer(request.param, torch.float64)


@pytest.fixture(scope="session")
def smollm2():
    return model_and_tokenizer("smollm2-135m")
