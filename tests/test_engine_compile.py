"""The static KV cache and the compiled decode forward of the transformers engine (softthink/kv_cache.py,
softthink/decode_step.py) against the eager / dynamic-cache reference, on the tiny seeded models."""
from __future__ import annotations

import functools

import pytest
import torch

from softthink.config import GenerationConfig
from softthink.decode_step import COMPILE_RULE, batch_bucket, should_compile
from softthink.engine import HFEngine, _Progress
from softthink.kv_cache import MIN_WINDOW, supports_static, window_for


@functools.lru_cache(maxsize=None)
def model_and_tokenizer(spec: str, dtype=torch.float32):
    # not conftest's helper: `import conftest` is ambiguous when pytest also collects tests/sglang_real/conftest.py
    from softthink.models import load_model

    return load_model(spec, dtype=dtype)

# id prompts of different lengths (left padding); short, so plen + max_new_tokens stays inside one window
ID_PROMPTS = [[5, 17, 33, 40, 9], [70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80], [3, 4], [100, 90, 80, 70, 60, 50, 40]]


def cfg(**kw) -> GenerationConfig:
    base = {"max_new_tokens": 24, "seed": 3}
    base.update(kw)
    return GenerationConfig.from_dict(base)


def test_buckets_and_windows():
    assert [batch_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9, 16, 17, 33)] == [1, 2, 4, 4, 8, 8, 16, 16, 24, 40]
    assert window_for(1, 10_000) == MIN_WINDOW and window_for(MIN_WINDOW + 1, 10_000) == 2 * MIN_WINDOW
    assert window_for(300, 310) == 310  # capped at the cache length
    # windows a 4,000-token run passes through: logarithmically many (bounded recompiles)
    assert len({window_for(n, 4096) for n in range(1, 4097)}) == 6 == (4096 // MIN_WINDOW).bit_length()


def test_compile_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    rule = COMPILE_RULE["cpu"]
    # break-even: steps * saving * t_eager == compile_s * shapes
    even = rule["compile_s"] / (rule["saving"] * rule["step_s"])
    assert not should_compile(cpu, int(even * 0.9), 1) and should_compile(cpu, int(even * 1.1) + 1, 1)
    assert not should_compile(cpu, int(even * 1.1) + 1, 2)  # two shapes cost twice
    assert should_compile(cpu, 1, 0)  # everything compiled already
    assert should_compile(cuda, 20_000, 2) and not should_compile(cuda, 100, 2)


@pytest.mark.parametrize("spec", ["tiny-random-llama", "tiny-random-qwen2"])
def test_static_cache_equals_dynamic_float64(spec, monkeypatch):
    monkeypatch.setattr("softthink.kv_cache.MIN_WINDOW", 32)  # 70 steps cross windows 32 -> 64 -> 81
    model, tok = model_and_tokenizer(spec, torch.float64)
    assert supports_static(model) is None
    static = HFEngine(model, tok, progress=False, kv_cache="static", compile="off")
    dynamic = HFEngine(model, tok, progress=False, kv_cache="dynamic", compile="off")
    assert static.kv_cache == "static" and dynamic.kv_cache == "dynamic"
    # 5 prompts: a bucket of 8 with 3 dead padding rows. Llama: soft thinking with Cold Stop over 70 steps (two
    # window switches); Qwen2: sampling with stop strings, so rows finish at different steps (compaction
    # 8 -> 4 -> 2 -> 1 on the static side, at every finish on the dynamic side)
    prompts = ID_PROMPTS + [[11, 12, 13]]
    if spec.endswith("llama"):
        c = cfg(think={"max_topk": 5}, trace=True, cold_stop={"threshold": 0.5, "length": 3}, max_new_tokens=70)
    else:
        c = cfg(method="cot_sample", think={"temperature": 1.0, "top_k": 40}, max_new_tokens=30)
        free = dynamic.generate(prompts, c)
        c = c.replace(stop=[tok.decode(free[1].token_ids[6:8]), tok.decode(free[3].token_ids[12:14])])
    a, b = static.generate(prompts, c), dynamic.generate(prompts, c)
    for x, y in zip(a, b):
        assert x.token_ids == y.token_ids and x.finish_reason == y.finish_reason
        assert x.think_end_reason == y.think_end_reason
        if c.trace:
            assert x.trace.topk_ids == y.trace.topk_ids
            assert torch.allclose(torch.tensor(x.trace.topk_weights), torch.tensor(y.trace.topk_weights), atol=1e-6)
    if c.stop:
        assert len({len(g.token_ids) for g in a}) > 1  # rows did finish at different steps


def test_static_cache_rows_alone_equal_batch(tiny_qwen):
    """Per-sample determinism survives dead padding rows and bucket compaction."""
    model, tok = tiny_qwen
    eng = HFEngine(model, tok, progress=False, kv_cache="static", compile="off")
    c = cfg(method="cot_greedy", max_new_tokens=20)
    batch = eng.generate(ID_PROMPTS[:3], c)  # bucket 4, one dead row
    for i, p in enumerate(ID_PROMPTS[:3]):
        assert eng.generate([p], c, sample_uids=[i])[0].token_ids == batch[i].token_ids


def test_unsupported_model_falls_back_to_dynamic(tiny_qwen):
    model, tok = tiny_qwen
    old = getattr(model.config, "layer_types", None)
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    try:
        assert supports_static(model) is not None
        assert HFEngine(model, tok, progress=False, kv_cache="static").kv_cache == "dynamic"
    finally:
        model.config.layer_types = old


def test_progress_reports_compile_time():
    from softthink.decode_step import CompileStats

    stats = CompileStats(shapes=[(4, 64)], seconds=12.5)
    bar = _Progress(1, enabled=False, stats=stats)
    bar.tokens(10)
    text = bar._postfix(bar.t0 + 1.0)
    assert "tok/s" in text and "compile 0.0 s (1 shapes)" in text
    stats.seconds += 3.0
    assert "compile 3.0 s" in bar._postfix(bar.t0 + 4.0)


def test_compiled_equals_eager():
    """torch.compile'd decode forward vs eager, token for token (float64 tiny model: the compiled forward differs
    from eager only by fp32 rounding inside the model's norms, below what the fp32 logits resolve over these
    horizons). Rows finish at different steps (stop strings), so the compiled side also runs a compacted bucket.
    One model only (Llama: multi-token marker): each compiled shape costs seconds of CI time."""
    model, tok = model_and_tokenizer("tiny-random-llama", torch.float64)
    eager = HFEngine(model, tok, progress=False, compile="off")
    comp = HFEngine(model, tok, progress=False, compile="on")
    configs = [cfg(method="cot_sample", think={"temperature": 1.0, "top_k": 40}, max_new_tokens=20),
               cfg(think={"max_topk": 4}, trace=True, max_new_tokens=6)]
    free = eager.generate(ID_PROMPTS, configs[0])
    configs[0] = configs[0].replace(stop=[tok.decode(free[0].token_ids[3:5]), tok.decode(free[1].token_ids[5:7])])
    for c in configs:
        a, b = eager.generate(ID_PROMPTS, c), comp.generate(ID_PROMPTS, c)
        assert comp.last_compiled and not eager.last_compiled
        for x, y in zip(a, b):
            assert x.token_ids == y.token_ids and x.finish_reason == y.finish_reason
            if c.trace:
                assert x.trace.topk_ids == y.trace.topk_ids
                # the weights start equal to ~1e-7 and drift (each concept is fed back into the next forward of a
                # random model): compare the first steps tightly; tokens and concept ids over the whole horizon
                assert torch.allclose(torch.tensor(x.trace.topk_weights[:4]), torch.tensor(y.trace.topk_weights[:4]),
                                      atol=1e-4)
    shapes = comp.compile_stats.shapes
    assert comp.compile_stats.n_compiles == len(shapes) <= 4 and comp.compile_stats.seconds > 0
    assert {b for b, _ in shapes} >= {4}


def test_cpu_compiled_forward_freezes_weights():
    """On a CPU the compiled forward is built with inductor freezing (weights folded into the graph as constants, so
    its linears run on prepacked weights): it must agree with eager, and keep its own copy of the weights. A later
    in-place weight change reaches eager and not the graph, which shows freezing is in effect (a torch.compile
    `options=` route silently left it off)."""
    from softthink.decode_step import ModelParts, _static_forward, make_compiled
    from softthink.kv_cache import StaticKVCache
    from softthink.models import load_model

    model, _tok = load_model("tiny-random-llama")  # its own fp32 copy: this test changes a weight
    parts = ModelParts(model, model.config.vocab_size)
    cache = StaticKVCache.for_model(model, 2, 16)
    cache.set_window(16)
    cache.slot.fill_(3)
    cache.n_written = 4
    emb = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(0))  # global RNG untouched
    args = (parts, cache, emb, torch.tensor([3, 3]), torch.ones(2, 16, dtype=torch.bool), torch.tensor(3))
    kw = {"window": 16, "additive": False}
    frozen = make_compiled(torch.device("cpu"))
    with torch.no_grad():
        compiled_before, eager_before = frozen(*args, **kw)[0], _static_forward(*args, **kw)[0]
        assert torch.allclose(compiled_before, eager_before, atol=1e-5)
        model.model.layers[0].mlp.down_proj.weight.mul_(3.0)
        compiled_after, eager_after = frozen(*args, **kw)[0], _static_forward(*args, **kw)[0]
    assert torch.equal(compiled_after, compiled_before)
    assert not torch.allclose(eager_after, eager_before, atol=1e-3)
