"""Is it more than greedy? Trajectory agreement, paired differences and the top-1 reliance probe (softthink.diagnostics,
softthink.probe) on hand-checked cases and the tiny models."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from softthink import diagnostics, probe
from softthink.engine import HFEngine

PROMPTS = [[1, 2, 3, 4, 5], [7, 8, 9]]
UIDS = [0, 1_000_000]


def soft_cfg(k: int, **kw):
    return {"method": "soft", "max_new_tokens": 20, "seed": 0, "batch_size": 2,
            "think": {"max_topk": k, "temperature": 0.6, "top_k": 30, "budget": 12}, **kw}


# --- trajectory agreement ---------------------------------------------------------------------------------------


def test_first_divergence_and_thinking_agreement_by_hand():
    assert math.isnan(diagnostics.first_divergence([4, 5, 6], [4, 5, 6]))
    assert diagnostics.first_divergence([4, 5, 6], [4, 9, 6]) == 2
    assert diagnostics.first_divergence([4, 5], [4, 5, 6]) == 3  # the shorter one stops first
    assert diagnostics.thinking_agreement([1, 2, 3, 4], [1, 0, 3]) == 0.5  # 2 of max(4, 3) positions
    row = diagnostics.compare_samples({"token_ids": [1, 2, 3, 9], "num_thinking_tokens": 3, "extracted": "7",
                                       "score": 1},
                                      {"token_ids": [1, 2, 4, 9], "num_thinking_tokens": 3, "extracted": " 7",
                                       "score": 1})
    assert row["first_divergence"] == 3 and row["think_agreement"] == pytest.approx(2 / 3)
    assert row["answer_agree"] and row["correct_agree"]


def test_one_hot_concept_agrees_with_greedy_everywhere(tiny_qwen):
    """Soft Thinking with K = 1 (and argmax answers) feeds E[top-1] bit for bit: the same tokens as greedy CoT."""
    m, tok = tiny_qwen
    eng = HFEngine(m, tok, progress=False)
    soft = eng.generate(PROMPTS, soft_cfg(1, answer={"mode": "greedy_argmax"}), sample_uids=UIDS)
    greedy = eng.generate(PROMPTS, {**soft_cfg(1), "method": "cot_greedy"}, sample_uids=UIDS)
    wide = eng.generate(PROMPTS, soft_cfg(5, answer={"mode": "greedy_argmax"}), sample_uids=UIDS)
    for s, g, w in zip(soft, greedy, wide):
        row = diagnostics.compare_samples(s.to_dict(), g.to_dict())
        assert math.isnan(row["first_divergence"]) and row["think_agreement"] == 1.0 and row["answer_agree"]
        assert row["think_tokens"] == 12
    # a real concept leaves the greedy path on this random model (else the check above would prove nothing)
    assert any(not math.isnan(diagnostics.compare_samples(w.to_dict(), g.to_dict())["first_divergence"])
               for w, g in zip(wide, greedy))


# --- paired differences -----------------------------------------------------------------------------------------


def _scores(per_item):
    return pd.DataFrame([{"item_index": i, "sample_index": j, "score": s, "num_tokens": 10 * (i + 1) + s}
                         for i, ss in enumerate(per_item) for j, s in enumerate(ss)])


def test_a_run_against_itself_is_zero_with_a_zero_width_interval():
    a = _scores([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    for col in ("score", "num_tokens"):
        r = diagnostics.paired_difference(a, a, col, n_resamples=500, seed=3)
        assert r["diff"] == 0 and r["lo"] == 0 and r["hi"] == 0 and r["p"] == 1.0 and r["n_items"] == 5


def test_paired_difference_by_hand_and_pairing_helps():
    a = _scores([[1], [1], [0], [1]])
    b = _scores([[0], [1], [0], [0]])
    r = diagnostics.paired_difference(a, b, n_resamples=4000, seed=0)
    assert r["diff"] == pytest.approx(0.5)
    # exact sign-flip test over 2^4 patterns: |mean| >= 0.5 needs both non-zero items positive or both negative
    assert r["p"] == pytest.approx(8 / 16)
    assert 0.0 <= r["lo"] <= r["diff"] <= r["hi"] <= 1.0
    # only the common items count
    r2 = diagnostics.paired_difference(a, b[b.item_index < 2], n_resamples=100)
    assert r2["n_items"] == 2 and r2["diff"] == pytest.approx(0.5)
    # a constant shift on every item: the paired interval collapses on it, the unpaired spread would not
    many = _scores([[i % 2] for i in range(40)])
    shifted = many.assign(num_tokens=many.num_tokens + 7)
    r3 = diagnostics.paired_difference(shifted, many, "num_tokens", n_resamples=300)
    assert r3["diff"] == pytest.approx(7) and r3["lo"] == pytest.approx(7) and r3["hi"] == pytest.approx(7)
    assert r3["p"] < 0.01


def test_paired_bootstrap_resamples_within_items_and_is_seeded():
    a = _scores([[1, 0], [1, 0], [1, 1]])
    b = _scores([[0], [0], [1]])
    r1 = diagnostics.paired_difference(a, b, n_resamples=300, seed=1)
    assert r1 == diagnostics.paired_difference(a, b, n_resamples=300, seed=1)
    # the per-item spread of A's two samples alone widens the interval beyond the item bootstrap of the means
    a_mean = _scores([[0.5], [0.5], [1]])
    r_mean = diagnostics.paired_difference(a_mean, b, n_resamples=300, seed=1)
    assert r1["diff"] == pytest.approx(r_mean["diff"])
    assert r1["hi"] - r1["lo"] > r_mean["hi"] - r_mean["lo"]


# --- the probe --------------------------------------------------------------------------------------------------


def test_probe_one_hot_concept_gives_js_zero_and_leaves_the_trajectory_alone(tiny_qwen):
    m, tok = tiny_qwen
    for k in (1, 5):
        ref = HFEngine(m, tok, kv_cache="static", compile="off", progress=False).generate(PROMPTS, soft_cfg(k),
                                                                                           sample_uids=UIDS)
        eng = probe.ProbeEngine(m, tok)
        frame, gens = probe.probe_generate(eng, PROMPTS, soft_cfg(k), UIDS)
        assert [g.token_ids for g in gens] == [r.token_ids for r in ref]  # probe forwards do not touch the trajectory
        assert set(frame.step) == set(range(1, 12)) and len(frame) == 2 * 11  # every THINK step fed a concept
        assert eng.timing["probed_steps"] == 11 and eng.timing["probe"] > 0
        if k == 1:
            assert (frame.js_top1 == 0).all() and (frame.w_top1 == 1).all() and frame.js_top2.isna().all()
        else:
            assert ((frame.js_top1 >= 0) & (frame.js_top1 <= math.log(2) + 1e-9)).all()
            assert (frame.js_top1 > 1e-6).any()
            one_hot = frame.support == 1  # steps where filtering left one token: the concept is its top-1
            assert (frame.js_top1[one_hot] == 0).all() and frame.js_top2[one_hot].isna().all()
            assert frame.js_top2[~one_hot].notna().all()


def test_probe_steps_subset_and_js_helper(tiny_qwen):
    import torch

    x = torch.randn(3, 50, dtype=torch.float64)
    assert torch.equal(probe.js_divergence(x, x), torch.zeros(3, dtype=torch.float64))
    far = probe.js_divergence(torch.tensor([[0.0, -1e4]]), torch.tensor([[-1e4, 0.0]]))
    assert far.item() == pytest.approx(math.log(2))
    steps = probe.choose_steps(20, 4, seed=0)
    assert steps == probe.choose_steps(20, 4, seed=0) and len(steps) == 4 and probe.choose_steps(20, 0) is None
    m, tok = tiny_qwen
    eng = probe.ProbeEngine(m, tok, probe_steps=steps)
    frame, _ = probe.probe_generate(eng, PROMPTS, soft_cfg(5), UIDS)
    assert set(frame.step) <= set(steps)
    assert not len(probe.probe_table(frame.iloc[:0].assign(model=[], method=[], dataset=[])))


# --- over real run directories ----------------------------------------------------------------------------------


def test_measures_over_run_directories(tiny_qwen, tmp_path):
    """Soft Thinking with K = 1 (argmax answers) against greedy CoT, generated and graded into run directories:
    agreement everywhere, a zero paired difference with a zero-width interval, the probe's JS 0 on a replay that
    reproduces the stored tokens, and the probe cached in the run directory."""
    from softthink import grade_runs, summaries
    from softthink.generate import generate_run
    from softthink.runspec import RunSpec

    m, tok = tiny_qwen
    base = {"model": "tiny-random-qwen2", "dataset": "gsm8k", "limit": 2, "n": 1, "device": "cpu"}
    gen = {"max_new_tokens": 14, "seed": 0, "batch_size": 2, "think": {"budget": 8}}
    dirs = []
    for g in ({"method": "soft", "think": {"max_topk": 1, "budget": 8}, "answer": {"mode": "greedy_argmax"}},
              {"method": "cot_greedy"}):
        rd = generate_run(RunSpec.from_dict({**base, "generation": {**gen, **g}}), engine=HFEngine(m, tok),
                          progress=False, runs_dir=tmp_path)
        dirs.append(str(rd.path))
    # graded in a process of its own (the one path): an in-process grading pool would outlive the test
    assert all(r["status"] == "ok" for r in grade_runs.grade_in_subprocess(dirs))
    summary = summaries.summarize_runs(dirs)
    agree = diagnostics.agreement_frame(summary)
    assert len(agree) == 2 and agree.first_divergence.isna().all() and (agree.think_agreement == 1).all()
    assert agree.answer_agree.all() and (agree.think_tokens == 8).all()
    paired = diagnostics.paired_frame(summary)
    assert len(paired) == 1 and paired.method[0] in ("soft", "soft_no_cold_stop")
    for col in ("acc_diff", "acc_lo", "acc_hi", "len_diff", "len_lo", "len_hi"):
        assert paired[col][0] == 0
    assert paired.acc_p[0] == 1.0 and paired.n_items[0] == 2
    engines = {"tiny-random-qwen2": probe.ProbeEngine(m, tok)}
    frame = probe.probe_run(dirs[0], n_items=2, engines=engines)
    assert len(frame) == 2 * 7 and (frame.js_top1 == 0).all() and (frame.replay == 1).all()
    assert frame.attrs["meta"]["timing"]["probed_steps"] == 7
    assert len(list((tmp_path / dirs[0].split("/")[-1] / "probe").glob("*.csv"))) == 1
    again = probe.probe_run(dirs[0], n_items=2, engines={})  # read from the cache: no model needed
    assert again.js_top1.tolist() == frame.js_top1.tolist()
    assert not len(probe.probe_run(dirs[1], n_items=2, engines={}))  # greedy CoT: no concept to probe
    tab = probe.probe_table(probe.probe_runs(dirs, n_items=2))
    assert tab["JS(concept, top-1)"].tolist() == [0.0] and tab["probed steps"].tolist() == [14]
