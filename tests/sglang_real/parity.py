"""Shared pieces of the real-SGLang parity tests: prompts, configurations, the transformers-engine reference and
the token-for-token comparison (with the logit gap at a divergence, so a near-tie shows as one)."""
from __future__ import annotations

import functools
import json

import torch

MODEL = "smollm2-135m"
QUESTIONS = [
    "What is 2+3?",
    "Name a prime number larger than 10.",
    "What is the capital of France?",
    "Count to five.",
]
LONG_QUESTION = ("Read the following list and say which animal is the largest. " +
                 " ".join(f"Item {i}: a {a}." for i, a in enumerate(
                     ["cat", "dog", "horse", "mouse", "elephant", "ant", "whale", "sparrow", "lion", "bee"] * 3)))

N = 32  # new tokens per request: enough for phase switches, Cold Stop and answer-phase sampling
#: every method the SGLang driver runs, with settings that make each mechanism fire within N tokens
CONFIGS = {
    "soft": {"method": "soft", "max_new_tokens": N},
    "soft_published": {"method": "soft", "preset": "as_published", "max_new_tokens": N, "think": {"budget": 14}},
    "soft_budget": {"method": "soft", "max_new_tokens": N, "think": {"budget": 12}},
    "soft_cold_stop": {"method": "soft", "max_new_tokens": N, "cold_stop": {"threshold": 0.5, "length": 2}},
    "soft_gumbel": {"method": "soft", "max_new_tokens": N, "think": {"budget": 16},
                    "noise": {"kind": "gumbel", "rng": "counter"}},
    "soft_dirichlet": {"method": "soft", "max_new_tokens": N, "think": {"budget": 16},
                       "noise": {"kind": "dirichlet", "rng": "counter"}},
    "avg_embedding": {"method": "avg_embedding", "max_new_tokens": N, "think": {"budget": 12}},
    "thinkrouter": {"method": "thinkrouter", "max_new_tokens": N, "think": {"budget": 12}},
    "moi": {"method": "moi", "max_new_tokens": N, "think": {"budget": 12}},
    "cot_greedy": {"method": "cot_greedy", "max_new_tokens": N},
    "cot_greedy_budget": {"method": "cot_greedy", "max_new_tokens": N, "think": {"budget": 10}},
    "cot_sample_budget": {"method": "cot_sample", "max_new_tokens": N, "think": {"budget": 10}},
}


@functools.lru_cache(maxsize=1)
def hf():
    from softthink.engine import HFEngine
    from softthink.models import load_model

    model, tok = load_model(MODEL)
    return HFEngine(model, tok)


def prompts(questions=QUESTIONS):
    from softthink.chat import render_chat

    return [render_chat(hf().tokenizer, q) for q in questions]


def items(config_name: str, questions=QUESTIONS, uid0: int = 0) -> list:
    return [{"prompt": p, "config": CONFIGS[config_name], "uid": uid0 + i} for i, p in enumerate(prompts(questions))]


def reference(items_: list) -> list:
    """The transformers engine on the same items, each request alone (the oracle of docs/design/sglang-plugin.md §13)."""
    return [_reference_cached(json.dumps(it, sort_keys=True)) for it in items_]


@functools.lru_cache(maxsize=None)
def _reference_cached(item_json: str):
    it = json.loads(item_json)
    return hf().generate([it["prompt"]], it["config"], sample_uids=[it["uid"]], progress=False)[0]


def logit_gap(prompt: str, ids: list, step: int) -> float:
    """Top-2 logit margin of the plain (hard-token) forward after `ids[:step]`: a small gap marks a near-tie."""
    eng = hf()
    from softthink.chat import encode_prompt

    x = torch.tensor([encode_prompt(eng.tokenizer, prompt) + list(ids[:step])])
    with torch.no_grad():
        z = eng.model(x).logits[0, -1].float()
    top = torch.topk(z, 2).values
    return float(top[0] - top[1])


def assert_same(items_: list, got: list, label: str) -> int:
    """Token-for-token equality with the reference; returns the number of rows compared."""
    ref = reference(items_)
    assert len(got) == len(ref), f"{label}: {len(got)} outputs for {len(ref)} requests"
    problems = []
    for i, (it, r, g) in enumerate(zip(items_, ref, got)):
        if r.token_ids != g["token_ids"]:
            k = next((j for j, (a, b) in enumerate(zip(r.token_ids, g["token_ids"])) if a != b),
                     min(len(r.token_ids), len(g["token_ids"])))
            gap = logit_gap(it["prompt"], r.token_ids, k)
            problems.append(f"row {i}: first divergence at step {k + 1} (hf {r.token_ids[k:k + 3]} vs sglang "
                            f"{g['token_ids'][k:k + 3]}; top-2 logit gap of the hard prefix {gap:.2e})")
        elif (r.finish_reason, r.think_end_step) != (g["finish_reason"], g["think_end_step"]):
            problems.append(f"row {i}: finish {r.finish_reason}/{g['finish_reason']}, think end step "
                            f"{r.think_end_step}/{g['think_end_step']}")
    assert not problems, f"{label}: " + "; ".join(problems)
    return len(ref)
