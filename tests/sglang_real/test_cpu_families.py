"""Soft thinking on every architecture family: real SGLang 0.5.23 forward passes on the CPU against the transformers
engine, token for token, on the tiny seeded checkpoints (`softthink.tiny_models`, built in code).

Per family, one engine start (in a child process: a scheduler crash kills its parent) runs soft thinking, soft
thinking with Cold Stop firing and a greedy discrete baseline; the reference is `HFEngine` on the same checkpoint,
each request alone. The paper architectures on the same checkpoints (`tiny-random-qwen2`, `-llama`) are in the
list too, so the one mechanism is checked on them exactly like on the new families.
"""
from __future__ import annotations

import functools
import json

import pytest

from child import run_jobs

#: alias -> SGLang architecture it resolves to (each must be the soft subclass's base); CPU-verified families
FAMILIES = {
    "tiny-random-qwen2": "Qwen2ForCausalLM",
    "tiny-random-llama": "LlamaForCausalLM",
    "tiny-random-qwen3": "Qwen3ForCausalLM",
    "tiny-random-mistral": "MistralForCausalLM",
    "tiny-random-gemma2": "Gemma2ForCausalLM",
    "tiny-random-gemma3": "Gemma3ForCausalLM",
    "tiny-random-phi3": "Phi3ForCausalLM",
    "tiny-random-qwen3moe": "Qwen3MoeForCausalLM",
}
#: families whose plain SGLang CPU forward differs from transformers' before any concept is fed: only greedy
#: decoding (argmax-robust) is compared here; soft thinking is in the prepared GPU check
GREEDY_ONLY = {
    # the first step's distribution (the prefill's logits, no concept involved yet, the embedding hook not armed)
    # has an entropy 2-4e-2 away from transformers' on all four prompts, with or without attention soft-capping;
    # greedy tokens agree over 16 steps. Cause inside SGLang's CPU Gemma 2 path not identified.
    "tiny-random-gemma2",
}
#: families SGLang's CPU path cannot run (checked below: the failure is SGLang's, before any soft request); they
#: are in the prepared GPU check (tests/gpu/gpu_families.py, `make gpu-check`)
GPU_ONLY = {
    # MLA: the torch-native attention backend assumes one head size for q/k and v; SGLang runs MLA on the CPU only
    # through its intel_amx backend, whose kernels (torch.ops.sgl_kernel.decode/extend_attention_cpu) need a real
    # sgl-kernel CPU build. V2 and V3 share the attention class (DeepseekV2AttentionMLA).
    "tiny-random-deepseekv3": ("DeepseekV3ForCausalLM", "Expected size for first two dimensions of batch2 tensor"),
    "tiny-random-deepseekv2": ("DeepseekV2ForCausalLM", "Expected size for first two dimensions of batch2 tensor"),
}
QUESTIONS = ["What is 2+3?", "Name a prime number larger than 10.", "What is the capital of France?",
             "Count to five."]
N = 16  # tiny random nets are chaotic under soft inputs: fp32 kernel differences grow into flips after ~20 steps
CONFIGS = {
    "soft": {"method": "soft", "max_new_tokens": N},
    "soft_cold_stop": {"method": "soft", "max_new_tokens": N, "cold_stop": {"threshold": 1.0, "length": 2}},
    "cot_greedy": {"method": "cot_greedy", "max_new_tokens": N},
}


@functools.lru_cache(maxsize=2)
def _hf(model: str):
    from softthink.engine import HFEngine
    from softthink.models import load_model

    m, tok = load_model(model)
    return HFEngine(m, tok)


def _items(model: str, name: str) -> list:
    from softthink.chat import render_chat

    tok = _hf(model).tokenizer
    return [{"prompt": render_chat(tok, q), "config": CONFIGS[name], "uid": i} for i, q in enumerate(QUESTIONS)]


def _reference(model: str, items: list) -> list:
    eng = _hf(model)
    return [eng.generate([it["prompt"]], it["config"], sample_uids=[it["uid"]], progress=False)[0] for it in items]


_RESULTS: dict = {}

#: soft inputs make these random two-layer nets chaotic: a fp32 rounding difference between SGLang's kernels and
#: transformers' (~1e-6 in the first concept) grows about 5x per step, so after ~8-15 steps a concept, and then a
#: token, can differ. Measured on phi3 row 2: 1e-6, 2e-5, 7e-5, 1e-3, 4e-3, 2e-2, 3e-2, 0.19, then a different token.
#: So soft rows are compared (Driver B returns SGLang's concept per step) by what a wrong mechanism could not pass:
EARLY_STEPS = 3  # the first concepts (step 2 is the first forward fed a concept) agree within EARLY_TOL;
EARLY_TOL = 1e-3  # a concept scaled or looked up differently from the reference misses this by orders of magnitude
DRIFT = 1e-3  # and tokens agree until the step after the concepts had drifted apart by at least DRIFT


def _results(model: str) -> dict:
    if model not in _RESULTS:
        jobs = [{"name": n, "items": _items(model, n)} for n in CONFIGS]
        _RESULTS[model] = run_jobs(model, jobs, driver="B")  # B: per-step concept records in meta_info
    return _RESULTS[model]


def _drift(ref, meta) -> list:
    """Per step: max |w_hf - w_sglang| over the union of concept ids, and |H_hf - H_sglang|."""
    out = []
    for s in range(min(len(ref.trace.token), len(meta.get("st_w", [])))):
        hw = dict(zip(ref.trace.topk_ids[s], ref.trace.topk_weights[s]))
        sw = dict(zip(meta["st_ids"][s], meta["st_w"][s]))
        dw = max(abs(hw.get(k, 0.0) - sw.get(k, 0.0)) for k in set(hw) | set(sw))
        out.append(max(dw, abs(ref.trace.entropy[s] - meta["st_H"][s])))
    return out


def _cases():
    for model in FAMILIES:
        for name in CONFIGS:
            if model in GREEDY_ONLY and name != "cot_greedy":
                continue
            yield pytest.param(model, name, id=f"{model[len('tiny-random-'):]}-{name}")


def row_problems(name: str, ref, got) -> list:
    """The parity rule, per row (also used by tests/gpu/gpu_families.py): greedy rows equal token for token; soft
    rows with their first concepts within EARLY_TOL and token differences only after the concepts drifted."""
    problems = []
    for i, (r, g) in enumerate(zip(ref, got)):
        k = next((j for j, (a, b) in enumerate(zip(r.token_ids, g["token_ids"])) if a != b), None)
        if k is None and len(r.token_ids) != len(g["token_ids"]):
            k = min(len(r.token_ids), len(g["token_ids"]))
        if name == "cot_greedy":
            if k is not None:
                problems.append(f"row {i}: first divergence at step {k + 1}")
            continue
        drift = _drift(r, g["meta"])
        early = max(drift[:EARLY_STEPS], default=0.0)
        if early > EARLY_TOL:
            problems.append(f"row {i}: concepts differ early (max {early:.1e} in steps 1-{EARLY_STEPS})")
        if k is not None and (k == 0 or max(drift[:k], default=0.0) < DRIFT):
            problems.append(f"row {i}: token differs at step {k + 1} without prior drift (drift {drift[:k + 1]})")
        if k is None and (r.finish_reason, r.think_end_step) != (g["finish_reason"], g["think_end_step"]):
            problems.append(f"row {i}: finish {r.finish_reason}/{g['finish_reason']}, think end "
                            f"{r.think_end_step}/{g['think_end_step']}")
    return problems


@pytest.mark.parametrize("model,name", list(_cases()))
def test_family_parity(model, name):
    res = _results(model)
    assert name not in res["errors"], res["errors"][name]
    items = _items(model, name)
    ref = _reference(model, [dict(it, config=dict(it["config"], trace=True)) for it in items])
    got = res["results"][name]
    if name == "soft_cold_stop":  # the mechanism must fire, or the comparison proves nothing about it
        assert any(r.think_end_step is not None for r in ref), "Cold Stop never fired in the reference"
    if name == "soft":  # and soft thinking must differ from greedy decoding somewhere
        greedy = _reference(model, _items(model, "cot_greedy"))
        assert any(r.token_ids != g.token_ids for r, g in zip(ref, greedy)), "soft == greedy: a vacuous check"
    problems = row_problems(name, ref, got)
    assert not problems, f"{model}/{name}: " + "; ".join(problems)


def test_soft_rows_mostly_exact():
    """Across the families most soft rows are equal token for token over all 16 steps (the drift allowance above
    is the exception, not the rule)."""
    exact = total = 0
    for model in FAMILIES:
        if model in GREEDY_ONLY:
            continue
        res = _results(model)
        for name in ("soft", "soft_cold_stop"):
            ref = _reference(model, _items(model, name))
            for r, g in zip(ref, res["results"].get(name, [])):
                total += 1
                exact += r.token_ids == g["token_ids"]
    assert total and exact / total >= 0.75, f"{exact}/{total} soft rows exact"


def test_mla_families_fail_on_the_cpu_path_for_sglang_reasons():
    """DeepSeek (MLA) cannot run on SGLang's CPU path: the prefill dies in SGLang's torch-native attention with the
    recorded error, not in the plugin. If a release makes it run, this fails and the family moves to FAMILIES."""
    model = "tiny-random-deepseekv3"
    arch, error = GPU_ONLY[model]
    with pytest.raises(RuntimeError) as info:
        run_jobs(model, [{"name": "greedy", "items": _items(model, "cot_greedy")[:1]}], driver="A")
    msg = str(info.value)
    # the last frames before the error are SGLang's attention backend, not the plugin
    assert error in msg and "torch_native_backend.py" in msg.split(error)[0][-1500:], msg[-2000:]


def test_every_family_resolves_to_its_soft_class():
    """The checkpoints' `architectures` resolve to the soft subclass of the expected SGLang class."""
    import os
    import subprocess
    import sys

    from softthink.sglang_glue import EXTERNAL_MODEL_PACKAGE
    from softthink.sglang_glue.cpu import cpu_env, materialize

    archs = {}
    families = dict(FAMILIES, **{m: a for m, (a, _) in GPU_ONLY.items()})
    for model, arch in families.items():
        with open(os.path.join(materialize(model), "config.json")) as f:
            archs[model] = json.load(f)["architectures"]
        assert archs[model] == [arch], (model, archs[model])
    code = ("import json,sys\nfrom sglang.srt.models.registry import ModelRegistry\n"
            "out={a: [ModelRegistry.resolve_model_cls([a])[0].__mro__[1].__name__,"
            " bool(getattr(ModelRegistry.resolve_model_cls([a])[0], 'softthink_soft', False))]"
            " for a in json.loads(sys.argv[1])}\nprint(json.dumps(out))")
    env = dict(os.environ, **cpu_env(), SGLANG_EXTERNAL_MODEL_PACKAGE=EXTERNAL_MODEL_PACKAGE)
    p = subprocess.run([sys.executable, "-c", code, json.dumps(list(families.values()))], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for arch in families.values():
        assert out[arch] == [arch, True], (arch, out[arch])
