"""Tensor parallelism on the CPU, for real: SGLang 0.5.23 with `tp_size=2` (two scheduler ranks, gloo collectives)
against the same checkpoint at TP 1 and against the transformers engine, on the tiny seeded Qwen2, Llama and
Qwen3-MoE checkpoints (4 attention heads, 2 KV heads: both split over 2 ranks).

What runs (each a real TP 2 start, shared by the tests of this module):
* Qwen2 through `sglang-serve --tp-size 2 --driver B` and HTTP `/generate` (with an API key): soft thinking, Cold
  Stop firing, greedy, soft thinking with Gumbel and with Dirichlet noise (counter RNG: every rank must draw the same
  noise); the same server gets a crafted `custom_logit_processor` payload that it must not run;
* Qwen2 through `SGLangEngine(tp_size=2, driver="A")`: the same requests, token for token equal to Driver B's;
* Llama and Qwen3-MoE through `SGLangEngine(tp_size=2, driver="B")`: soft, Cold Stop, greedy.

Every TP 2 run logs each rank's concept mix (`SOFTTHINK_SGLANG_MIX_TRACE`): the vocabulary-sharded path with one
all-reduce ran on both ranks, concepts spanned both shards, and both ranks mixed identical concepts.

Soft rows are compared with the rule of test_cpu_families.py (these random two-layer nets are chaotic under soft
inputs): greedy rows equal token for token; soft rows with their first concepts within 1e-3 and tokens equal until
the concepts had drifted apart. TP 2 against TP 1 (both SGLang, both with Driver B's per-step records) is held to
the same rule, and wherever a token differs the top-2 log-probability gap of the concept at that step is printed:
a token may also part at a near-tie (gap < NEAR_TIE) that TP's reduction order moved.
"""
from __future__ import annotations

import functools
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile

import pytest

import test_cpu_families as fam
from child import run_jobs
from test_server import _post, serving

TP = 2
N = fam.N  # 16 tokens
TRACE_ENV = "SOFTTHINK_SGLANG_MIX_TRACE"
NOISE = {
    "soft_gumbel": {"method": "soft", "max_new_tokens": N, "noise": {"kind": "gumbel", "rng": "counter"}},
    "soft_dirichlet": {"method": "soft", "max_new_tokens": N, "noise": {"kind": "dirichlet", "rng": "counter"}},
}
CONFIGS = dict(fam.CONFIGS, **NOISE)
SERVER_MODEL = "tiny-random-qwen2"
#: family -> configurations run at TP 2 (noise on the server's family: both ranks must draw the same noise)
RUNS = {
    "tiny-random-qwen2": list(CONFIGS),
    "tiny-random-llama": list(fam.CONFIGS),
    "tiny-random-qwen3moe": list(fam.CONFIGS),
}
#: a top-2 log-probability gap below this is a near-tie: the two leading tokens' probabilities within 1 %
NEAR_TIE = 1e-2
API_KEY = "-".join(["tp", "test", "key"])  # a test value, not a secret
_TRACE_ROOT = tempfile.mkdtemp(prefix="softthink-tp-trace-")


@pytest.fixture(scope="module", autouse=True)
def _clean_traces():
    yield
    shutil.rmtree(_TRACE_ROOT, ignore_errors=True)


def _trace_dir(run: str) -> str:
    return os.path.join(_TRACE_ROOT, run)


def _items(model: str, name: str) -> list:
    from softthink.chat import render_chat

    tok = fam._hf(model).tokenizer
    return [{"prompt": render_chat(tok, q), "config": CONFIGS[name], "uid": i} for i, q in enumerate(fam.QUESTIONS)]


@functools.lru_cache(maxsize=None)
def _reference(model: str, name: str) -> list:
    its = [dict(it, config=dict(it["config"], trace=True)) for it in _items(model, name)]
    return fam._reference(model, its)


# ------------------------------------------------------------------------------------------ the TP 2 runs
@functools.lru_cache(maxsize=None)
def engine_run(model: str, driver: str) -> dict:
    """`SGLangEngine(model, device="cpu", tp_size=2, driver=driver)` in a child process, every config of RUNS."""
    jobs = [{"name": n, "items": _items(model, n)} for n in RUNS[model]]
    res = run_jobs(model, jobs, driver=driver, tp_size=TP, env={TRACE_ENV: _trace_dir(f"{model}-{driver}")})
    return res


@pytest.fixture(scope="module")
def tp2_server():
    """`sglang-serve --tp-size 2 --driver B` on loopback, requiring an API key (read from the environment)."""
    from softthink.sglang_glue.launch import API_KEY_ENV

    env = {TRACE_ENV: _trace_dir(f"{SERVER_MODEL}-server"), API_KEY_ENV: API_KEY}
    with serving(SERVER_MODEL, "--driver", "B", "--tp-size", str(TP), "--extra", json.dumps({"log_level": "warning"}),
                 env=env) as srv:
        yield srv


AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _generate_body(model: str, its: list) -> dict:
    from softthink.chat import encode_prompt
    from softthink.config import GenerationConfig
    from softthink.sglang_glue.launch import build_request

    tok = fam._hf(model).tokenizer
    reqs = [build_request(GenerationConfig.from_dict(it["config"]), tok.encode("</think>", add_special_tokens=False),
                          [tok.eos_token_id], it["uid"], driver="B") for it in its]
    return {"input_ids": [encode_prompt(tok, it["prompt"]) for it in its],
            "sampling_params": [r["sampling_params"] for r in reqs]}


def _as_rows(model: str, outs: list) -> list:
    """`/generate` outputs as the rows `run_jobs` returns (token ids, finish, think end, meta_info)."""
    from softthink.sglang_glue.launch import _finish_reason, think_stats

    tok = fam._hf(model).tokenizer
    marker = tok.encode("</think>", add_special_tokens=False)
    return [{"token_ids": o["output_ids"], "finish_reason": _finish_reason(o["meta_info"], [tok.eos_token_id]),
             "think_end_step": think_stats(o["output_ids"], marker, True)[0], "meta": o["meta_info"]} for o in outs]


@pytest.fixture(scope="module")
def server_run(tp2_server) -> dict:
    """The server's results in the form of `engine_run`: one `/generate` batch per configuration."""
    res = {"results": {}, "errors": {}}
    for name in RUNS[SERVER_MODEL]:
        status, outs = _post(tp2_server["base"] + "/generate", _generate_body(SERVER_MODEL, _items(SERVER_MODEL, name)),
                             headers=AUTH)
        if status != 200:
            res["errors"][name] = f"HTTP {status}: {json.dumps(outs)[:2000]}"
        else:
            res["results"][name] = _as_rows(SERVER_MODEL, outs)
    return res


def tp2_results(model: str, request) -> dict:
    """Driver B at TP 2: through the server for SERVER_MODEL, through SGLangEngine for the others."""
    if model == SERVER_MODEL:
        return request.getfixturevalue("server_run")
    return engine_run(model, "B")


# ------------------------------------------------------------------------------------------ comparisons
def _top2_gap(meta: dict, step: int) -> float:
    """log(w1 / w2) of the concept at `step` (0-based): the top-2 log-probability gap the token was chosen by
    (inf when the concept has one token)."""
    w = sorted((x for x in meta["st_w"][step] if x > 0), reverse=True)
    return math.inf if len(w) < 2 else math.log(w[0] / w[1])


def _concept_drift(a: dict, b: dict) -> list:
    """Per step: max |w_a - w_b| over the union of concept ids, and |H_a - H_b| (two SGLang records)."""
    out = []
    for s in range(min(len(a.get("st_w", [])), len(b.get("st_w", [])))):
        wa, wb = dict(zip(a["st_ids"][s], a["st_w"][s])), dict(zip(b["st_ids"][s], b["st_w"][s]))
        dw = max(abs(wa.get(k, 0.0) - wb.get(k, 0.0)) for k in set(wa) | set(wb))
        out.append(max(dw, abs(a["st_H"][s] - b["st_H"][s])))
    return out


def tp_problems(name: str, tp1: list, tp2: list, report: list) -> list:
    """TP 2 against TP 1 by the rule of `fam.row_problems`, with the records of both sides; appends one line per
    row to `report` (exact, or where and with which top-2 gap the tokens part)."""
    problems = []
    for i, (a, b) in enumerate(zip(tp1, tp2)):
        k = next((j for j, (x, y) in enumerate(zip(a["token_ids"], b["token_ids"])) if x != y), None)
        if k is None and len(a["token_ids"]) != len(b["token_ids"]):
            k = min(len(a["token_ids"]), len(b["token_ids"]))
        drift = _concept_drift(a["meta"], b["meta"]) if name != "cot_greedy" else []
        if k is None:
            report.append(f"row {i}: exact ({len(a['token_ids'])} tokens, concept drift max "
                          f"{max(drift, default=0.0):.1e})")
            if (a["finish_reason"], a["think_end_step"]) != (b["finish_reason"], b["think_end_step"]):
                problems.append(f"row {i}: finish {a['finish_reason']}/{b['finish_reason']}, think end "
                                f"{a['think_end_step']}/{b['think_end_step']}")
            continue
        gaps = [_top2_gap(m, k) if k < len(m.get("st_w", [])) else math.inf for m in (a["meta"], b["meta"])]
        gap = min(gaps)
        report.append(f"row {i}: first difference at step {k + 1}, top-2 log-prob gap there {gaps[0]:.2e} (TP 1) / "
                      f"{gaps[1]:.2e} (TP {TP}), concept drift before it {max(drift[:k], default=0.0):.1e}")
        if name == "cot_greedy":
            problems.append(f"row {i}: greedy tokens differ at step {k + 1}")
            continue
        early = max(drift[:fam.EARLY_STEPS], default=0.0)
        if early > fam.EARLY_TOL:
            problems.append(f"row {i}: concepts differ early (max {early:.1e} in steps 1-{fam.EARLY_STEPS})")
        # a different token needs a reason: concepts that had already drifted apart, or a near-tie at that step
        # (TP's reduction order moves the top-2 margin by about the drift seen so far)
        if k == 0 or (max(drift[:k], default=0.0) < fam.DRIFT and not gap < NEAR_TIE):
            problems.append(f"row {i}: token differs at step {k + 1} with neither prior drift nor a near-tie "
                            f"(gap {gap:.2e}, drift {drift[:k + 1]})")
    return problems


def _cases(runs):
    for model, names in runs.items():
        for name in names:
            yield pytest.param(model, name, id=f"{model[len('tiny-random-'):]}-{name}")


# ------------------------------------------------------------------------------------------ the tests
def test_cpu_group_hook_turns_the_gpu_only_communicators_off():
    """The entry point's hook on `init_model_parallel_group` (what lets CPU ranks start): every GPU-only
    communicator off, however the caller passed it; only in processes softthink launched on the CPU."""
    from sglang.srt.distributed import parallel_state

    from softthink.sglang_glue import EXTERNAL_MODEL_PACKAGE
    from softthink.sglang_glue.cpu import GPU_ONLY_COMMUNICATORS, cpu_parallel_group, cpu_selected

    real = parallel_state.init_model_parallel_group
    seen = functools.wraps(real)(lambda *a, **k: (a, k))  # the release's signature, returns what it was given
    args, kwargs = cpu_parallel_group(seen, [[0, 1]], 0, "gloo", True, use_custom_allreduce=True, group_name="tp")
    bound = __import__("inspect").signature(real).bind(*args, **kwargs).arguments
    assert set(GPU_ONLY_COMMUNICATORS) <= set(bound)  # the release still has each of them
    assert all(bound[name] is False for name in GPU_ONLY_COMMUNICATORS), bound
    assert bound["group_ranks"] == [[0, 1]] and bound["backend"] == "gloo" and bound["group_name"] == "tp"
    ours = {"SGLANG_USE_CPU_ENGINE": "1", "SGLANG_EXTERNAL_MODEL_PACKAGE": EXTERNAL_MODEL_PACKAGE}
    assert cpu_selected(ours)
    assert not cpu_selected(dict(ours, SGLANG_USE_CPU_ENGINE="0"))  # a GPU server
    assert not cpu_selected({"SGLANG_USE_CPU_ENGINE": "1"})  # somebody else's CPU SGLang


@pytest.mark.parametrize("model,name", list(_cases(RUNS)))
def test_tp2_matches_the_transformers_engine(model, name, request):
    res = tp2_results(model, request)
    assert name not in res["errors"], res["errors"][name]
    ref = _reference(model, name)
    got = res["results"][name]
    if name == "soft_cold_stop":  # the mechanism must fire, or the comparison proves nothing about it
        assert any(r.think_end_step is not None for r in ref), "Cold Stop never fired in the reference"
        assert any(g["think_end_step"] is not None for g in got), "Cold Stop never fired at TP 2"
    if name in NOISE:  # noise must change the concepts, or "both ranks drew the same noise" is vacuous
        plain = _reference(model, "soft")
        assert any(abs(a - b) > 1e-3 for r, p in zip(ref, plain) for wr, wp in zip(r.trace.topk_weights,
                                                                                  p.trace.topk_weights)
                   for a, b in zip(wr, wp)), "noise left every concept unchanged"
    problems = fam.row_problems(name, ref, got)
    assert not problems, f"{model}/{name} TP {TP}: " + "; ".join(problems)


@pytest.mark.parametrize("model,name", list(_cases({m: list(fam.CONFIGS) for m in RUNS})))
def test_tp2_against_tp1(model, name, request):
    """TP 2 against TP 1 on the same SGLang (TP 1: the runs of test_cpu_families.py, shared when run together)."""
    res2 = tp2_results(model, request)
    res1 = fam._results(model)
    assert name not in res1["errors"] and name not in res2["errors"]
    report = []
    problems = tp_problems(name, res1["results"][name], res2["results"][name], report)
    print(f"\n{model}/{name} TP 1 vs TP {TP}:\n  " + "\n  ".join(report))
    assert not problems, f"{model}/{name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", RUNS[SERVER_MODEL])
def test_driver_a_equals_driver_b_at_tp2(name, request):
    """Driver A (custom logit processor, SGLangEngine) and Driver B (sample hook, the HTTP server) at TP 2 on the
    same requests: the same numerics, so the same tokens, finishes and think ends."""
    a = engine_run(SERVER_MODEL, "A")
    b = request.getfixturevalue("server_run")
    assert name not in a["errors"], a["errors"][name]
    assert name not in b["errors"], b["errors"][name]
    for i, (x, y) in enumerate(zip(a["results"][name], b["results"][name], strict=True)):
        assert x["token_ids"] == y["token_ids"], f"row {i}: Driver A {x['token_ids']} vs Driver B {y['token_ids']}"
        assert (x["finish_reason"], x["think_end_step"]) == (y["finish_reason"], y["think_end_step"]), f"row {i}"


def _trace(run: str) -> dict:
    """rank -> its mix records (one JSON line per armed decode lookup)."""
    folder = _trace_dir(run)
    out: dict = {}
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, f)) as fh:
            lines = [json.loads(x) for x in fh]
        for line in lines:
            out.setdefault(line["rank"], []).append(line)
    return out


@pytest.mark.parametrize("run", [f"{SERVER_MODEL}-server", f"{SERVER_MODEL}-A", "tiny-random-llama-B",
                                 "tiny-random-qwen3moe-B"])
def test_each_rank_mixed_its_vocabulary_shard(run, request):
    """The code TP exercises ran: on both ranks every decode lookup took the vocabulary-sharded mix with exactly one
    all-reduce; soft rows were mixed; their concepts held ids of both shards (so the all-reduce is what completed
    them); and both ranks read identical concepts (identical tables, identical noise) lookup for lookup."""
    model, _, driver = run.rpartition("-")
    if driver == "server":
        request.getfixturevalue("server_run")
    else:
        engine_run(model, driver)
    ranks = _trace(run)
    assert sorted(ranks) == list(range(TP)), f"trace of ranks {sorted(ranks)}"
    shards = [ranks[r][0]["shard"] for r in range(TP)]
    assert shards[0][0] == 0 < shards[0][1] == shards[1][0] < shards[1][1], shards  # the vocabulary, split in two
    for r, lines in ranks.items():
        assert {ln["path"] for ln in lines} == {"sharded"} and {ln["tp"] for ln in lines} == {TP}
        assert all(ln["all_reduces"] == 1 for ln in lines), "one all-reduce per mixed lookup"
        assert {tuple(ln["shard"]) for ln in lines} == {tuple(shards[r])}
        soft = [ln for ln in lines if ln["soft_rows"]]
        assert soft, f"rank {r} mixed no soft row"
        assert any(0 < ln["ids_in_shard"] < ln["ids"] for ln in soft), f"rank {r}: no concept spanned both shards"
    assert [ln["digest"] for ln in ranks[0]] == [ln["digest"] for ln in ranks[1]], "the ranks mixed different concepts"
    inside = sum(ln["ids_in_shard"] for r in ranks for ln in ranks[r])
    total = sum(ln["ids"] for ln in ranks[0])
    assert inside == total, f"each concept id lies in exactly one shard: {inside} in-shard ids of {total}"
    print(f"\n{run}: {len(ranks[0])} mixed lookups per rank, {sum(ln['soft_rows'] for ln in ranks[0])} soft rows, "
          f"{total} concept ids ({[sum(ln['ids_in_shard'] for ln in ranks[r]) for r in range(TP)]} per shard)")


# ------------------------------------------------------------------------------------------ the server's door
def test_server_requires_the_api_key(tp2_server):
    body = _generate_body(SERVER_MODEL, _items(SERVER_MODEL, "cot_greedy")[:1])
    status, _ = _post(tp2_server["base"] + "/generate", body)
    assert status == 401
    status, _ = _post(tp2_server["base"] + "/generate", body, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, out = _post(tp2_server["base"] + "/generate", body, headers=AUTH)
    assert status == 200 and len(out[0]["output_ids"]) == N


class _WritesAFile:
    """Unpickling this runs `open(path, "w").write(...)`: what an attacker would send as a processor."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').write('ran')",)


def _payload(path: str) -> str:
    return json.dumps({"callable": pickle.dumps(_WritesAFile(path)).hex()})


def test_driver_b_server_does_not_run_a_crafted_processor(tp2_server, tmp_path):
    """A Driver B server (no --enable-custom-logit-processor) refuses a request carrying a processor payload that
    writes a file when deserialised, never deserialises it, and keeps serving. The payload is checked to be live:
    SGLang's own `CustomLogitProcessor.from_str` (what a Driver A server runs) does write the file."""
    control = tmp_path / "control"
    code = ("import sys\nfrom sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor\n"
            "try:\n    CustomLogitProcessor.from_str(sys.argv[1])\nexcept Exception:\n    pass\n")
    subprocess.run([sys.executable, "-c", code, _payload(str(control))], timeout=300, check=True)
    assert control.read_text() == "ran", "the payload is not live: the test would prove nothing"

    target = tmp_path / "target"
    body = _generate_body(SERVER_MODEL, _items(SERVER_MODEL, "cot_greedy")[:1])
    body["custom_logit_processor"] = [_payload(str(target))]
    status, out = _post(tp2_server["base"] + "/generate", body, headers=AUTH)
    assert status >= 400 and "custom logit processor" in json.dumps(out), (status, out)
    body["custom_logit_processor"] = _payload(str(target))  # the single-string form too
    status, out = _post(tp2_server["base"] + "/generate", body, headers=AUTH)
    assert status >= 400, (status, out)
    assert not target.exists(), "the server ran the payload"
    body.pop("custom_logit_processor")
    status, out = _post(tp2_server["base"] + "/generate", body, headers=AUTH)
    assert status == 200 and len(out[0]["output_ids"]) == N  # still serving
