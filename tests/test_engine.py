"""The transformers engine against docs/design/algorithm.md §10 on real forward passes (tiny models and smollm2-135m)."""
from __future__ import annotations

import json

import pytest
import torch

from softthink import core
from softthink.chat import encode_prompt, render_chat
from softthink.config import ConfigError, GenerationConfig
from softthink.engine import HFEngine, marker_ids

QUESTIONS = ["What is 2+3?", "Name a prime number larger than ten and explain why it is prime.", "Hi",
             "Compute 17 * 4 step by step, please, carefully."]


def prompts(tok, n=4):
    return [render_chat(tok, q) for q in QUESTIONS[:n]]


def cfg(**kw) -> GenerationConfig:
    base = {"max_new_tokens": 24, "seed": 3}
    base.update(kw)
    return GenerationConfig.from_dict(base)


def soft_k1():
    return cfg(method="soft", think={"max_topk": 1}, answer={"mode": "greedy_argmax"})


def test_k1_equals_greedy_tiny(tiny_llama, tiny_qwen):
    for model, tok in (tiny_llama, tiny_qwen):
        eng = HFEngine(model, tok, progress=False)
        ps = prompts(tok)
        soft = eng.generate(ps, soft_k1().replace(trace=True))
        greedy = eng.generate(ps, cfg(method="cot_greedy"))
        for s, g, p in zip(soft, greedy, ps):
            assert s.token_ids == g.token_ids
            ids = torch.tensor([encode_prompt(tok, p)])
            ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)
            assert g.token_ids == ref[0, ids.shape[1]:].tolist()[: len(g.token_ids)]
            # every soft input was the one-hot embedding of the recorded token
            assert all(w[0] == 1.0 and i[0] == t for w, i, t in zip(s.trace.topk_weights, s.trace.topk_ids,
                                                                      s.trace.token))


@pytest.mark.slow
def test_k1_equals_greedy_smollm2(smollm2):
    model, tok = smollm2
    eng = HFEngine(model, tok, progress=False)
    ps = prompts(tok, 2)
    soft = eng.generate(ps, soft_k1().replace(max_new_tokens=20))
    greedy = eng.generate(ps, cfg(method="cot_greedy", max_new_tokens=20))
    for s, g, p in zip(soft, greedy, ps):
        ids = torch.tensor([encode_prompt(tok, p)])
        ref = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
        assert s.token_ids == g.token_ids == ref[0, ids.shape[1]:].tolist()[: len(g.token_ids)]


def test_batch_equals_rows_alone_float64(tiny64):
    model, tok = tiny64
    eng = HFEngine(model, tok, progress=False)
    ps = prompts(tok)  # different lengths: left padding
    c = cfg(think={"max_topk": 5}, trace=True, cold_stop={"threshold": 0.5, "length": 3}, max_new_tokens=30)
    batch = eng.generate(ps, c)
    for i, p in enumerate(ps):
        alone = eng.generate([p], c, sample_uids=[i])[0]
        assert alone.token_ids == batch[i].token_ids
        assert alone.trace.topk_ids == batch[i].trace.topk_ids
        assert alone.finish_reason == batch[i].finish_reason


def test_batch_equals_rows_alone_with_noise_float64(tiny64):
    model, tok = tiny64
    eng = HFEngine(model, tok, progress=False)
    ps = prompts(tok, 3)
    for noise in ({"kind": "gumbel", "gumbel_tau": 0.5}, {"kind": "dirichlet", "dirichlet_alpha": 2.0}):
        c = cfg(think={"max_topk": 5}, noise=noise, answer={"temperature": 1.0})
        batch = eng.generate(ps, c)
        for i, p in enumerate(ps):
            assert eng.generate([p], c, sample_uids=[i])[0].token_ids == batch[i].token_ids


@pytest.mark.slow
def test_batch_equals_rows_alone_fp32_greedy_smollm2(smollm2):
    model, tok = smollm2
    eng = HFEngine(model, tok, progress=False)
    ps = prompts(tok, 3)
    c = cfg(method="cot_greedy", max_new_tokens=12)
    batch = eng.generate(ps, c)
    for i, p in enumerate(ps):
        assert eng.generate([p], c)[0].token_ids == batch[i].token_ids


def test_cached_decoding_equals_recomputation(tiny64):
    """Soft thinking with K > 1: re-running the whole sequence of fed inputs without a cache gives the same steps."""
    model, tok = tiny64
    eng = HFEngine(model, tok, progress=False)
    p = prompts(tok, 1)[0]
    c = cfg(think={"max_topk": 4, "top_k": 20}, answer={"mode": "greedy_argmax"}, trace=True, max_new_tokens=20)
    g = eng.generate([p], c)[0]
    ids = torch.tensor(encode_prompt(tok, p))
    emb = model.get_input_embeddings().weight
    fed = [emb[ids]]
    for i, w in zip(g.trace.topk_ids[:-1], g.trace.topk_weights[:-1]):
        fed.append(core.mix_embeddings(emb, torch.tensor([i]), torch.tensor([w], dtype=emb.dtype)))
    seq = torch.cat(fed)[None]
    with torch.no_grad():
        logits = model(inputs_embeds=seq, use_cache=False).logits[0, ids.numel() - 1:].double()
    assert logits.shape[0] == len(g.token_ids)
    assert logits.argmax(-1).tolist() == g.token_ids
    # the concepts recomputed from scratch match the recorded ones
    prm = core.Params.from_config(c, logits.shape[0], marker_ids(tok, c.think.end_str))
    vals, idx = core.sorted_probs(logits, prm.temperature, 20)
    keep = core.filter_sorted(vals, prm.top_k, prm.top_p, prm.min_p, prm.sequential)
    w, cid = core.truncate(vals, idx, keep, prm.max_topk, 4)
    for t, phase in enumerate(g.trace.phase):
        if phase == "think" and g.trace.topk_weights[t][1] > 0:
            assert cid[t].tolist() == g.trace.topk_ids[t]
            assert torch.allclose(w[t].float(), torch.tensor(g.trace.topk_weights[t]), atol=1e-6)


@pytest.mark.slow
def test_cold_stop_on_a_real_model(smollm2):
    """Pick tau from a free run so that a run of L low-entropy steps exists; Cold Stop must fire exactly at its end."""
    model, tok = smollm2
    eng = HFEngine(model, tok, progress=False)
    L = 3
    free = eng.generate(prompts(tok, 1), cfg(trace=True, max_new_tokens=40))[0].trace
    room = len(free.entropy) - L - len(marker_ids(tok, "</think>")) - 1  # leave room to finish the marker
    window_max = [max(free.entropy[j: j + L]) for j in range(room)]
    first = min(range(len(window_max)), key=lambda j: (window_max[j], j))
    tau = window_max[first] * 1.0001 + 1e-9
    low = [h < tau for h in free.entropy]
    s = next(j + L - 1 for j in range(len(low) - L + 1) if all(low[j: j + L]))  # end of the first run of L lows
    g = eng.generate(prompts(tok, 1), cfg(trace=True, cold_stop={"threshold": tau, "length": L},
                                          max_new_tokens=40))[0]
    tr = g.trace
    assert tr.token[:s] == free.token[:s]  # nothing before the trigger is touched
    assert g.think_end_reason == "cold_stop" and tr.cold_stop.index(True) == s and tr.cold_stop.count(True) == 1
    marker = marker_ids(tok, "</think>")
    n = min(len(marker), len(g.token_ids) - s)
    assert g.token_ids[s: s + n] == marker[:n]  # the forced marker replaces the token, then the answer
    if len(g.token_ids) >= s + len(marker):
        assert g.think_end_step == s + len(marker) and g.num_thinking_tokens == s + len(marker)
        assert all(ph == "answer" for ph in tr.phase[s + len(marker):])


def test_think_end_only_when_argmax(tiny_qwen):
    model, tok = tiny_qwen
    eng = HFEngine(model, tok, progress=False)
    theta = marker_ids(tok, "</think>")
    assert len(theta) == 1
    gens = eng.generate(prompts(tok), cfg(trace=True, think={"max_topk": 10, "top_k": 50}, max_new_tokens=40))
    seen_lower = 0
    for g in gens:
        for t, (ids, ph) in enumerate(zip(g.trace.topk_ids, g.trace.phase)):
            if ph != "think":
                break
            if theta[0] in ids[1:] and g.trace.topk_weights[t][ids.index(theta[0])] > 0:
                seen_lower += 1
                assert g.trace.token[t] != theta[0] and g.trace.phase[t + 1] == "think" if t + 1 < len(g.trace.phase) else True
            if g.trace.token[t] == theta[0]:
                assert g.think_end_step == t + 1 and g.think_end_reason == "marker"
    assert seen_lower > 0  # the situation the test is about did occur


def test_same_seed_same_output(tiny_llama):
    model, tok = tiny_llama
    eng = HFEngine(model, tok, progress=False)
    ps = prompts(tok, 2)
    c = cfg(method="cot_sample", think={"temperature": 1.0, "top_k": -1, "top_p": 1.0})
    a, b = eng.generate(ps, c), eng.generate(ps, c)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    other = eng.generate(ps, c.replace(seed=99))
    assert [g.token_ids for g in other] != [g.token_ids for g in a]
    noisy = cfg(noise={"kind": "gumbel"}, think={"max_topk": 5})
    assert eng.generate(ps, noisy)[0].token_ids == eng.generate(ps, noisy)[0].token_ids


def test_generation_record_and_limits(tiny_llama):
    model, tok = tiny_llama
    eng = HFEngine(model, tok, progress=False)
    for c in (cfg(max_new_tokens=17), cfg(method="cot_sample", max_new_tokens=17, think={"budget": 5})):
        for g in eng.generate(prompts(tok), c):
            assert g.num_tokens <= 17 and g.num_tokens == len(g.token_ids)
            assert g.num_thinking_tokens + g.num_answer_tokens == g.num_tokens
            assert g.finish_reason in ("eos", "stop", "length", "abort")
            if g.finish_reason == "eos":
                assert g.token_ids[-1] in (tok.eos_token_id,)
            if c.think.budget:
                m = len(marker_ids(tok, "</think>"))
                assert g.num_thinking_tokens <= 5 + m - 1
                if g.num_tokens >= 5 + m - 1 and g.think_end_reason == "budget":
                    assert g.think_end_step == 5 + m - 1
            json.dumps(g.to_dict())


def test_stop_strings(tiny_llama):
    model, tok = tiny_llama
    eng = HFEngine(model, tok, progress=False)
    free = eng.generate(prompts(tok, 1), cfg(method="cot_greedy", max_new_tokens=30))[0]
    stop = tok.decode(free.token_ids[10:12])
    g = eng.generate(prompts(tok, 1), cfg(method="cot_greedy", max_new_tokens=30, stop=[stop]))[0]
    assert g.finish_reason == "stop" and g.num_tokens <= 12 and stop not in g.text


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"think\.top_p.*allowed \(0\.0, 1\.0\]"):
        GenerationConfig.from_dict({"think": {"top_p": 1.5}})
    with pytest.raises(ConfigError, match="think.max_topk"):
        GenerationConfig.from_dict({"think.max_topk": 0})
    with pytest.raises(ConfigError, match=r"unknown key 'cold_stop\.treshold'.*did you mean 'cold_stop\.threshold'"):
        GenerationConfig.from_dict({"cold_stop": {"treshold": 0.1}})
    with pytest.raises(ConfigError, match="YAML 1.1"):
        GenerationConfig.from_dict({"cold_stop": {"threshold": "1e-3"}})
    with pytest.raises(ConfigError, match="cold_stop.length"):
        GenerationConfig.from_dict({"cold_stop": {"length": -2}})
    with pytest.raises(ConfigError, match="method"):
        GenerationConfig.from_dict({"method": "magic"})


def test_cli_validates_before_loading(tmp_path, monkeypatch, capsys):
    from softthink import cli, models

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: tiny-random-llama\nprompts: [hi]\ngeneration:\n  cold_stop:\n    threshold: 1e-3\n")
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("model loaded before validation"))
    assert cli.main(["generate", "--config", str(bad)]) == 2  # one line, no traceback (tests/test_cli.py)
    assert "cold_stop.threshold" in capsys.readouterr().err


def test_cli_generate_writes_jsonl(tmp_path):
    from softthink import cli

    good = tmp_path / "good.yaml"
    good.write_text("model: tiny-random-qwen2\nprompts: ['What is 1+1?', 'Hi']\ngeneration:\n  max_new_tokens: 12\n")
    out = tmp_path / "out.jsonl"
    assert cli.main(["generate", "--config", str(good), "--set", "generation.think.max_topk=3", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["index"] for r in rows) == [0, 1]
    assert all(r["num_tokens"] <= 12 and r["finish_reason"] in ("eos", "length") for r in rows)


def test_phase_start_after_open_tag(tiny_llama):
    model, tok = tiny_llama
    eng = HFEngine(model, tok, progress=False)
    c = cfg(phase={"start": "after_open_tag"}, trace=True, max_new_tokens=10)
    closed = eng.generate([render_chat(tok, "Hi", open_think=False)], c)[0]
    assert closed.num_thinking_tokens == 0 and set(closed.trace.phase) == {"answer"}
    opened = eng.generate([render_chat(tok, "Hi", open_think=True)], c)[0]
    assert opened.trace.phase[0] == "think"
