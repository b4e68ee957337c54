"""The transformers engine on every architecture family (tiny seeded checkpoints of `softthink.tiny_models`).

For each family: the weights are reproducible, the engine's `inputs_embeds` path equals the model's own token path
(greedy decoding equals `model.generate`, and soft thinking with one-hot concepts equals greedy decoding, which
fails if a concept is scaled differently from a token embedding, e.g. Gemma's sqrt(hidden) normaliser), and soft
thinking with a real mixture differs from greedy decoding.
"""
from __future__ import annotations

import pytest
import torch

from softthink.chat import encode_prompt, render_chat
from softthink.config import GenerationConfig
from softthink.engine import HFEngine
from softthink.models import load_model
from softthink.tiny_models import ALIASES, FAMILIES

QUESTIONS = ["What is 2+3?", "Count to five."]


def _cfg(**kw) -> GenerationConfig:
    return GenerationConfig.from_dict(dict({"max_new_tokens": 16, "seed": 3}, **kw))


@pytest.fixture(scope="module", params=ALIASES)
def family(request):
    model, tok = load_model(request.param)
    return request.param, model, tok


def test_family_list():
    assert set(FAMILIES) >= {"qwen3", "mistral", "gemma2", "gemma3", "phi3", "qwen3moe", "deepseekv2", "deepseekv3"}


def test_weights_are_seeded(family):
    name, model, _ = family
    again, _ = load_model(name)
    for (k, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(again.state_dict().items())):
        assert torch.equal(a, b), k


def test_engine_token_path_equals_the_models_own(family):
    name, model, tok = family
    eng = HFEngine(model, tok, progress=False)
    ps = [render_chat(tok, q) for q in QUESTIONS]
    greedy = eng.generate(ps, _cfg(method="cot_greedy"))
    one_hot = eng.generate(ps, _cfg(method="soft", think={"max_topk": 1}, answer={"mode": "greedy_argmax"}))
    soft = eng.generate(ps, _cfg(method="soft"))
    for g, o, p in zip(greedy, one_hot, ps):
        ids = torch.tensor([encode_prompt(tok, p)])
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False)
        assert g.token_ids == ref[0, ids.shape[1]:].tolist()[: len(g.token_ids)], name
        assert o.token_ids == g.token_ids, name  # a one-hot concept is exactly the token's embedding
    assert any(s.token_ids != g.token_ids for s, g in zip(soft, greedy)), f"{name}: soft == greedy"


def test_gemma_scales_concepts_like_tokens():
    """Gemma 3 scales inside its embedding module: the engine's concept rows come from that module."""
    model, tok = load_model("tiny-random-gemma3")
    eng = HFEngine(model, tok, progress=False)
    emb = model.get_input_embeddings()
    ids = torch.tensor([[5, 7]])
    rows = eng.embed_module(ids)
    assert torch.allclose(rows, emb.weight[ids] * model.config.hidden_size ** 0.5, rtol=1e-6)
