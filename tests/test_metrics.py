"""Metrics against hand-computed values (docs/design/evaluation.md §5)."""
from __future__ import annotations

import itertools
import math

import pytest

from softthink import metrics


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of k-subsets of n samples (c correct) that contain at least one correct sample."""
    outcomes = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_pass_at_k_matches_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert metrics.pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k), abs=1e-12)
            assert metrics.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_edges():
    assert metrics.pass_at_k(4, 0, 2) == 0.0
    assert metrics.pass_at_k(4, 3, 2) == 1.0  # n - c = 1 < k
    assert metrics.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        metrics.pass_at_k(2, 1, 3)
    with pytest.raises(ValueError):
        metrics.pass_at_k(2, 3, 1)
    # only defined when every item has n >= k
    assert metrics.mean_pass_at_k([4, 2], [1, 1], 3) is None
    assert metrics.mean_pass_at_k([4, 2], [1, 1], 2) == pytest.approx((1 - 3 / 6 + 1.0) / 2)


def _s(item, j, length, finish="eos", ter="marker", step=5):
    return {"item_index": item, "sample_index": j, "num_tokens": length, "finish_reason": finish,
            "think_end_reason": ter, "think_end_step": step}


def _g(item, j, correct, extracted=None, status=None):
    return {"item_index": item, "sample_index": j, "correct": correct, "extracted": extracted,
            "status": status or ("passed" if correct else "failed")}


# item 0: 3/4 correct, lengths 10 20 30 40 -> mean 25
# item 1: 0/4 correct, lengths 100 x4 (one truncated, one no-answer) -> mean 100
# item 2: 1/4 correct, lengths 1 2 3 6 -> mean 3
SAMPLES = (
    [_s(0, j, L) for j, L in enumerate([10, 20, 30, 40])]
    + [_s(1, 0, 100, finish="length", ter=None, step=None), _s(1, 1, 100), _s(1, 2, 100, ter="cold_stop"),
       _s(1, 3, 100, finish="abort")]
    + [_s(2, j, L) for j, L in enumerate([1, 2, 3, 6])]
)
GRADES = (
    [_g(0, 0, True, "5"), _g(0, 1, True, "5"), _g(0, 2, False, "7"), _g(0, 3, True, "5")]
    + [_g(1, 0, False, None, "no_answer"), _g(1, 1, False, "3"), _g(1, 2, None, None, "timeout"), _g(1, 3, False, "4")]
    + [_g(2, 0, False, "9"), _g(2, 1, False, "9"), _g(2, 2, True, "1"), _g(2, 3, False, "8")]
)


def test_summarize_hand_computed():
    s = metrics.summarize(SAMPLES, GRADES, n_resamples=200, seed=1)
    assert s["n_items"] == 3 and s["n_samples"] == 12 and s["n"] == 4
    assert s["pass@1"] == pytest.approx((0.75 + 0 + 0.25) / 3)
    assert s["len_all"] == pytest.approx((25 + 100 + 3) / 3)
    # Len-Correct: items with c>0 are 0 and 2; mean of ALL their samples' lengths
    assert s["len_correct"] == pytest.approx((25 + 3) / 2)
    # Len-CorrectSamples: mean over the 4 correct samples 10, 20, 40, 3
    assert s["len_correct_samples"] == pytest.approx((10 + 20 + 40 + 3) / 4)
    # pass@2: item0 c=3 -> 1.0; item1 -> 0; item2 c=1 -> 1 - (3/4)(2/3)... = 1 - C(3,2)/C(4,2) = 0.5
    assert s["pass@k"]["2"] == pytest.approx((1.0 + 0 + 0.5) / 3)
    assert s["pass@k"]["4"] == pytest.approx((1 + 0 + 1) / 3)
    # maj@4: item0 "5" (correct); item1 "3" vs "4" tie -> lowest sample index "3" (wrong); item2 "9" (wrong)
    assert s["maj@n"] == pytest.approx(1 / 3)
    assert s["truncation_rate"] == pytest.approx(1 / 12)
    assert s["thinking_unfinished_rate"] == pytest.approx(1 / 12)
    assert s["cold_stop_rate"] == pytest.approx(1 / 12)
    assert s["answer_abort_rate"] == pytest.approx(1 / 12)
    assert s["no_answer_rate"] == pytest.approx(1 / 12)
    assert s["timeouts"] == 1 and s["ungraded"] == 1
    assert sum(s["status_counts"].values()) == 12
    lo, hi = s["pass@1_ci95"]
    assert 0 <= lo <= s["pass@1"] <= hi <= 1
    assert s["pass@1_std"] > 0
    assert "acc_judge" not in s


def test_maj_tie_goes_to_lowest_sample_index():
    samples = [_s(0, j, 1) for j in range(4)]
    grades = [_g(0, 0, False, "a"), _g(0, 1, True, "b"), _g(0, 2, True, "b"), _g(0, 3, False, "a")]
    assert metrics.summarize(samples, grades, n_resamples=2)["maj@n"] == 0.0  # "a" first at index 0
    grades[0] = _g(0, 0, False, None, "no_answer")  # now "b" has 2 votes, "a" 1
    assert metrics.summarize(samples, grades, n_resamples=2)["maj@n"] == 1.0


def test_len_correct_n1_is_mean_of_correct_samples():
    samples = [_s(i, 0, L) for i, L in enumerate([10, 20, 30])]
    grades = [_g(0, 0, True), _g(1, 0, False), _g(2, 0, True)]
    s = metrics.summarize(samples, grades, n_resamples=10)
    assert s["len_correct"] == pytest.approx(20.0)
    assert s["len_correct"] == s["len_correct_samples"]
    assert s["pass@k"] == {"1": pytest.approx(2 / 3)}


def test_missing_grade_counts_as_ungraded_wrong():
    samples = [_s(0, 0, 5), _s(1, 0, 5)]
    s = metrics.summarize(samples, [_g(0, 0, True)], n_resamples=10)
    assert s["pass@1"] == 0.5 and s["ungraded"] == 1 and s["status_counts"]["ungraded"] == 1


def test_duplicates_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        metrics.summarize([_s(0, 0, 1), _s(0, 0, 2)], [])


def test_bootstrap_reproducible_and_seed_sensitive():
    a = metrics.summarize(SAMPLES, GRADES, n_resamples=300, seed=7)
    b = metrics.summarize(SAMPLES, GRADES, n_resamples=300, seed=7)
    c = metrics.summarize(SAMPLES, GRADES, n_resamples=300, seed=8)
    assert a["pass@1_ci95"] == b["pass@1_ci95"] and a["len_all_std"] == b["len_all_std"]
    assert (a["pass@1_std"], a["len_all_std"]) != (c["pass@1_std"], c["len_all_std"])


def test_bootstrap_std_close_to_analytic():
    # 200 items, half solved: std of the item mean ~ sqrt(0.25/200)
    samples = [_s(i, 0, 1) for i in range(200)]
    grades = [_g(i, 0, i % 2 == 0) for i in range(200)]
    s = metrics.summarize(samples, grades, n_resamples=1000, seed=0)
    assert s["pass@1_std"] == pytest.approx(math.sqrt(0.25 / 200), rel=0.15)
    assert s["pass@1_ci95"][0] < 0.5 < s["pass@1_ci95"][1]


def test_judge_column_is_rule_or_judge_and_failures_counted():
    samples = [_s(i, 0, 1) for i in range(4)]
    grades = [_g(0, 0, True), _g(1, 0, False), _g(2, 0, False), _g(3, 0, False)]
    grades[0]["judge"] = {"correct": None, "status": "skipped_rule_correct"}
    grades[1]["judge"] = {"correct": True, "status": "yes"}
    grades[2]["judge"] = {"correct": None, "status": "judge_unparsable"}
    grades[3]["judge"] = {"correct": None, "status": "judge_error"}
    s = metrics.summarize(samples, grades, n_resamples=10)
    assert s["pass@1"] == 0.25
    assert s["acc_judge"] == 0.5
    assert s["judge_failures"] == 2


def test_token_change():
    assert metrics.token_change_pct(80, 100) == pytest.approx(-20.0)
    assert math.isnan(metrics.token_change_pct(80, 0))


def test_thinking_unfinished_uses_engine_flag_or_marker_in_text():
    samples = [_s(0, 0, 5, ter=None), _s(0, 1, 5, ter=None), _s(0, 2, 5, ter="cold_stop"), _s(0, 3, 5)]
    samples[1]["text"] = "thought</think>answer"  # an engine that tracks the marker only for soft methods
    s = metrics.summarize(samples, [], n_resamples=2)
    assert s["thinking_unfinished_rate"] == pytest.approx(1 / 4)
    assert s["cold_stop_rate"] == pytest.approx(1 / 4)
    assert math.isnan(metrics.summarize(samples, [], n_resamples=2, thinking=False)["thinking_unfinished_rate"])
