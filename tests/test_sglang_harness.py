"""CPU simulation harness for the SGLang plugin (docs/design/sglang-plugin.md §13), no SGLang needed.

The plugin's own pieces run exactly as SGLang drives them: the state tables (`tables.py`), the decode mixing of the
model subclass (`SoftStateTables.mix` over the batch's `req_pool_indices`, padded with row 0 to a "captured" batch
size), the extend reset, and Driver A (`SoftThinkingLogitProcessor`, deserialised per batch, called only on the
rows that carry it, with `custom_params` + a `__req__` stand-in) or Driver B (`plugin.soft_sample` around a stand-in
`ModelRunner.sample`). Underneath is a transformers forward with one KV cache per request.

The emulated scheduler (seeded): a row pool with row 0 reserved and LIFO reuse of freed rows; random arrivals and
batch caps; chunked prefill (intermediate chunks run forward + driver, their token is discarded); the overlap
scheduler's one-step lag (the host learns a finish one step late; the finished request runs one extra
forward/driver step whose token is discarded); finish by EOS, length, stop string and client cancel (also in the
middle of THINK); SGLang's finish-check order (stop string, then EOS, then length).

Oracle: each request run alone in `HFEngine` with the same resolved configuration. Expected differences, by design
(docs/sglang.md): the answer-phase abort ends with a forced EOS instead of the reference's extra token, and an EOS
argmax replaced by a forced marker is emitted as that EOS.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pytest
import torch

from softthink.config import GenerationConfig
from softthink.engine import HFEngine, eos_ids, marker_ids
from softthink.models import load_model
from softthink.sglang_glue import driver as D
from softthink.sglang_glue import plugin as PL
from softthink.sglang_glue import tables as T
from softthink.sglang_glue.launch import build_request, think_stats
from softthink.sglang_glue.processor import SoftThinkingLogitProcessor


# ---------------------------------------------------------------------------------------------- stand-ins
@dataclass
class FakeKV:
    req_pool_idx: Optional[int] = None


@dataclass
class FakeReq:  # the attributes of sglang's Req the plugin reads
    rid: str
    origin_input_ids: List[int]
    output_ids: List[int] = field(default_factory=list)
    kv: FakeKV = field(default_factory=FakeKV)
    retraction_count: int = 0


class FakeMode:
    def __init__(self, kind):
        self.kind = kind

    def is_decode(self):
        return self.kind == "decode"

    def is_extend(self):
        return self.kind == "extend"


@dataclass
class FakeLogitsOutput:
    next_token_logits: torch.Tensor
    customized_info: Optional[dict] = None


@dataclass
class FakeForwardBatch:
    forward_mode: FakeMode
    req_pool_indices: torch.Tensor
    rids: List[str]


@dataclass
class SimReq:
    rid: str
    prompt: List[int]
    cfg: GenerationConfig
    uid: int
    request: dict  # build_request(...) output
    cancel_after: Optional[int] = None  # client cancel once this many tokens are known on the host
    retract_after: Optional[int] = None  # retract (free KV + row, re-prefill prompt + output_ids) after this many
    arrival: int = 0
    # runtime
    state: str = "waiting"  # waiting | prefilling | running | done
    row: Optional[int] = None
    chunks: List[int] = field(default_factory=list)
    prefilled: int = 0
    cache: object = None
    pos: int = 0
    last_token: Optional[int] = None  # the "GPU future map" value: the last sampled token
    host_finished: bool = False
    finish_reason: Optional[str] = None
    params: Optional[dict] = None  # the per-request custom_params dict (+ "__req__")
    fill: List[int] = field(default_factory=list)  # what the (re-)prefill feeds
    fake: Optional[FakeReq] = None
    records: List[dict] = field(default_factory=list)
    rows_used: List[int] = field(default_factory=list)
    extra_steps: int = 0


# ---------------------------------------------------------------------------------------------- the simulator
class SimServer:
    def __init__(self, model, tok, *, rows=6, kmax=12, marker_max=8, captured=(1, 2, 4, 8), max_bs=4,
                 overlap=True, chunk_max=None, seed=0, driver="A", mix_dtype="model", p_admit=0.5):
        self.model, self.tok = model, tok
        self.weight = model.get_input_embeddings().weight
        self.base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        self.head = model.get_output_embeddings()
        self.vocab = model.config.vocab_size
        self.eos = eos_ids(model, tok)
        self.tables = T.publish(T.SoftStateTables(rows + 1, kmax, marker_max=marker_max, mix_dtype=mix_dtype))
        self.pristine_row0 = {k: v[0].clone() for k, v in self.tables._fields.items()}
        self.free = list(range(1, rows + 1))[::-1]  # LIFO: pop() from the end, freed rows appended
        self.captured = sorted(captured)
        self.max_bs, self.overlap, self.chunk_max, self.driver = max_bs, overlap, chunk_max, driver
        self.rng = random.Random(seed)
        self.p_admit = p_admit
        self.clock = 0
        self.reqs: List[SimReq] = []
        self.rows_seen: List[int] = []
        self.reuse_events = 0
        self._row_owner: Dict[int, str] = {}
        import inspect

        self._cache_kw = "cache" if "cache" in inspect.signature(self.base.forward).parameters else "past_key_values"
        D.set_observer(self._observe)
        self._obs = []

    def close(self):
        D.set_observer(None)
        T.unpublish()

    # -- requests --------------------------------------------------------------------------------------------------
    def add(self, rid, prompt, cfg, uid, cancel_after=None, arrival=0, driver_answer="driver", retract_after=None):
        req = build_request(cfg, marker_ids(self.tok, cfg.think.end_str), self.eos, uid, driver=self.driver,
                            answer=driver_answer)
        self.reqs.append(SimReq(rid, list(prompt), cfg, uid, req, cancel_after=cancel_after, arrival=arrival,
                                retract_after=retract_after))

    # -- model -----------------------------------------------------------------------------------------------------
    def _forward(self, req: SimReq, embeds: torch.Tensor) -> torch.Tensor:
        from softthink.engine import _new_cache

        if req.cache is None:
            req.cache = _new_cache(self.model)
        n = embeds.shape[0]
        pos = torch.arange(req.pos, req.pos + n)[None]
        mask = torch.ones((1, req.pos + n), dtype=torch.long)
        h = self.base(inputs_embeds=embeds[None], attention_mask=mask, position_ids=pos, use_cache=True,
                      **{self._cache_kw: req.cache}).last_hidden_state[:, -1]
        req.pos += n
        return self.head(h).float()[:, : self.vocab][0]

    # -- sampling (driver + native sampler) -----------------------------------------------------------------------
    def _observe(self, rows, specs, out):
        self._obs.append((rows.tolist(), out))

    def _sample(self, batch: List[SimReq], logits: torch.Tensor, mode: str) -> List[int]:
        logits = logits.clone()
        self._obs = []
        soft_idx = [i for i, r in enumerate(batch) if "custom_params" in r.request["sampling_params"]]
        for i in soft_idx:
            self.rows_seen.append(batch[i].row)
        if self.driver == "A":
            if soft_idx:  # sglang: apply_custom_logit_processor on the rows carrying the processor
                proc = SoftThinkingLogitProcessor.from_str(batch[soft_idx[0]].request["custom_logit_processor"])
                sel = torch.tensor(soft_idx)
                sub = logits.index_select(0, sel)
                res = proc(sub, [batch[i].params for i in soft_idx])
                assert res.shape == sub.shape
                logits.index_copy_(0, sel, res.to(logits.dtype))
            return self._native(batch, logits).tolist()
        # Driver B: AROUND hook on a stand-in ModelRunner.sample
        fb = FakeForwardBatch(FakeMode(mode), torch.tensor([r.row for r in batch]), [r.rid for r in batch])
        lo = FakeLogitsOutput(logits)
        ids = PL.soft_sample(lambda runner, lo_, fb_: self._native(batch, lo_.next_token_logits), None, lo, fb)
        return ids.tolist()

    def _native(self, batch, logits):
        """SGLang's sampler for the requests' native params: all parity runs use greedy native params (answers
        by the driver, or greedy discrete baselines), so argmax."""
        for r in batch:
            assert r.request["sampling_params"]["temperature"] == 0.0 or "custom_params" in r.request["sampling_params"]
        return torch.argmax(logits, dim=-1)

    # -- scheduler -------------------------------------------------------------------------------------------------
    def _retract(self, req: SimReq):
        """ScheduleBatch.retract_decode: free KV and row; re-admission re-prefills prompt + output_ids as hard
        tokens (the soft history is lost, engine.on_retraction = replay_hard)."""
        self._free(req)
        req.cache, req.pos, req.prefilled = None, 0, 0
        req.fake.retraction_count += 1
        req.state = "waiting"
        req.retract_after = None

    def _admit(self, req: SimReq):
        row = self.free.pop()
        if row in self._row_owner:
            self.reuse_events += 1
        self._row_owner[row] = req.rid
        req.row = row
        req.rows_used.append(row)
        if req.fake is None:
            req.fake = FakeReq(req.rid, req.prompt)
        req.fake.kv.req_pool_idx = row
        sp = req.request["sampling_params"]
        if "custom_params" in sp and req.params is None:  # sglang: custom_params | {"__req__": weakref.proxy(req)}
            req.params = dict(sp["custom_params"]) | {"__req__": req.fake}
            if self.driver == "B":
                PL.on_req_init(None, _ReqView(req))
        # chunk plan (a re-admitted request re-prefills prompt + output_ids)
        req.fill = req.prompt + list(req.fake.output_ids)
        n = len(req.fill)
        sizes = []
        while n > 0:
            c = n if not self.chunk_max else min(n, self.rng.randint(1, self.chunk_max))
            sizes.append(c)
            n -= c
        req.chunks = sizes
        req.state = "prefilling"

    def _free(self, req: SimReq):
        if req.row is not None:
            self.free.append(req.row)
            req.row = None

    def schedule(self):
        waiting = [r for r in self.reqs if r.state == "waiting" and r.arrival <= self.clock]
        prefilling = [r for r in self.reqs if r.state == "prefilling"]
        running = [r for r in self.reqs if r.state == "running"]
        want_extend = prefilling or (waiting and self.free and (not running or self.rng.random() < self.p_admit))
        if want_extend:
            batch = prefilling[: self.max_bs]
            while waiting and self.free and len(batch) < self.max_bs:
                r = waiting.pop(0)
                self._admit(r)
                batch.append(r)
            if batch:
                return "extend", batch
        if running:
            self.rng.shuffle(running)
            return "decode", running[: self.max_bs]
        return None

    def launch(self, kind, batch):
        results = []
        rows = torch.tensor([r.row for r in batch])
        if kind == "extend":
            self.tables.reset_rows(rows)  # the model subclass: extend -> ownership hand-off
            logits, last = [], []
            for r in batch:
                c = r.chunks.pop(0)
                ids = torch.tensor(r.fill[r.prefilled: r.prefilled + c])
                r.prefilled += c
                logits.append(self._forward(r, self.weight[ids]))
                last.append(not r.chunks)
            toks = self._sample(batch, torch.stack(logits), "extend")
            obs = self._obs
            for i, r in enumerate(batch):
                if last[i]:
                    r.state = "running"
                    r.last_token = toks[i]
                results.append((r, toks[i], not last[i], self._record(r, obs)))
            return results
        # decode: padded to a captured size with row-0 entries; mixing = the model subclass's in-graph code
        n = len(batch)
        size = next((s for s in self.captured if s >= n), n)
        r_pad = torch.tensor([r.row for r in batch] + [0] * (size - n))
        ids_pad = torch.tensor([r.last_token for r in batch] + [0] * (size - n))
        emb = self.tables.mix(self.weight, r_pad, ids_pad)
        logits = torch.stack([self._forward(r, emb[i: i + 1]) for i, r in enumerate(batch)])
        toks = self._sample(batch, logits, "decode")
        obs = self._obs
        for i, r in enumerate(batch):
            r.last_token = toks[i]
            results.append((r, toks[i], False, self._record(r, obs)))
        return results

    def _record(self, req, obs):
        if not obs or req.params is None and self.driver == "A":
            return None
        for rows, out in obs:
            if req.row in rows and out.step is not None:
                i = rows.index(req.row)
                st = out.step
                return {"was_think": bool(st.was_think[i]), "cold": bool(st.cold[i]), "entropy": float(st.entropy[i]),
                        "ids": st.in_ids[i].tolist(), "w": st.in_w[i].tolist(), "token": int(out.token[i])}
        return None

    def process(self, results):
        for r, tok, discard, rec in results:
            if r.host_finished:  # the overlap lag: a step launched before the host saw the finish
                r.extra_steps += 1
                continue
            if discard:  # intermediate prefill chunk
                continue
            r.fake.output_ids.append(tok)
            r.records.append(rec)
            reason = self._check_finish(r)
            if reason is None and r.cancel_after is not None and len(r.fake.output_ids) >= r.cancel_after:
                reason = "abort"  # client cancel
            if reason is not None:
                r.host_finished = True
                r.finish_reason = reason
                r.state = "done"
                self._free(r)
            elif r.retract_after is not None and len(r.fake.output_ids) >= r.retract_after:
                assert not self.overlap, "the harness retracts only without the overlap scheduler"
                self._retract(r)

    def _check_finish(self, r: SimReq):
        """SGLang's order: stop string, then EOS / stop ids, then length."""
        out = r.fake.output_ids
        stops = list(r.cfg.stop)
        if stops:
            tail = self.tok.decode(out[-(4 * max(len(s) for s in stops) + 8):], skip_special_tokens=True)
            if any(s in tail for s in stops):
                return "stop"
        if out[-1] in self.eos:
            return "eos"
        if len(out) >= r.cfg.max_new_tokens:
            return "length"
        return None

    @torch.no_grad()
    def run(self, max_iters=100000):
        pending = None
        for _ in range(max_iters):
            self.clock += 1
            nxt = self.schedule()
            res = self.launch(*nxt) if nxt else None
            if self.overlap:
                if pending is not None:
                    self.process(pending)
                pending = res
            elif res is not None:
                self.process(res)
            if all(r.state == "done" for r in self.reqs) and pending is None:
                break
            if nxt is None and pending is None and not any(r.state == "waiting" for r in self.reqs):
                break
        else:
            raise AssertionError("simulation did not finish")
        return self.reqs


class _ReqView:
    """What `plugin.on_req_init` reads from a sglang Req."""

    def __init__(self, sim: SimReq):
        self.rid = sim.rid
        self.sampling_params = type("SP", (), {"custom_params": sim.params})()
        self.kv = sim.fake.kv
        self.output_ids = sim.fake.output_ids
        self.retraction_count = 0
        self.skip_radix_cache_insert = False
        sim._view = self  # keep the weakref target alive


# ---------------------------------------------------------------------------------------------- comparison
def expected_plugin_tokens(g, eos):
    """The reference output as the plugin must reproduce it (documented differences applied)."""
    toks, reason = list(g.token_ids), g.finish_reason
    if reason == "abort":  # answer-phase abort: forced EOS instead of the token after the flag
        toks[-1] = eos[0]
        reason = "eos"
    elif reason == "eos" and toks and toks[-1] not in eos:  # EOS argmax replaced by the forced marker
        toks[-1] = eos[0]
    return toks, reason


def compare(sim: SimServer, ref: Dict[str, object], check_concepts=True, tol=1e-6):
    marker_cache = {}
    for r in sim.reqs:
        g = ref[r.rid]
        exp, exp_reason = expected_plugin_tokens(g, sim.eos)
        got = r.fake.output_ids
        if r.finish_reason == "abort" and r.cancel_after is not None:  # client cancel: a prefix of the reference
            assert got == exp[: len(got)], f"{r.rid}: cancelled output is not a prefix of the reference"
            continue
        assert got == exp, f"{r.rid}: token mismatch at {_first_diff(got, exp)}\n got {got}\n ref {exp}"
        assert r.finish_reason == exp_reason, (r.rid, r.finish_reason, exp_reason)
        key = r.cfg.think.end_str
        marker = marker_cache.setdefault(key, marker_ids(sim.tok, key))
        if r.cfg.is_soft and g.finish_reason == "length":
            end_step, n_think = think_stats(got, marker, True)
            assert end_step == g.think_end_step, (r.rid, end_step, g.think_end_step)
            assert n_think == g.num_thinking_tokens
        if check_concepts and g.trace is not None and "custom_params" in r.request["sampling_params"]:
            n = len(got) - (1 if g.finish_reason == "abort" else 0)
            for t in range(n):
                rec, tr = r.records[t], g.trace
                assert rec is not None
                assert rec["was_think"] == (tr.phase[t] == "think"), (r.rid, t)
                assert rec["cold"] == tr.cold_stop[t], (r.rid, t)
                assert abs(rec["entropy"] - tr.entropy[t]) <= 1e-5 * max(1.0, abs(tr.entropy[t])), (r.rid, t)
                kw = len(tr.topk_ids[t])
                w_ref, w_got = tr.topk_weights[t], rec["w"][:kw]
                nz = [i for i, w in enumerate(w_ref) if w > 0]
                assert [rec["ids"][i] for i in nz] == [tr.topk_ids[t][i] for i in nz], (r.rid, t)
                assert all(abs(w_got[i] - w_ref[i]) <= tol for i in range(kw)), (r.rid, t)


def _first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def reference(model, tok, sim: SimServer):
    # the simulated server runs per-request dynamic caches with the reference's exact shapes; bitwise fp32 equality
    # needs the same cache on the reference side (the static cache pads attention to a window: same math, other rounding)
    eng = HFEngine(model, tok, progress=False, kv_cache="dynamic")
    out = {}
    for r in sim.reqs:
        cfg = r.cfg.replace(trace=True)
        out[r.rid] = eng.generate([r.prompt], cfg, sample_uids=[r.uid])[0]
    return out


def assert_row0_pristine(sim: SimServer):
    assert 0 not in sim.rows_seen, "a live request was driven on the padding row"
    for k, v in sim.tables._fields.items():
        if k == "fresh":
            continue
        assert torch.equal(v[0], sim.pristine_row0[k]), f"padding row 0 written ({k})"


# ---------------------------------------------------------------------------------------------- fixtures
def _load(spec, dtype):
    try:  # share the suite's session cache (tests/conftest.py) when present
        from conftest import model_and_tokenizer

        return model_and_tokenizer(spec, dtype)
    except ImportError:
        return load_model(spec, dtype=dtype)


@pytest.fixture(scope="module")
def qwen():
    return _load("tiny-random-qwen2", torch.float64)


@pytest.fixture(scope="module")
def llama():
    return _load("tiny-random-llama", torch.float64)


def _prompts(rng, n, vocab_lo=3, vocab_hi=250, lo=3, hi=14):
    return [[rng.randint(vocab_lo, vocab_hi) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def _soft_cfg(**over):
    base = {"method": "soft", "max_new_tokens": 24, "seed": 7, "think": {"max_topk": 5, "top_k": 20, "top_p": 0.9,
                                                                     "min_p": 0.01, "temperature": 0.7}}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return GenerationConfig.from_dict(base)


def _run(model_tok, cfgs, *, seed=0, driver="A", overlap=True, chunk_max=4, rows=4, max_bs=3, cancel=None,
         arrivals=True, check_concepts=True, kmax=12, mix_dtype="model"):
    model, tok = model_tok
    rng = random.Random(seed)
    sim = SimServer(model, tok, rows=rows, kmax=kmax, overlap=overlap, chunk_max=chunk_max, seed=seed,
                    driver=driver, max_bs=max_bs, mix_dtype=mix_dtype)
    try:
        prompts = _prompts(rng, len(cfgs), vocab_hi=min(250, model.config.vocab_size - 6))
        for i, (p, cfg) in enumerate(zip(prompts, cfgs)):
            sim.add(f"r{i}", p, cfg, uid=100 + i, arrival=rng.randint(0, 12) if arrivals else 0,
                    cancel_after=(cancel or {}).get(i))
        sim.run()
        ref = reference(model, tok, sim)
        compare(sim, ref, check_concepts=check_concepts)
        assert_row0_pristine(sim)
        return sim, ref
    finally:
        sim.close()


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("driver", ["A", "B"])
@pytest.mark.parametrize("overlap", [True, False])
def test_soft_matches_reference_qwen(qwen, driver, overlap):
    cfgs = [_soft_cfg(), _soft_cfg(think={"max_topk": 3}), _soft_cfg(max_new_tokens=30), _soft_cfg(seed=3),
            _soft_cfg(think={"top_k": -1, "top_p": 0.8}), _soft_cfg(max_new_tokens=9)]
    sim, _ = _run(qwen, cfgs, driver=driver, overlap=overlap, seed=1 if overlap else 2)
    assert sim.reuse_events > 0  # rows were recycled
    if overlap:
        assert any(r.extra_steps > 0 for r in sim.reqs)  # the one-step lag ran finished requests once more


def test_soft_matches_reference_llama_multi_token_marker(llama):
    model, tok = llama
    assert len(marker_ids(tok, "</think>")) > 1
    cfgs = [_soft_cfg(think={"budget": 6}), _soft_cfg(think={"budget": 3}, max_new_tokens=20),
            _soft_cfg(cold_stop={"threshold": 2.0, "length": 2}), _soft_cfg()]
    _run(llama, cfgs, seed=5)


def test_cold_stop_and_budget_qwen(qwen):
    cfgs = [_soft_cfg(cold_stop={"threshold": 1.0, "length": 2}),
            _soft_cfg(cold_stop={"threshold": 3.0, "length": 1}),
            _soft_cfg(think={"budget": 4}),
            _soft_cfg(cold_stop={"threshold": 0.8, "length": 3}, think={"budget": 10}, max_new_tokens=28)]
    sim, ref = _run(qwen, cfgs, seed=11)
    reasons = {ref[r.rid].think_end_reason for r in sim.reqs}
    assert "cold_stop" in reasons and "budget" in reasons


def test_mixed_soft_and_discrete_batches(qwen):
    cfgs = [_soft_cfg(), GenerationConfig.from_dict({"method": "cot_greedy", "max_new_tokens": 20}),
            _soft_cfg(cold_stop={"threshold": 1.0, "length": 2}),
            GenerationConfig.from_dict({"method": "cot_greedy", "max_new_tokens": 12, "think": {"budget": 5}}),
            _soft_cfg(method="avg_embedding")]
    _run(qwen, cfgs, seed=4, max_bs=4)


def test_thinkrouter_and_moi_through_the_driver(qwen):
    cfgs = [_soft_cfg(method="thinkrouter", thinkrouter={"threshold": 0.3}),
            _soft_cfg(method="thinkrouter", thinkrouter={"threshold": 0.6, "discrete": "argmax"}),
            _soft_cfg(method="moi", moi={"beta": 1.0}), _soft_cfg(method="moi", moi={"beta": 0.5}, seed=4),
            _soft_cfg()]
    _run(qwen, cfgs, seed=21, max_bs=4, kmax=24)  # MoI inputs span K_m + 1 = 21 slots


@pytest.mark.parametrize("kind", ["gumbel", "dirichlet"])
def test_noise_counter_rng_matches(qwen, kind):
    cfgs = [_soft_cfg(noise={"kind": kind, "rng": "counter"}), _soft_cfg(noise={"kind": kind, "rng": "counter"}, seed=9),
            _soft_cfg(noise={"kind": kind, "rng": "counter"}, answer={"mode": "sample", "temperature": 0.8})]
    _run(qwen, cfgs, seed=6)


def test_answer_sampling_and_presets(qwen):
    cfgs = [_soft_cfg(preset="as_published"),
            _soft_cfg(answer={"mode": "sample", "temperature_source": "answer", "temperature": 0.9}),
            _soft_cfg(preset="official_head", noise={"rng": "counter"},
                      cold_stop={"threshold": 5.0, "length": 2, "answer_phase": "abort"}),
            _soft_cfg(mix={"dtype": "fp32"})]
    # mix.dtype is a server-wide setting: run the fp32 request on its own server
    _run(qwen, cfgs[:3], seed=8)
    _run(qwen, cfgs[3:], seed=8, mix_dtype="fp32")


def test_stop_strings_and_client_cancel_mid_think(qwen):
    model, tok = qwen
    ref_cfg = _soft_cfg(max_new_tokens=30)
    probe = HFEngine(model, tok, progress=False).generate([[5, 6, 7, 8]], ref_cfg)[0]
    stop = tok.decode(probe.token_ids[6:8], skip_special_tokens=True)
    cfgs = [_soft_cfg(stop=[stop] if stop.strip() else [], max_new_tokens=30), _soft_cfg(max_new_tokens=30),
            _soft_cfg(max_new_tokens=30), _soft_cfg()]
    sim, _ = _run(qwen, cfgs, seed=12, cancel={1: 4, 2: 7}, rows=3, max_bs=2)
    assert sum(r.finish_reason == "abort" for r in sim.reqs) == 2


def test_k1_equals_greedy(qwen):
    """docs/design/algorithm.md §10.1 through the plugin: K = 1, no noise, no Cold Stop, greedy answers == CoT greedy."""
    model, tok = qwen
    cfg = _soft_cfg(think={"max_topk": 1}, preset="as_published", max_new_tokens=20)
    sim, ref = _run(qwen, [cfg, cfg], seed=2)
    greedy = HFEngine(model, tok, progress=False).generate(
        [r.prompt for r in sim.reqs], GenerationConfig.from_dict({"method": "cot_greedy", "max_new_tokens": 20}))
    for r, g in zip(sim.reqs, greedy):
        assert r.fake.output_ids == g.token_ids


def test_row_reuse_after_mid_think_finish_does_not_leak(qwen):
    """A request cut by its length limit mid-THINK leaves its row active; the next owner (a hard request and a
    soft one) must produce exactly its stand-alone output."""
    cfgs = [_soft_cfg(max_new_tokens=3), GenerationConfig.from_dict({"method": "cot_greedy", "max_new_tokens": 10}),
            _soft_cfg(max_new_tokens=3), _soft_cfg(max_new_tokens=12)]
    sim, _ = _run(qwen, cfgs, seed=3, rows=1, max_bs=1, arrivals=False)
    assert sim.reuse_events >= 3


def test_force_logits_and_processor_contract():
    logits = torch.randn(3, 11)
    out = D.force_logits(logits.clone(), torch.tensor([4, 0, 7]), torch.tensor([True, False, True]))
    assert out.shape == logits.shape and out.dtype == logits.dtype
    assert int(out[0].argmax()) == 4 and torch.isinf(out[0]).sum() == 10 and float(out[0, 4]) == 0.0
    assert int(out[2].argmax()) == 7 and torch.isinf(out[2]).sum() == 10
    assert torch.equal(out[1], logits[1])  # a row left to the native sampler is untouched, its token included
    s = SoftThinkingLogitProcessor.to_str()
    assert len(s) < 400 and isinstance(SoftThinkingLogitProcessor.from_str(s), SoftThinkingLogitProcessor)


def test_tables_mix_graph_rules():
    from softthink import core

    """Mixing reads row 0 for padding, keeps inactive rows bit-identical to the plain lookup, and the extend
    reset only touches the listed rows."""
    tb = T.SoftStateTables(5, 4)
    E = torch.randn(20, 8, dtype=torch.float64)
    tb.active[2] = True
    tb.ids[2] = torch.tensor([3, 5, 7, 9])
    tb.w[2] = torch.tensor([0.4, 0.3, 0.2, 0.1])
    tb.note_width(2)  # eager decode mixes only the admitted width: the tail is cut off here
    cut = tb.mix(E, torch.tensor([2]), torch.tensor([6]))
    assert torch.equal(cut[0], core.mix_embeddings(E, tb.ids[2:3, :2], tb.w[2:3, :2])[0])
    tb.note_width(4)  # as the driver does when it admits a request of concept width 4
    emb = tb.mix(E, torch.tensor([1, 2, 0]), torch.tensor([4, 6, 0]))
    assert torch.equal(emb[0], E[4]) and torch.equal(emb[2], E[0])
    assert torch.equal(emb[1], core.mix_embeddings(E, tb.ids[2:3], tb.w[2:3])[0])
    tb.reset_rows(torch.tensor([2]))
    assert not tb.active[2] and tb.fresh[2] and not tb.fresh[1]


@pytest.mark.slow
def test_smollm2_short_run():
    model, tok = _load("smollm2-135m", torch.float32)
    cfgs = [_soft_cfg(max_new_tokens=12), _soft_cfg(max_new_tokens=10, cold_stop={"threshold": 1.5, "length": 2}),
            _soft_cfg(max_new_tokens=8, think={"budget": 3})]
    # fp32: no chunking, so every forward has the reference's shapes (bitwise identical logits)
    _run((model, tok), cfgs, seed=0, chunk_max=None, rows=2, max_bs=2, arrivals=False, kmax=6)


def test_eos_finish_in_think_and_answer(qwen):
    """Make a frequent token the EOS so requests end by EOS in THINK and in ANSWER (and Cold Stop may replace an
    EOS argmax: the documented edge, emitted as the EOS)."""
    model, tok = qwen
    old = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [88, 123]
    try:
        cfgs = [_soft_cfg(max_new_tokens=30), _soft_cfg(think={"max_topk": 2}, max_new_tokens=30),
                _soft_cfg(cold_stop={"threshold": 1.0, "length": 2}, max_new_tokens=30), _soft_cfg(seed=5),
                _soft_cfg(think={"budget": 2})]
        sim, ref = _run(qwen, cfgs, seed=13)
        assert sum(ref[r.rid].finish_reason == "eos" for r in sim.reqs) >= 3
    finally:
        model.generation_config.eos_token_id = old


def test_sglang_engine_without_sglang_or_cuda_is_one_clear_error():
    import importlib.util

    from softthink.sglang_glue.launch import SGLangEngine, SGLangUnavailable

    try:
        have = importlib.util.find_spec("sglang.srt") is not None
    except ImportError:
        have = False
    if have and torch.cuda.is_available():
        pytest.skip("SGLang and CUDA present")
    with pytest.raises(SGLangUnavailable) as e:
        SGLangEngine("some/model")
    msg = str(e.value)
    if not have:
        assert "pip install" in msg and "softthink[sglang]" in msg and "transformers engine" in msg
    else:
        assert "transformers engine" in msg


def test_cli_and_refusals_without_sglang(capsys):
    from softthink.cli import build_parser
    from softthink.sglang_glue.launch import LaunchOptions, UnsupportedMode, check_server_args

    args = build_parser().parse_args(["sglang-serve", "--model", "m", "--tp-size", "2", "--num-gpus", "8",
                                      "--cuda-graph-bs", "1", "2", "4", "--dry-run"])
    assert args.func(args) == 0
    line = capsys.readouterr().out
    assert "SGLANG_EXTERNAL_MODEL_PACKAGE=softthink.sglang_glue.models" in line
    assert "--enable-custom-logit-processor" in line and "--dp-size 4" in line and "--disable-radix-cache" in line
    for bad in ({"pp_size": 2}, {"speculative_algorithm": "EAGLE"}, {"enable_mixed_chunk": True},
                {"enable_dp_attention": True}):
        with pytest.raises(UnsupportedMode):
            check_server_args(bad)
    with pytest.raises(UnsupportedMode):
        LaunchOptions(model_path="m", extra={"pp_size": 2})
    with pytest.raises(D.PluginRequestError):
        build_request(GenerationConfig.from_dict({"method": "coconut_tf"}), [5], [1], 0)
    with pytest.raises(D.PluginRequestError):
        build_request(GenerationConfig.from_dict({"method": "swir"}), [5], [1], 0)
    with pytest.raises(D.PluginRequestError):
        D.RequestSpec.from_params(D.soft_custom_params(GenerationConfig.from_dict({"method": "moi"}), [5], [1],
                                                       answer="native"))


@pytest.mark.parametrize("when", ["think", "answer"])
def test_retraction_replays_hard_and_restarts_phase(qwen, when):
    """Retraction (no overlap): the request is re-prefilled with prompt + output_ids as hard tokens. Oracle: the
    reference's first j tokens, then the reference run on prompt + those j tokens (THINK start: soft; ANSWER start,
    i.e. the marker is in the history: greedy answers == CoT greedy under `as_published` without noise)."""
    model, tok = qwen
    cfg = _soft_cfg(preset="as_published", max_new_tokens=26)
    eng = HFEngine(model, tok, progress=False)
    for seed in range(31, 71):  # find a prompt whose reference run ends thinking early enough to test both cases
        rng = random.Random(seed)
        prompt = _prompts(rng, 1)[0]
        full = eng.generate([prompt], cfg, sample_uids=[100])[0]
        if full.think_end_step is not None and 6 <= full.think_end_step <= 20:
            break
    else:
        pytest.fail("no prompt among 40 ends thinking within 6..20 steps; the scenario could not be built")
    j = max(2, full.think_end_step - 4) if when == "think" else full.think_end_step + 2
    sim = SimServer(model, tok, rows=2, kmax=12, overlap=False, chunk_max=4, seed=31, max_bs=2)
    try:
        sim.add("r0", prompt, cfg, uid=100, retract_after=j)
        sim.add("r1", _prompts(rng, 1)[0], cfg, uid=101, arrival=3)
        sim.run()
        got = sim.reqs[0].fake.output_ids
        assert sim.reqs[0].fake.retraction_count == 1
        assert got[:j] == full.token_ids[:j]
        rest_cfg = cfg.replace(max_new_tokens=26 - j)
        if when == "answer":
            rest_cfg = GenerationConfig.from_dict({"method": "cot_greedy", "max_new_tokens": 26 - j})
        rest = eng.generate([prompt + full.token_ids[:j]], rest_cfg, sample_uids=[100])[0]
        assert got[j:] == rest.token_ids
        ref_r1 = eng.generate([sim.reqs[1].prompt], cfg, sample_uids=[101])[0]
        assert sim.reqs[1].fake.output_ids == ref_r1.token_ids
        assert_row0_pristine(sim)
    finally:
        sim.close()


def test_request_building_and_output_mapping():
    from softthink.sglang_glue.launch import _finish_reason

    cfg = GenerationConfig.from_dict({"method": "soft", "preset": "as_published", "max_new_tokens": 100,
                                      "stop": ["###"]})
    req = build_request(cfg, [260], [256], uid=7)
    sp = req["sampling_params"]
    assert sp["temperature"] == 0.0 and sp["max_new_tokens"] == 100 and sp["stop"] == ["###"]
    assert sp["custom_params"]["st"] == 1 and sp["custom_params"]["st_uid"] == 7
    assert GenerationConfig.from_dict(__import__("json").loads(sp["custom_params"]["st_cfg"])) == cfg
    assert "custom_logit_processor" in req and "cache_salt" not in req  # as_published shares the prefix cache
    corr = build_request(GenerationConfig.from_dict({"method": "soft"}), [260], [256], uid=7, driver="B")
    assert "custom_logit_processor" not in corr and corr["cache_salt"].endswith("-7")
    cot = build_request(GenerationConfig.from_dict({"method": "cot_sample"}), [260], [256], uid=1)
    assert "custom_params" not in cot["sampling_params"] and cot["sampling_params"]["temperature"] == 0.6
    assert _finish_reason({"finish_reason": {"type": "stop", "matched": 256}}, [256]) == "eos"
    assert _finish_reason({"finish_reason": {"type": "stop", "matched": "###"}}, [256]) == "stop"
    assert _finish_reason({"finish_reason": {"type": "length", "length": 5}}, [256]) == "length"
    assert _finish_reason({"finish_reason": {"type": "abort"}}, [256]) == "abort"
    assert think_stats([1, 2, 27, 14, 9], [27, 14], True) == (4, 4)
    assert think_stats([1, 2, 3], [27, 14], True) == (None, 3)


def test_sglang_engine_generate_with_a_stand_in_engine(qwen):
    """`SGLangEngine.generate` builds one request per prompt and maps SGLang's outputs to `Generation` (the
    stand-in returns what `sgl.Engine.generate` returns: output_ids + meta_info.finish_reason)."""
    from softthink.sglang_glue.launch import LaunchOptions, SGLangEngine

    model, tok = qwen
    cfg = _soft_cfg(max_new_tokens=6, stop=["zz"])
    marker = marker_ids(tok, "</think>")
    seen = {}

    class StandIn:
        def generate(self, **kw):
            seen.update(kw)
            return [{"output_ids": [5, 6] + marker + [7, 256], "meta_info": {"finish_reason": {"type": "stop",
                                                                                              "matched": 256}}},
                    {"output_ids": [9] * 6, "meta_info": {"finish_reason": {"type": "length", "length": 6}}}]

    eng = SGLangEngine.__new__(SGLangEngine)
    eng.options = LaunchOptions(model_path="m")
    eng.tokenizer, eng._engine, eng.retractions = tok, StandIn(), 0
    gens = eng.generate([[3, 4, 5], "hello"], cfg, sample_uids=[11, 12])
    assert len(seen["input_ids"]) == 2 and seen["sampling_params"][1]["custom_params"]["st_uid"] == 12
    assert len(seen["custom_logit_processor"]) == 2 and all(s.startswith("softthink-") for s in seen["cache_salt"])
    g0, g1 = gens
    assert g0.finish_reason == "eos" and g0.think_end_step == 2 + len(marker) and g0.think_end_reason == "marker"
    assert g0.num_thinking_tokens == 2 + len(marker) and g0.num_answer_tokens == 2 and g0.sample_uid == 11
    assert g1.finish_reason == "length" and g1.think_end_step is None and g1.num_thinking_tokens == 6
    from softthink.chat import encode_prompt

    assert g1.prompt_tokens == len(encode_prompt(tok, "hello"))


def test_tensor_parallel_mixing_emulation():
    """docs/design/algorithm.md §10.13 for the TP path: shard-local gathers (out-of-shard rows zero) + one sum over ranks equals
    the unsharded mix; inactive rows bit for bit, soft rows to rounding."""
    torch.manual_seed(0)
    V, Dm, tp = 40, 8, 3
    E = torch.randn(V, Dm, dtype=torch.float64)
    tb = T.SoftStateTables(6, 5)
    tb.active[1] = tb.active[3] = True
    tb.ids[1] = torch.tensor([3, 17, 39, 0, 0])
    tb.w[1] = torch.tensor([0.5, 0.3, 0.2, 0.0, 0.0])
    tb.ids[3] = torch.tensor([25, 26, 1, 2, 38])
    tb.w[3] = torch.tensor([0.4, 0.2, 0.2, 0.1, 0.1])
    r, ids = torch.tensor([1, 2, 3, 0]), torch.tensor([5, 6, 7, 0])
    bounds = [0, 14, 27, 40]

    def local(rank):
        lo, hi = bounds[rank], bounds[rank + 1]

        def lookup(x):
            inside = (x >= lo) & (x < hi)
            out = E[lo:hi][torch.where(inside, x - lo, torch.zeros_like(x))]
            return out * inside.unsqueeze(-1)
        return lookup

    partials = []
    for rank in range(tp):
        partials.append(tb.mix_sharded(local(rank), lambda t: t, r, ids))
    got = sum(partials[1:], partials[0])
    ref = tb.mix(E, r, ids)
    assert torch.equal(got[1], ref[1]) and torch.equal(got[3], ref[3])  # inactive rows (row 2 and padding row 0)
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12)
