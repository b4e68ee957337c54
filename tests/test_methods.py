"""Each method's defining property (docs/design/algorithm.md §9, §10.17) on the tiny models, through the engine."""
from __future__ import annotations

import pytest
import torch

from softthink import core
from softthink.chat import render_chat
from softthink.config import GenerationConfig
from softthink.engine import HFEngine

QUESTIONS = ["What is 2+3?", "Name a prime number larger than ten.", "Compute 17 * 4 step by step."]


def gen(model_tok, cfg: dict, n=3, **kw):
    model, tok = model_tok
    eng = HFEngine(model, tok, progress=False)
    base = {"max_new_tokens": 24, "seed": 5, "trace": True}
    base.update(cfg)
    return eng.generate([render_chat(tok, q) for q in QUESTIONS[:n]], GenerationConfig.from_dict(base), **kw)


def test_gumbel_tau_to_zero_follows_the_argmax_path_of_its_samples(tiny64):
    """tau_g -> 0: the input is one-hot on the Gumbel-max sample, i.e. a discrete sample from the concept weights."""
    gens = gen(tiny64, {"noise": {"kind": "gumbel", "gumbel_tau": 1e-4}, "think": {"max_topk": 5}})
    for g in gens:
        for ph, w, i, t in zip(g.trace.phase, g.trace.topk_weights, g.trace.topk_ids, g.trace.token):
            if ph == "think":
                assert w[0] > 0.999 and i[0] == t  # input = E[visible token]
    greedy = gen(tiny64, {"noise": {"kind": "gumbel", "gumbel_tau": 1e-4}, "think": {"max_topk": 1}})
    argmax = gen(tiny64, {"method": "cot_greedy"})
    assert [g.token_ids for g in greedy] == [g.token_ids for g in argmax]  # K = 1: Gumbel-max of one entry = argmax


def test_gumbel_makes_samples_differ_and_is_seeded(tiny_llama):
    cfg = {"noise": {"kind": "gumbel", "gumbel_tau": 0.5}, "think": {"max_topk": 8, "top_k": 50, "top_p": 1.0,
                                                                   "temperature": 1.0}}
    a, b = gen(tiny_llama, cfg, n=1, sample_uids=[0]), gen(tiny_llama, cfg, n=1, sample_uids=[1])
    assert a[0].token_ids != b[0].token_ids  # different samples of the same prompt differ (pass@k)
    assert gen(tiny_llama, cfg, n=1, sample_uids=[0])[0].token_ids == a[0].token_ids


def test_moi_beta_infinite_equals_ordinary_sampling(tiny64):
    common = {"think": {"temperature": 0.9, "top_k": 30, "top_p": 0.95, "min_p": 0.0, "filter_order": "joint"}}
    moi = gen(tiny64, {**common, "method": "moi", "moi": {"beta": 1e9}})
    cot = gen(tiny64, {**common, "method": "cot_sample"})
    assert [g.token_ids for g in moi] == [g.token_ids for g in cot]
    for g in moi:
        assert all(w[0] > 1 - 1e-8 for w in g.trace.topk_weights)


def test_moi_weights_follow_eq5(tiny_qwen):
    beta, km = 1.0, 6
    g = gen(tiny_qwen, {"method": "moi", "moi": {"beta": beta, "top_k": km}}, n=1)[0]
    for w, ids, t in zip(g.trace.topk_weights, g.trace.topk_ids, g.trace.token):
        assert ids[0] == t and abs(sum(w) - 1) < 1e-5
        assert w[0] >= beta / (beta + 1) - 1e-6  # the sampled token keeps at least beta / (beta + 1)
        assert sum(x > 0 for x in w[1:]) <= km


def test_average_embedding_feeds_uniform_weights(tiny_llama):
    for g in gen(tiny_llama, {"method": "avg_embedding", "avg_embedding": {"k": 5}, "think": {"top_k": 30}}):
        for ph, w in zip(g.trace.phase, g.trace.topk_weights):
            nz = [x for x in w if x > 0]
            if ph == "think" and len(nz) > 1:
                assert len(nz) <= 5 and max(nz) - min(nz) < 1e-6 and abs(nz[0] - 1 / len(nz)) < 1e-6


def test_coconut_feeds_the_hidden_state_exactly(tiny_qwen):
    model, tok = tiny_qwen
    eng = HFEngine(model, tok, progress=False)
    fed, produced = [], []
    base = model.get_decoder()
    h1 = base.register_forward_pre_hook(lambda m, a, kw: fed.append(kw.get("inputs_embeds")), with_kwargs=True)
    h2 = base.register_forward_hook(lambda m, a, kw, out: produced.append(out.last_hidden_state[:, -1]),
                                    with_kwargs=True)
    try:
        g = eng.generate([render_chat(tok, "Hi")], GenerationConfig.from_dict(
            {"method": "coconut_tf", "max_new_tokens": 8, "trace": True}))[0]
    finally:
        h1.remove()
        h2.remove()
    thinking_inputs = [t for t, ph in enumerate(g.trace.phase[:-1]) if ph == "think" and g.trace.phase[t + 1] == "think"]
    assert thinking_inputs
    for t in thinking_inputs:  # the input of step t+2 is the final hidden state of step t+1's forward
        assert torch.equal(fed[t + 1][:, 0], produced[t])


def test_thinkrouter_limits(tiny64):
    soft = gen(tiny64, {"method": "soft", "think": {"max_topk": 5}})
    r0 = gen(tiny64, {"method": "thinkrouter", "thinkrouter": {"threshold": 0.0}, "think": {"max_topk": 5}})
    assert [g.token_ids for g in r0] == [g.token_ids for g in soft]
    cot = gen(tiny64, {"method": "cot_sample", "think": {"filter_order": "sequential"}})
    r2 = gen(tiny64, {"method": "thinkrouter", "thinkrouter": {"threshold": 1.5}, "think": {"max_topk": 5},
                      "answer": {"temperature": 0.6, "top_k": 30, "top_p": 0.95, "min_p": 0.001}})
    for a, b in zip(r2, cot):  # THINK phase identical to discrete sampling
        n = min(a.num_thinking_tokens, b.num_thinking_tokens)
        assert a.token_ids[:n] == b.token_ids[:n]
        assert all(w[0] == 1.0 for w in a.trace.topk_weights)


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_swireasoning_never_exceeds_its_switch_cap(tiny_llama, cap):
    gens = gen(tiny_llama, {"method": "swir", "swir": {"max_switches": cap, "window": 2, "answer_tokens": 4},
                            "max_new_tokens": 60})
    model, tok = tiny_llama
    prm = core.Params.from_config(GenerationConfig.from_dict({"method": "swir"}), 1, [1])
    assert prm.entropy_raw.item()
    for g in gens:
        # count latent -> explicit switches from the entropy trace with the published rule
        h = g.trace.entropy
        m = len(tok.encode("</think>", add_special_tokens=False))
        last = g.think_end_step - m if g.think_end_reason == "switch_cap" else len(h) - 1  # forced steps do not count
        latent, ref, block, switches = True, h[0], 0, 0
        for t in range(1, last + 1):
            if g.trace.phase[t] != "think":
                break
            if latent and h[t] < ref:
                latent, ref, block, switches = False, h[t], 0, switches + 1
            elif not latent and h[t] > ref and block >= 2:
                latent, ref, block = True, h[t], 0
            else:
                block += 1
        assert switches <= cap
        if g.think_end_reason == "switch_cap":
            assert switches == cap and g.num_answer_tokens <= 4


def test_swireasoning_latent_input_is_the_full_distribution(tiny_llama):
    model, tok = tiny_llama
    eng = HFEngine(model, tok, progress=False)
    fed = []
    hook = model.get_decoder().register_forward_pre_hook(lambda m, a, kw: fed.append(kw["inputs_embeds"]),
                                                         with_kwargs=True)
    try:
        g = eng.generate([render_chat(tok, "Hi")], GenerationConfig.from_dict(
            {"method": "swir", "max_new_tokens": 3, "trace": True, "swir": {"window": 100}}))[0]
    finally:
        hook.remove()
    emb = model.get_input_embeddings().weight
    ids = torch.tensor([tok(render_chat(tok, "Hi"), add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        z = model(ids).logits[0, -1].float()
    p = torch.softmax(z, -1)
    nl = tok.encode("\n", add_special_tokens=False)[-1]
    expected = (0.9 * p).scatter_add(0, torch.tensor([nl]), torch.tensor([0.1])) @ emb  # step 0: 0.9 e~ + 0.1 E["\n"]
    assert torch.allclose(fed[1][0, 0], expected, atol=1e-5)
