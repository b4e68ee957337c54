"""The SGLang plugin's guards, with stand-ins for SGLang's request objects (no SGLang needed): a bad request is
finished with its own error and never raises into the scheduler; freed rows are skipped; n > 1 copies get their
own RNG keys; penalties are refused for soft requests; Driver B's records are JSON and its request map is pruned."""
from __future__ import annotations

import gc
import json
import types

import pytest
import torch

from softthink.config import GenerationConfig
from softthink.sglang_glue import plugin, processor as P
from softthink.sglang_glue import tables as T
from softthink.sglang_glue.driver import soft_custom_params

V = 64


class FakeReq:
    """What the processor reads of SGLang's `Req` (0.5.23 field names)."""

    def __init__(self, rid, row, n=1, **sp):
        self.rid = rid
        self.kv = types.SimpleNamespace(req_pool_idx=row)
        self.output_ids, self.retraction_count = [], 0
        self.sampling_params = types.SimpleNamespace(n=n, **sp)
        self.aborted = None
        self.custom = None

    def set_finish_with_abort(self, msg):
        self.aborted = msg

    def finished(self):
        return self.aborted is not None


@pytest.fixture
def tables():
    tb = T.publish(T.SoftStateTables(16, 4))
    tb.vocab = V
    getattr(P, "_COPIES", {}).clear()
    yield tb
    T.unpublish()


def _params(req, cfg=None, uid=0, **over):
    cfg = GenerationConfig.from_dict(cfg or {"method": "soft", "think": {"max_topk": 4}})
    p = soft_custom_params(cfg, [50], [2], uid=uid) | over
    p["__req__"] = req
    return p


def test_a_freed_row_is_not_soft_and_nothing_raises(tables):
    """Delayed sampling after an EOS finish: the request's row is already freed (req_pool_idx None)."""
    live, freed = FakeReq("a", 3), FakeReq("b", None)
    tables.reset_rows(torch.tensor([3]))
    logits = torch.randn(2, V)
    out = P.SoftThinkingLogitProcessor()(logits.clone(), [_params(live), _params(freed, uid=1)])
    assert torch.isinf(out[0]).sum() == V - 1  # the live soft row is forced
    assert torch.equal(out[1], logits[1])  # the freed row is left alone
    assert freed.aborted is None and int(tables.step[3]) == 1


@pytest.mark.parametrize("bad,words", [
    ({"cfg": {"method": "soft", "think": {"max_topk": 9}}}, "SOFTTHINK_SGLANG_KMAX=4"),
    ({"st_marker": list(range(20))}, "SOFTTHINK_SGLANG_MARKER_MAX"),
    ({"st_cfg": '{"think": {"max_topk": "ten"}}'}, "think.max_topk"),
    ({"st_cfg": "{not json"}, "softthink plugin error"),
    ({"st_answer": "sideways"}, "st_answer"),
    ({"sp": {"frequency_penalty": 0.5}}, "frequency_penalty"),
    ({"sp": {"logit_bias": {"3": 1.0}}}, "logit_bias"),
    ({"sp": {"regex": "a+"}}, "regex"),
    ({"sp": {"beam_width": 4}}, "beam_width"),
])
def test_a_bad_request_is_finished_with_its_own_error(tables, bad, words):
    good, badreq = FakeReq("g", 2), FakeReq("x", 5, **bad.get("sp", {}))
    tables.reset_rows(torch.tensor([2, 5]))
    over = {k: v for k, v in bad.items() if k.startswith("st_")}
    pb = _params(badreq, bad.get("cfg"), uid=1, **over)
    logits = torch.randn(2, V)
    out = P.SoftThinkingLogitProcessor()(logits.clone(), [_params(good), pb])  # must not raise
    assert badreq.aborted and words in badreq.aborted, badreq.aborted
    assert torch.equal(out[1], logits[1]) and good.aborted is None
    assert torch.isinf(out[0]).sum() == V - 1
    out = P.SoftThinkingLogitProcessor()(logits.clone(), [_params(good), pb])  # refused once, plain afterwards
    assert torch.equal(out[1], logits[1])


def test_no_tables_is_an_error_for_the_request_not_plain_decoding():
    T.unpublish()
    req = FakeReq("r", 2)
    logits = torch.randn(1, V)
    out = P.SoftThinkingLogitProcessor()(logits.clone(), [_params(req)])
    assert torch.equal(out, logits) and "no soft-thinking state tables" in req.aborted


def test_a_failing_driver_step_aborts_its_requests_and_returns(tables, monkeypatch):
    monkeypatch.setattr("softthink.sglang_glue.driver.driver_step", lambda *a, **k: 1 / 0)
    req = FakeReq("r", 2)
    logits = torch.randn(1, V)
    assert torch.equal(P.SoftThinkingLogitProcessor()(logits.clone(), [_params(req)]), logits)
    assert "ZeroDivisionError" in req.aborted


def test_n_copies_get_their_own_keys(tables):
    cfg = {"method": "soft", "think": {"max_topk": 4}, "noise": {"kind": "gumbel", "rng": "counter"}}
    reqs = [FakeReq(f"c{i}", 2 + i, n=3) for i in range(3)]
    specs = [P.admit(_params(r, cfg, uid=7), r, tables) for r in reqs]
    assert [s.uid for s in specs] == [7, 8, 9]
    again = FakeReq("d0", 6, n=3)  # a new expansion of the same request starts at the uid again
    assert P.admit(_params(again, cfg, uid=7), again, tables).uid == 7
    single = FakeReq("s", 9)
    assert P.admit(_params(single, cfg, uid=7), single, tables).uid == 7


def test_driver_b_records_are_host_lists_that_serialise():
    step = types.SimpleNamespace(in_ids=torch.tensor([[5, 7], [1, 0]]), in_w=torch.tensor([[0.75, 0.25], [1.0, 0.0]]),
                                 entropy=torch.tensor([0.5, 0.0]))
    rec = plugin.host_records(step)
    rows = [{k: v[i] for k, v in rec.items()} for i in range(2)]
    assert json.loads(json.dumps(rows)) == [{"st_ids": [5, 7], "st_w": [0.75, 0.25], "st_H": 0.5},
                                            {"st_ids": [1, 0], "st_w": [1.0, 0.0], "st_H": 0.0}]


def test_driver_b_request_map_is_pruned(monkeypatch):
    monkeypatch.setattr(plugin, "_REQS", {})
    monkeypatch.setitem(plugin._STATE, "inserts", 0)
    kept = []
    for i in range(3 * plugin._PRUNE_EVERY):
        r = FakeReq(f"r{i}", 1)
        plugin._remember(r)
        if i % 100 == 0:
            kept.append(r)
        del r
        gc.collect(0)
    assert len(plugin._REQS) <= plugin._PRUNE_EVERY + len(kept)
    assert all(r.rid in plugin._REQS for r in kept[:-1])


def test_sglang_engine_checks_widths_before_sending():
    """The offline engine knows its own --kmax: a too-wide request is refused on the client side."""
    from softthink.models import load_tokenizer
    from softthink.sglang_glue.driver import PluginRequestError
    from softthink.sglang_glue.launch import LaunchOptions, SGLangEngine

    eng = SGLangEngine.__new__(SGLangEngine)  # no server: request building only
    eng.options, eng.tokenizer = LaunchOptions(model_path="x", device="cpu", kmax=8), load_tokenizer("tiny-random-qwen2")
    fits = GenerationConfig.from_dict({"method": "soft", "think": {"max_topk": 8}})
    assert "custom_logit_processor" in eng.request(fits, 1)
    with pytest.raises(PluginRequestError, match="SOFTTHINK_SGLANG_KMAX=8"):
        eng.request(GenerationConfig.from_dict({"method": "soft", "think": {"max_topk": 9}}), 1)
