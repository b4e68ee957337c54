"""The per-step core against docs/design/algorithm.md §10, on synthetic logits."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from softthink import core
from softthink.config import GenerationConfig

V = 50


def params(cfg: dict | None = None, batch: int = 1, marker=(7,)) -> core.Params:
    return core.Params.from_config(GenerationConfig.from_dict(cfg or {}), batch, list(marker))


def run(logits_rows, cfg=None, marker=(7,), state=None, steps_state=True):
    """Feed one row a scripted sequence of logits; return the StepOuts."""
    c = GenerationConfig.from_dict(cfg or {})
    prm = core.Params.from_config(c, 1, list(marker))
    st = state or core.State.new(1, len(marker))
    width, kw = core.static_widths(c, V)
    outs = []
    for z in logits_rows:
        keys = core.row_keys(prm.seed, torch.tensor([0]), st.step)
        o, st = core.step(z[None], st, prm, keys, width=width, concept_width=kw, dirichlet=c.noise.kind == "dirichlet")
        outs.append(o)
    return outs, st


def peaked(top: int, margin: float = 20.0) -> torch.Tensor:
    """Logits whose argmax is `top` with near-zero entropy."""
    z = torch.zeros(V)
    z[top] = margin
    return z


def flat(top: int) -> torch.Tensor:
    """High-entropy logits with a slight preference for `top`."""
    z = torch.linspace(0, 0.5, V)[torch.randperm(V, generator=torch.Generator().manual_seed(top))]
    z[top] = 1.0
    return z


# --- filters and entropy ---------------------------------------------------------------------------------------


def test_filters_keep_what_the_spec_says():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, V, generator=g) * 2
    p = torch.softmax(z, -1)
    vals, idx = torch.sort(p, descending=True)
    for k, tp, mp in itertools.product([1, 3, 10, -1], [0.3, 0.9, 1.0], [0.0, 0.05, 0.5]):
        kk = torch.full((4,), k)
        seq = filter_sorted(vals, kk, tp, mp, True)
        joint = filter_sorted(vals, kk, tp, mp, False)
        for r in range(4):
            v = vals[r]
            n_k = V if k == -1 else k
            topk = v[:n_k] / v[:n_k].sum()
            # minimal prefix whose cumulative mass reaches top_p, on the top-k-renormalised distribution
            n_p = int((torch.cumsum(topk, 0) - topk < tp).sum())
            n_m = int((v >= mp * v[0]).sum())
            expected = min(n_k, n_p, n_m)
            assert int(seq[r].sum()) == expected
            assert seq[r][:expected].all()  # a prefix
            assert bool((seq[r] <= joint[r]).all())  # sequential kept set is a subset of the joint one


def filter_sorted(vals, k, tp, mp, sequential):
    b = vals.shape[0]
    return core.filter_sorted(vals, k, torch.full((b,), tp), torch.full((b,), mp), torch.full((b,), sequential))


def test_entropy_placement_and_range():
    z = torch.randn(3, V, generator=torch.Generator().manual_seed(1))
    h1 = core.entropy(z, torch.full((3,), 1.0))
    h2 = core.entropy(z, torch.full((3,), 0.5))
    assert not torch.allclose(h1, h2)  # depends on T
    assert (h1 >= 0).all() and (h1 <= math.log(V) + 1e-5).all()
    assert core.entropy(torch.zeros(1, V), torch.ones(1)).item() == pytest.approx(math.log(V), rel=1e-5)
    assert core.entropy(peaked(3, 60.0)[None], torch.ones(1)).item() < 1e-6
    # H never depends on the filters or K: same logits, different filter settings, same entropy in the step
    a, _ = run([z[0]], {"think": {"top_k": 2, "top_p": 0.5, "min_p": 0.3, "max_topk": 1}})
    b, _ = run([z[0]], {"think": {"top_k": 40, "top_p": 1.0, "min_p": 0.0, "max_topk": 9}})
    assert a[0].entropy.item() == b[0].entropy.item()


# --- concept token -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_concept_shape_and_visible_token(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(V, generator=g) * 3
    for k, tp, mp, kk in [(30, 0.95, 0.001, 10), (5, 1.0, 0.0, 10), (-1, 0.8, 0.0, 3), (30, 0.95, 0.2, 15)]:
        cfg = {"think": {"top_k": k, "top_p": tp, "min_p": mp, "max_topk": kk}}
        (o,), _ = run([z], cfg)
        w, ids = o.in_w[0], o.in_ids[0]
        nz = int((w > 0).sum())
        assert (w >= 0).all() and bool((w[:-1] >= w[1:]).all())
        assert abs(w.sum().item() - 1) < 1e-6
        assert nz <= min(kk, V if k == -1 else k)
        assert len(set(ids[:nz].tolist())) == nz
        assert o.token.item() == ids[0].item() == int(torch.argmax(z))  # visible token = argmax (S7)


def test_k1_concept_is_one_hot_argmax():
    z = torch.randn(V, generator=torch.Generator().manual_seed(3))
    (o,), _ = run([z], {"think": {"max_topk": 1}})
    assert o.in_w[0, 0].item() == 1.0 and o.in_ids[0, 0].item() == int(torch.argmax(z))


def test_mixture_linearity_and_sharding():
    g = torch.Generator().manual_seed(4)
    emb = torch.randn(V, 16, generator=g, dtype=torch.float64)
    ids = torch.tensor([[3, 9, 1, 0]])
    w = torch.tensor([[0.5, 0.3, 0.2, 0.0]], dtype=torch.float64)
    mixed = core.mix_embeddings(emb, ids, w)
    dense = torch.zeros(1, V, dtype=torch.float64).scatter_add_(1, ids, w) @ emb
    assert torch.allclose(mixed, dense, rtol=1e-12)
    # vocabulary-sharded sum (tensor parallel emulation) equals the unsharded one
    shards = [(0, 20), (20, 35), (35, V)]
    total = sum(core.mix_embeddings(emb, ids, torch.where((ids >= a) & (ids < b), w, torch.zeros_like(w)))
                for a, b in shards)
    assert torch.allclose(total, mixed, rtol=1e-12)
    # one-hot weights give the embedding row bit for bit, in bf16 too
    e16 = emb.to(torch.bfloat16)
    onehot = core.mix_embeddings(e16, torch.tensor([[5, 2]]), torch.tensor([[1.0, 0.0]]))
    assert torch.equal(onehot[0], e16[5])


# --- Cold Stop and think end ----------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [1, 3, 5])
def test_cold_stop_fires_after_exactly_L_low_entropy_steps(L):
    tau = 0.01
    # high, low, low, high (reset), then L low steps: the marker replaces exactly the L-th of them
    seq = [flat(1), peaked(2), peaked(3), flat(4)] + [peaked(10 + i) for i in range(L)] + [peaked(30)]
    if L <= 2:  # with L <= 2 the first low run already fires; script only the reset part then
        seq = [flat(1)] + [peaked(10 + i) for i in range(L)] + [peaked(30)]
    outs, st = run(seq, {"cold_stop": {"threshold": tau, "length": L}})
    fired = [o.cold.item() for o in outs]
    first = fired.index(True)
    assert fired.count(True) == 1
    assert outs[first].token.item() == 7  # replaced by the marker
    assert outs[first].ended.item()
    low = [o.entropy.item() < tau for o in outs]
    assert all(low[first - L + 1: first + 1]) and not low[first - L]  # exactly L consecutive lows end there
    assert all(o.token.item() == int(torch.argmax(z)) for o, z in zip(outs[:first], seq[:first]))  # nothing earlier
    assert not outs[first + 1].was_think.item()  # ANSWER immediately after


def test_cold_stop_entropy_equal_to_threshold_is_not_low_and_tau0_never_fires():
    z = peaked(2, 8.0)
    h = core.entropy(z[None], torch.full((1,), 0.6)).item()
    outs, _ = run([z] * 6, {"cold_stop": {"threshold": h, "length": 2}})
    assert not any(o.cold.item() for o in outs)
    outs, _ = run([peaked(2)] * 6, {"cold_stop": {"threshold": 0.0, "length": 1}})
    assert not any(o.cold.item() for o in outs)


def test_think_end_only_as_argmax():
    z = torch.zeros(V)
    z[3], z[7] = 5.0, 4.9  # the marker 7 at rank 2 with a large weight
    outs, st = run([z] * 5)
    assert not any(o.ended.item() for o in outs) and st.think.item()
    assert all(7 in o.in_ids[0].tolist() for o in outs)  # it still contributes to the mixture
    z2 = z.clone()
    z2[7] = 5.1  # rank 1
    outs, st = run([z, z2, z])
    assert [o.ended.item() for o in outs] == [False, True, False]
    assert outs[1].in_w[0, 0].item() == 1.0 and outs[1].in_ids[0, 0].item() == 7  # next input E[theta]
    assert not st.think.item() and not outs[2].was_think.item()  # no re-entry; ANSWER inputs are one-hot
    assert outs[2].in_w[0, 0].item() == 1.0


def test_multi_token_marker_and_budget():
    marker = (7, 8, 9)
    seq = [flat(i) for i in range(1, 8)]
    outs, st = run(seq, {"think": {"budget": 3}}, marker=marker)
    toks = [o.token.item() for o in outs]
    assert toks[2:5] == [7, 8, 9]  # forced at the 3rd THINK token, then the rest of the marker
    assert [o.budget_hit.item() for o in outs].count(True) == 1 and outs[2].budget_hit.item()
    assert [o.ended.item() for o in outs] == [False, False, False, False, True, False, False]
    # forced steps feed one-hot inputs; thinking before them feeds concepts
    assert outs[1].in_w[0, 1].item() > 0 and outs[2].in_w[0, 0].item() == 1.0 and outs[3].in_w[0, 0].item() == 1.0
    # a marker the model writes itself (argmax tokens) ends thinking too
    outs, st = run([peaked(7), peaked(8), peaked(9), peaked(1)], marker=marker)
    assert [o.ended.item() for o in outs] == [False, False, True, False]


def test_answer_phase_abort_official_timing():
    cfg = {"preset": "official_head", "cold_stop": {"threshold": 0.01, "length": 2}}
    seq = [peaked(7), peaked(1), peaked(2), peaked(3), peaked(4)]  # think ends at step 1, then low entropy
    outs, _ = run(seq, cfg)
    assert outs[0].ended.item()
    assert [o.abort_now.item() for o in outs] == [False, False, True, False, False]
    assert [o.abort_finish.item() for o in outs] == [False, False, False, True, True]  # finish after step t+1
    outs, _ = run(seq, {"cold_stop": {"threshold": 0.01, "length": 2}})  # corrected preset: off
    assert not any(o.abort_now.item() or o.abort_finish.item() for o in outs)


def test_answer_modes():
    z = torch.randn(V, generator=torch.Generator().manual_seed(9))
    seq = [peaked(7)] + [z] * 30
    greedy, _ = run(seq, {"answer": {"mode": "greedy_argmax"}})
    assert all(o.token.item() == int(torch.argmax(z)) for o in greedy[1:])
    cold, _ = run(seq, {"answer": {"mode": "sample", "temperature_source": "answer", "temperature": 0.0}})
    assert all(o.token.item() == int(torch.argmax(z)) for o in cold[1:])
    hot, _ = run(seq, {"answer": {"mode": "sample", "temperature_source": "answer", "temperature": 1.5,
                                  "top_k": -1, "top_p": 1.0}})
    assert len({o.token.item() for o in hot[1:]}) > 3
    # temperature_source=thinking: T_a changes nothing except the T_a < 1e-6 greedy case
    a, _ = run(seq, {"answer": {"temperature_source": "thinking", "temperature": 0.3}})
    b, _ = run(seq, {"answer": {"temperature_source": "thinking", "temperature": 1.7}})
    assert [o.token.item() for o in a] == [o.token.item() for o in b]
    # answer-phase filters never change a THINK step
    think_seq = [z] * 5
    a, _ = run(think_seq, {"answer": {"top_k": 1}})
    b, _ = run(think_seq, {"answer": {"top_k": 40, "min_p": 0.5}})
    assert all(torch.equal(x.in_w, y.in_w) and torch.equal(x.in_ids, y.in_ids) for x, y in zip(a, b))


# --- noise ------------------------------------------------------------------------------------------------------


def test_gumbel_is_a_permutation_and_samples_the_weights():
    w = torch.tensor([[0.5, 0.3, 0.15, 0.05, 0.0]]).repeat(20000, 1)
    ids = torch.arange(5).repeat(20000, 1)
    keys = core.row_keys(torch.zeros(20000, dtype=torch.long), torch.arange(20000), torch.zeros(20000, dtype=torch.long))
    w2, ids2 = core.gumbel_perturb(w, ids, torch.full((20000,), 0.5), core.counter_uniform(keys, 5, 2))
    assert torch.equal(ids2.sort(-1).values, ids)  # a permutation
    assert bool(((w2 > 0) == (w > 0).gather(1, ids2)).all())  # zero weights stay zero
    freq = torch.bincount(ids2[:, 0], minlength=5).double() / 20000
    expected = w[0].double()
    chi2 = (20000 * (freq[:4] - expected[:4]) ** 2 / expected[:4]).sum().item()
    assert chi2 < 16.3  # chi-square, 3 dof, p > 1e-3
    assert freq[4].item() == 0


def test_dirichlet_stays_on_support_and_concentrates():
    p = torch.tensor([[0.6, 0.25, 0.1, 0.05, 0.0, 0.0]]).repeat(64, 1)
    keys = core.row_keys(torch.zeros(64, dtype=torch.long), torch.arange(64), torch.zeros(64, dtype=torch.long))
    q = core.dirichlet_perturb(p, torch.full((64,), 1e8), keys)
    assert (q[:, 4:] == 0).all()
    assert (q - p).abs().max().item() < 1e-3
    noisy = core.dirichlet_perturb(p, torch.full((64,), 1.0), keys)
    assert (noisy[:, 4:] == 0).all() and torch.allclose(noisy.sum(-1), torch.ones(64))
    assert noisy.std(0)[0].item() > 0.05  # alpha = 1 is very noisy
    assert torch.allclose(noisy.mean(0)[:4], p[0, :4], atol=0.1)  # and unbiased


def test_counter_rng_is_batch_invariant():
    keys = core.row_keys(torch.full((4,), 5), torch.tensor([10, 11, 12, 13]), torch.full((4,), 3))
    alone = core.row_keys(torch.full((1,), 5), torch.tensor([12]), torch.full((1,), 3))
    assert keys[2] == alone[0]
    u = core.counter_uniform(keys, 8, 1)
    assert torch.equal(u[2], core.counter_uniform(alone, 8, 1)[0])
    assert len(set(u.flatten().tolist())) == 32 and (u > 0).all() and (u < 1).all()
