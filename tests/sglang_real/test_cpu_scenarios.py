"""Scheduler situations on real SGLang (CPU): radix cache with salted soft requests, more requests than
`max_running_requests`, chunked prefill of a long prompt, retraction under a tiny KV pool, `n > 1`, delayed
sampling next to a grammar request, DP replicas, and requests the plugin must refuse one by one."""
from __future__ import annotations

import functools
import json

import pytest

from child import run_jobs
from parity import CONFIGS, LONG_QUESTION, MODEL, QUESTIONS, assert_same, hf, items, prompts, reference


@functools.lru_cache(maxsize=None)
def _tok_ids():
    tok = hf().tokenizer
    return tok.encode("</think>", add_special_tokens=False), [tok.eos_token_id]


def _request(cfg: dict, uid: int, **extra_sp) -> dict:
    from softthink.config import GenerationConfig
    from softthink.sglang_glue.launch import build_request

    marker, eos = _tok_ids()
    req = build_request(GenerationConfig.from_dict(cfg), marker, eos, uid, driver="A")
    req["sampling_params"].update(extra_sp)
    return req


def _ids(text: str) -> list:
    from softthink.chat import encode_prompt

    return encode_prompt(hf().tokenizer, text)


def _raw(reqs: list, prompts_: list) -> dict:
    """Engine.generate kwargs for hand-built requests (custom processor per row, None for plain rows)."""
    return {"input_ids": [_ids(p) for p in prompts_], "sampling_params": [r["sampling_params"] for r in reqs],
            "custom_logit_processor": [r.get("custom_logit_processor") for r in reqs]}


def _single(raw: dict) -> dict:
    """One request, not a batch of one (SGLang refuses a list of processors with n > 1)."""
    return {k: v[0] for k, v in raw.items()}


# ------------------------------------------------------------------------------ radix + max running + chunked
def _long_items():
    qs = [LONG_QUESTION] + QUESTIONS + QUESTIONS[:1]  # 6 requests for max_running_requests=2
    out = []
    for i, q in enumerate(qs):
        name = ["soft", "soft_cold_stop", "cot_greedy", "soft_gumbel", "moi", "soft"][i]
        out.append({"prompt": prompts([q])[0], "config": CONFIGS[name], "uid": 200 + i})
    return out


@functools.lru_cache(maxsize=None)
def packed_engine():
    """Radix cache on (soft requests salted), 2 running requests at most, 16-token prefill chunks."""
    jobs = [{"name": "first", "items": _long_items()},
            {"name": "again", "items": _long_items()},  # same prompts: the radix cache now holds them
            {"name": "plain", "items": items("cot_greedy")}]
    return run_jobs(MODEL, jobs, driver="A", disable_radix_cache=False, max_running_requests=2,
                    chunked_prefill_size=16)


def test_long_prompt_is_chunked():
    n = len(_ids(prompts([LONG_QUESTION])[0]))
    assert n > 3 * 16, n  # the long prompt spans several 16-token prefill chunks


@pytest.mark.parametrize("job", ["first", "again", "plain"])
def test_radix_chunked_prefill_and_queueing(job):
    res = packed_engine()
    assert job not in res["errors"], res["errors"].get(job)
    its = {"first": _long_items(), "again": _long_items(), "plain": items("cot_greedy")}[job]
    assert_same(its, res["results"][job], f"packed/{job}")


def test_radix_cache_served_plain_prefixes_and_kept_soft_ones_out():
    res = packed_engine()
    again = res["results"]["again"]
    cached = {it["config"]["method"]: m["meta"].get("cached_tokens", 0) for it, m in zip(_long_items(), again)}
    assert cached["cot_greedy"] > 0  # plain requests share the prefix cache
    plain = res["results"]["plain"]
    assert sum(g["meta"].get("cached_tokens", 0) for g in plain) > 0


# ------------------------------------------------------------------------------ retraction
RETRACT_N = 96


@functools.lru_cache(maxsize=None)
def tiny_pool_engine():
    """8 long requests in a 300-token KV pool with an optimistic admission (schedule_conservativeness 0.05): decode
    runs out of KV and retracts. Greedy rows get a -100 logit bias on EOS so that they run long (`ignore_eos` would
    not do: SGLang reserves the whole budget of such requests at admission and never retracts them)."""
    eos = hf().tokenizer.eos_token_id
    names = ["soft", "cot_greedy"] * 4
    qs = [QUESTIONS[1], QUESTIONS[1], QUESTIONS[3], QUESTIONS[3]] * 2  # the questions soft thinking answers at length
    its = [{"prompt": p, "config": dict(CONFIGS[name], max_new_tokens=RETRACT_N), "uid": 300 + i}
           for i, (p, name) in enumerate(zip(prompts(qs), names))]
    reqs = [_request(it["config"], it["uid"], **({} if it["config"]["method"] == "soft"
                                                  else {"logit_bias": {str(eos): -100.0}})) for it in its]
    res = run_jobs(MODEL, [{"name": "tiny", "raw": _raw(reqs, [it["prompt"] for it in its])}], driver="A",
                   max_total_tokens=300, max_running_requests=8, log_level="info",
                   extra={"schedule_conservativeness": 0.05})
    return its, res


def test_retraction_replays_hard_and_leaves_others_exact():
    """A tiny KV pool forces decode retractions. Documented behaviour (engine.on_retraction=replay_hard): the
    re-prefilled request continues from its recorded tokens as hard inputs, so greedy requests stay exact and a
    soft request matches the reference up to its retraction; requests never retracted match exactly."""
    its, res = tiny_pool_engine()
    assert "tiny" not in res["errors"], res["errors"].get("tiny")
    got = res["results"]["tiny"]
    retracted = [int(o["meta_info"].get("num_retractions") or 0) for o in got]
    assert sum(retracted) > 0, "the pool was not small enough to force a retraction"
    assert "Retract requests" in res["stderr"]
    ref = reference(its)
    for it, r, o, n in zip(its, ref, got, retracted):
        want = r.token_ids
        if it["config"]["method"] == "cot_greedy":  # EOS biased away: equal up to the reference's EOS
            want = want[:-1] if r.finish_reason == "eos" else want
            assert o["output_ids"][:len(want)] == want, ("greedy", n)
            assert len(o["output_ids"]) == RETRACT_N
        elif n == 0:
            assert o["output_ids"] == want, ("soft, never retracted", n)
        else:  # replay_hard: a valid completion; the restart is logged with the request id
            assert len(o["output_ids"]) > 0 and "re-prefilled after retraction" in res["stderr"]


# ------------------------------------------------------------------------------ n > 1, delayed sampling, refusals
NOISY = dict(CONFIGS["soft_gumbel"], max_new_tokens=24)


@functools.lru_cache(maxsize=None)
def raw_engine():
    p = prompts(QUESTIONS)
    good = [_request(CONFIGS["soft"], i) for i in range(2)]
    jobs = [
        {"name": "n2", "raw": _single(_raw([_request(NOISY, 40, n=2)], p[:1]))},
        {"name": "grammar_mix", "raw": _raw(
            [_request(CONFIGS["soft"], 0), _request(CONFIGS["soft_cold_stop"], 1),
             {"sampling_params": {"max_new_tokens": 8, "temperature": 0, "regex": "(yes|no)"}},
             _request(CONFIGS["soft_budget"], 3)], p)},
        {"name": "bad_mix", "raw": _raw(
            [good[0],
             _request(dict(CONFIGS["soft"], think={"max_topk": 31}), 1),  # wider than --kmax 30
             _request(CONFIGS["soft"], 2) | {"sampling_params": dict(
                 _request(CONFIGS["soft"], 2)["sampling_params"],
                 custom_params=dict(_request(CONFIGS["soft"], 2)["sampling_params"]["custom_params"],
                                    st_marker=list(range(5, 14))))},  # a 9-id marker > 8
             _request(CONFIGS["soft"], 3) | {"sampling_params": dict(
                 _request(CONFIGS["soft"], 3)["sampling_params"],
                 custom_params=dict(_request(CONFIGS["soft"], 3)["sampling_params"]["custom_params"],
                                    st_cfg='{"think": {"max_topk": "ten"}}'))},  # malformed
             _request(CONFIGS["soft"], 1, frequency_penalty=0.5)],  # penalties refused for soft requests
            [p[0], p[1], p[2], p[3], p[1]])},
        {"name": "after_bad", "items": [dict(it, uid=i) for i, it in enumerate(items("soft")[:2])]},
    ]
    return run_jobs(MODEL, jobs, driver="A", env={"SGLANG_ENABLE_DELAY_SAMPLE": "1"})


def test_n_greater_than_one_gives_each_copy_its_own_key():
    res = raw_engine()
    assert "n2" not in res["errors"], res["errors"].get("n2")
    outs = res["results"]["n2"]
    assert len(outs) == 2
    a, b = (o["output_ids"] for o in outs)
    assert a != b  # the copies drew different noise
    ref = reference([{"prompt": prompts(QUESTIONS[:1])[0], "config": NOISY, "uid": u} for u in (40, 41)])
    assert sorted([a, b]) == sorted([r.token_ids for r in ref])  # uid, uid + 1: the suite's sample uids


def test_delayed_sampling_with_a_grammar_request_in_the_batch():
    res = raw_engine()
    assert "grammar_mix" not in res["errors"], res["errors"].get("grammar_mix")
    outs = res["results"]["grammar_mix"]
    names = ["soft", "soft_cold_stop", None, "soft_budget"]
    soft_items = [{"prompt": p, "config": CONFIGS[n], "uid": i}
                  for i, (p, n) in enumerate(zip(prompts(QUESTIONS), names)) if n]
    soft_outs = [{"token_ids": o["output_ids"], "finish_reason": _fr(o), "think_end_step": _tes(o["output_ids"])}
                 for o, n in zip(outs, names) if n]
    assert_same(soft_items, soft_outs, "delayed-sampling")
    text = hf().tokenizer.decode(outs[2]["output_ids"], skip_special_tokens=True)
    assert text in ("yes", "no"), text


def test_bad_requests_fail_alone_and_the_engine_keeps_serving():
    res = raw_engine()
    assert "bad_mix" not in res["errors"], res["errors"].get("bad_mix")
    outs = res["results"]["bad_mix"]
    assert _fr(outs[0]) != "abort"
    assert_same(items("soft")[:1], [{"token_ids": outs[0]["output_ids"], "finish_reason": _fr(outs[0]),
                                     "think_end_step": _tes(outs[0]["output_ids"])}], "good")
    expect = ["exceeds the server's SOFTTHINK_SGLANG_KMAX", "SOFTTHINK_SGLANG_MARKER_MAX", "think.max_topk",
              "frequency_penalty"]
    for o, words in zip(outs[1:], expect):
        fr = o["meta_info"]["finish_reason"]
        assert fr["type"] == "abort" and words in fr.get("message", ""), fr
    assert "after_bad" not in res["errors"], res["errors"].get("after_bad")
    assert_same([dict(it, uid=i) for i, it in enumerate(items("soft")[:2])], res["results"]["after_bad"],
                "after-bad")


def _fr(o):
    from softthink.sglang_glue.launch import _finish_reason

    return _finish_reason(o["meta_info"], _tok_ids()[1])


def _tes(ids):
    from softthink.sglang_glue.launch import think_stats

    return think_stats(ids, _tok_ids()[0], True)[0]


# ------------------------------------------------------------------------------ data parallel
@functools.lru_cache(maxsize=None)
def dp_engine():
    jobs = [{"name": n, "items": items(n)} for n in ("soft", "soft_gumbel", "cot_greedy")]
    return run_jobs(MODEL, jobs, driver="A", dp_size=2)


@pytest.mark.parametrize("job", ["soft", "soft_gumbel", "cot_greedy"])
def test_data_parallel_two_replicas(job):
    res = dp_engine()
    assert job not in res["errors"], res["errors"].get(job)
    assert_same(items(job), res["results"][job], f"dp2/{job}")
