"""The transformers engine: batched soft thinking over any causal LM with a KV cache (the numerical reference).

Each step runs the model on one input vector per row, fed through `inputs_embeds`: the concept token
sum_i w_i E[idx_i] while a row thinks, the embedding of the recorded token otherwise (one-hot weights, which is
E[id] bit for bit). The step rule itself is `softthink.core.step`; this file only drives the model, the cache,
finish checks and bookkeeping.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import torch

from softthink import core
from softthink.chat import encode_prompt
from softthink.config import GenerationConfig
from softthink.decode_step import (CACHE_ENV, CompileStats, DynamicRunner, ModelParts, StaticRunner, Statics,
                                   batch_bucket, compile_mode, make_compiled, should_compile, step_rule)
from softthink.kv_cache import supports_static, window_for


@dataclass
class Trace:
    """Per generated step: the recorded token, phase, entropy, the input fed next (concept or one-hot), Cold Stop."""

    token: list[int] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    topk_ids: list[list[int]] = field(default_factory=list)
    topk_weights: list[list[float]] = field(default_factory=list)
    cold_stop: list[bool] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str  # eos | stop | length | abort
    think_end_reason: str | None  # marker | cold_stop | budget | switch_cap | None (thinking never ended)
    num_thinking_tokens: int  # ids recorded in the THINK phase, marker included
    num_answer_tokens: int
    think_end_step: int | None  # 1-based step of the marker's last id
    wall_time: float  # seconds from the start of the row's batch to its finish
    prompt_tokens: int
    sample_uid: int
    trace: Trace | None = None

    @property
    def num_tokens(self) -> int:
        """Generated ids counted by the engine: thinking + marker + answer, including a terminating EOS."""
        return len(self.token_ids)

    @property
    def cold_stop(self) -> bool:
        return self.think_end_reason == "cold_stop"

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "trace"}
        d["num_tokens"] = self.num_tokens
        if self.trace is not None:
            d["trace"] = self.trace.to_dict()
        return d


def eos_ids(model, tokenizer) -> list[int]:
    ids = set()
    for src in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(i) for i in src)
    return sorted(ids)


def marker_ids(tokenizer, end_str: str) -> list[int]:
    ids = tokenizer.encode(end_str, add_special_tokens=False)
    if not ids:
        raise ValueError(f"think.end_str {end_str!r} encodes to no tokens with this tokenizer")
    return ids


class HFEngine:
    """Batched generation with soft thinking on a transformers causal LM (CPU or one GPU).

    `kv_cache`: "static" (preallocated, `softthink.kv_cache`; the default where the model allows it) or "dynamic"
    (transformers' DynamicCache). `compile`: "auto" (compile the decode step where the break-even rule of
    `softthink.decode_step.should_compile` says it pays), "on" or "off" (eager). Both default to the environment
    variables SOFTTHINK_KV_CACHE and SOFTTHINK_COMPILE, then to "static"/"auto". Compiled and eager steps run the
    same ops on the same batch composition (tests/test_engine_compile.py checks token-for-token agreement).
    """

    name = "hf"

    def __init__(self, model, tokenizer, *, batch_size: int | None = None, progress: bool = True,
                 ignore_eos: bool = False, kv_cache: str | None = None, compile: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress
        self.device = next(model.parameters()).device
        self.vocab_size = model.config.vocab_size if hasattr(model.config, "vocab_size") else \
            model.get_input_embeddings().weight.shape[0]
        # the model's own input-embedding module: Gemma-style models scale inside it (sqrt(hidden) in transformers
        # 5.x), so a concept built from its rows is scaled exactly like a token embedding (docs/design/algorithm.md)
        self.parts = ModelParts(model, self.vocab_size)
        self.embed_module = self.parts.embed_module
        all_eos = eos_ids(model, tokenizer)
        self.eos = [] if ignore_eos else all_eos  # ignore_eos: fixed-length runs (benchmarks)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (all_eos[0] if all_eos else 0)
        kv = (kv_cache or os.environ.get(CACHE_ENV, "") or "static").strip().lower()
        if kv not in ("static", "dynamic"):
            raise ValueError(f"kv_cache {kv!r}: choose static or dynamic")
        self.static_unsupported = supports_static(model)  # None, or why the static cache cannot serve this model
        self.kv_cache = "static" if kv == "static" and self.static_unsupported is None else "dynamic"
        self.compile = (compile or compile_mode()).strip().lower()
        if self.compile not in ("auto", "on", "off"):
            raise ValueError(f"compile {self.compile!r}: choose auto, on or off")
        self.compile_stats = CompileStats()
        self._compiled = None
        self.last_compiled = False  # whether the last generate call ran compiled steps

    # -- public API -----------------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str | Sequence[int]], config: GenerationConfig | dict,
                 *, sample_uids: Sequence[int] | None = None, progress: bool | None = None) -> list[Generation]:
        out: list[Generation | None] = [None] * len(prompts)
        for i, g in self.generate_iter(prompts, config, sample_uids=sample_uids, progress=progress):
            out[i] = g
        return out  # type: ignore[return-value]

    def generate_iter(self, prompts: Sequence[str | Sequence[int]], config: GenerationConfig | dict,
                      *, sample_uids: Sequence[int] | None = None,
                      progress: bool | None = None) -> Iterator[tuple[int, Generation]]:
        """Yield (index into prompts, Generation) as rows finish, batch by batch."""
        cfg = config if isinstance(config, GenerationConfig) else GenerationConfig.from_dict(config)
        ids = [encode_prompt(self.tokenizer, p) if isinstance(p, str) else [int(t) for t in p] for p in prompts]
        if any(len(p) == 0 for p in ids):
            raise ValueError("empty prompt: every prompt needs at least one token")
        uids = list(range(len(ids))) if sample_uids is None else [int(u) for u in sample_uids]
        if len(uids) != len(ids):
            raise ValueError(f"sample_uids has {len(uids)} entries for {len(ids)} prompts")
        bs = self.batch_size or cfg.batch_size
        show = self.progress if progress is None else progress
        compiled = self._use_compiled(cfg, ids, bs)
        self.last_compiled = compiled
        bar = _Progress(len(ids), enabled=show, stats=self.compile_stats if compiled else None)
        try:
            for start in range(0, len(ids), bs):
                rows = list(range(start, min(start + bs, len(ids))))
                for j, g in self._run_batch([ids[r] for r in rows], [uids[r] for r in rows], cfg, bar, compiled):
                    yield rows[j], g
        finally:
            bar.close()

    # -- execution mode ---------------------------------------------------------------------------------------------
    def _compilable(self, cfg: GenerationConfig) -> bool:
        """The compiled step needs the static cache, counter randomness (no torch.Generator in the graph) and no
        forward hook (COCONUT-TF pre-norm capture)."""
        pre_norm = cfg.method == "coconut_tf" and cfg.coconut.hidden == "pre_norm"
        return self.kv_cache == "static" and cfg.noise.rng == "counter" and not pre_norm

    def _use_compiled(self, cfg: GenerationConfig, ids: list[list[int]], bs: int) -> bool:
        if self.compile == "off" or not self._compilable(cfg):
            return False
        if self.compile == "on":
            return True
        # auto: the break-even rule over the shapes this call would compile and the steps it would run
        n_batches = -(-len(ids) // bs)
        steps = n_batches * cfg.max_new_tokens
        shapes = set()
        for start in range(0, len(ids), bs):
            chunk = ids[start: start + bs]
            plen = max(map(len, chunk))
            b = batch_bucket(len(chunk))
            for n in range(plen + 1, plen + cfg.max_new_tokens + 1):
                shapes.add((b, window_for(n, plen + cfg.max_new_tokens)))
        known = {s[:2] for s in self.compile_stats.shapes}
        return should_compile(self.device, steps, len(shapes - known))

    def _runner(self, bsz: int, plen: int, max_new: int, pre_norm: bool, compiled: bool):
        if self.kv_cache == "dynamic":
            return DynamicRunner(self.parts, pre_norm)
        fn = None
        if compiled:
            if self._compiled is None:
                self._compiled = make_compiled(self.device)
            fn = self._compiled
        return StaticRunner(self.parts, bsz, plen, max_new, compiled_fn=fn, stats=self.compile_stats,
                            pre_norm=pre_norm)

    # -- one batch --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _run_batch(self, prompts: list[list[int]], uids: list[int], cfg: GenerationConfig, bar: "_Progress",
                   compiled: bool = False):
        dev, n_rows = self.device, len(prompts)
        t0 = time.perf_counter()
        pre_norm = cfg.method == "coconut_tf" and cfg.coconut.hidden == "pre_norm"
        # the static cache runs a bucketed batch: padding rows (copies of the last prompt) are dead from the start
        bsz = batch_bucket(n_rows) if self.kv_cache == "static" else n_rows
        fed = prompts + [prompts[-1]] * (bsz - n_rows)
        marker = marker_ids(self.tokenizer, cfg.think.end_str)
        swir = cfg.method == "swir"
        prm = core.Params.from_config(cfg, bsz, marker, device=dev, open_id=self._last_id(cfg.phase.open_str),
                                      newline_id=self._last_id("\n"))
        state = core.State.new(bsz, len(marker), device=dev, swir=swir)
        if cfg.method == "nothinking":  # the prompt already closed the thinking block
            state.think.zero_()
        open_ids = self.tokenizer.encode(cfg.phase.open_str, add_special_tokens=False)
        waiting = [False] * n_rows  # phase.start = after_open_tag: rows that wait for the opening tag
        if cfg.phase.start == "after_open_tag":
            for r, p in enumerate(prompts):
                text = self.tokenizer.decode(p)
                opened = text.rfind(cfg.phase.open_str) > text.rfind(cfg.think.end_str)
                waiting[r] = not opened
                state.think[r] = opened
        width, concept_width = core.static_widths(cfg, self.vocab_size)
        st = Statics(width, concept_width, cfg.noise.kind == "dirichlet", cfg.noise.kind == "gumbel", swir,
                     cfg.mix.dtype == "fp32")
        uid_t = torch.tensor(uids + [-1] * (bsz - n_rows), dtype=torch.int64, device=dev)
        gen = torch.Generator(device=dev).manual_seed(cfg.seed) if cfg.noise.rng == "global" else None
        uniforms = None
        if gen is not None:
            uniforms = lambda n, salt: torch.rand(len(uid_t), n, generator=gen, device=dev)  # noqa: E731
        eos = torch.tensor(self.eos or [-1], device=dev)

        # left-padded prefill
        plen = max(len(p) for p in fed)
        input_ids = torch.full((bsz, plen), self.pad_id, dtype=torch.long, device=dev)
        mask = torch.zeros((bsz, plen), dtype=torch.long, device=dev)
        for r, p in enumerate(fed):
            input_ids[r, plen - len(p):] = torch.tensor(p, device=dev)
            mask[r, plen - len(p):] = 1
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        runner = self._runner(bsz, plen, cfg.max_new_tokens, pre_norm, compiled)
        logits, hidden = runner.prefill(self.embed_module(input_ids), mask, pos)
        next_pos = pos[:, -1] + 1

        # per-row bookkeeping, indexed by original row; `slots` maps batch position -> original row (None: dead)
        slots: list[int | None] = [r if r < n_rows else None for r in range(bsz)]
        tokens: list[list[int]] = [[] for _ in range(n_rows)]
        n_think = [0] * n_rows
        end_step: list[int | None] = [None] * n_rows
        end_reason: list[str | None] = [None] * n_rows
        traces = [Trace() for _ in range(n_rows)] if cfg.trace else None
        stop_strs = list(cfg.stop)
        stop_tail = 4 * max((len(s) for s in stop_strs), default=0) + 8

        for t in range(1, cfg.max_new_tokens + 1):
            if t < cfg.max_new_tokens:  # the step, the next input and its forward
                out, state, logits, hidden = runner.step(logits, hidden, state, prm, uid_t, next_pos, st, uniforms)
                next_pos = next_pos + 1
            else:  # the last token needs no forward after it
                out, state = step_rule(logits, state, prm, uid_t, st, uniforms)
            # one host transfer per step for every per-row fact the bookkeeping needs
            none = torch.zeros_like(out.ended)
            flags = torch.stack([out.token, out.was_think, out.ended, torch.isin(out.raw_token, eos), out.abort_finish,
                                 out.cold, out.budget_hit, none if out.cap_hit is None else out.cap_hit,
                                 none if out.limit_finish is None else out.limit_finish], dim=1).long().tolist()
            if traces is not None:
                ent, ids_l, w_l = out.entropy.tolist(), out.in_ids.tolist(), out.in_w.tolist()
            done_pos: list[tuple[int, str]] = []
            n_live = 0
            for b, r in enumerate(slots):
                if r is None:
                    continue
                n_live += 1
                tok, was_think, ended, eos_hit, abort_fin, cold, budget, cap, limit = flags[b]
                tokens[r].append(tok)
                if waiting[r] and tokens[r][-len(open_ids):] == open_ids:  # the model opened the block itself
                    waiting[r] = False
                    state.think[b] = True
                if was_think:
                    n_think[r] += 1
                if cold:
                    end_reason[r] = "cold_stop"
                elif budget and end_reason[r] is None:
                    end_reason[r] = "budget"
                elif cap and end_reason[r] is None:
                    end_reason[r] = "switch_cap"
                if ended:
                    end_step[r] = t
                    if end_reason[r] is None:
                        end_reason[r] = "marker"
                if traces is not None:
                    tr = traces[r]
                    tr.token.append(tok)
                    tr.phase.append("think" if was_think else "answer")
                    tr.entropy.append(ent[b])
                    tr.topk_ids.append(ids_l[b])
                    tr.topk_weights.append(w_l[b])
                    tr.cold_stop.append(bool(cold))
                reason = None
                if eos_hit:
                    reason = "eos"
                elif stop_strs and _hit_stop(self.tokenizer, tokens[r][-stop_tail:], stop_strs):
                    reason = "stop"
                elif abort_fin:
                    reason = "abort"
                elif t >= cfg.max_new_tokens or limit:
                    reason = "length"
                if reason is not None:
                    done_pos.append((b, reason))
            bar.tokens(n_live, compiled=runner.kind == "static" and compiled)
            for b, reason in done_pos:
                r = slots[b]
                # a think end the row never reached does not count (a forced marker cut short by the finish)
                reason_end = end_reason[r] if end_step[r] is not None else None
                yield r, self._finish(prompts[r], tokens[r], reason, reason_end, n_think[r], end_step[r],
                                      time.perf_counter() - t0, uids[r], traces[r] if traces else None, stop_strs)
                bar.sample_done()
                slots[b] = None
            if not done_pos:
                continue
            live = [b for b, r in enumerate(slots) if r is not None]
            if not live:
                return
            if runner.wants_compaction(len(live), len(slots)):
                # keep the live rows and, for a static batch, enough dead rows to fill the next bucket
                target = batch_bucket(len(live)) if runner.kind == "static" else len(live)
                dead = [b for b, r in enumerate(slots) if r is None]
                keep = sorted(live + dead[: target - len(live)])
                sel = torch.tensor(keep, device=dev)
                slots = [slots[b] for b in keep]
                state, prm = state.index(sel), prm.index(sel)
                uid_t, next_pos, hidden, logits = uid_t[sel], next_pos[sel], hidden[sel], logits[sel]
                runner.select(sel)

    def _last_id(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return ids[-1] if ids else -1

    def _finish(self, prompt, toks, reason, end_reason, n_think, end_step, wall, uid, trace, stop_strs) -> Generation:
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        if reason == "stop":
            cut = min((text.find(s) for s in stop_strs if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        return Generation(text=text, token_ids=list(toks), finish_reason=reason, think_end_reason=end_reason,
                          num_thinking_tokens=n_think, num_answer_tokens=len(toks) - n_think, think_end_step=end_step,
                          wall_time=wall, prompt_tokens=len(prompt), sample_uid=uid, trace=trace)


def _new_cache(model):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:
        return DynamicCache()


def _hit_stop(tokenizer, tail: list[int], stops: list[str]) -> bool:
    text = tokenizer.decode(tail, skip_special_tokens=True)
    return any(s in text for s in stops)


class _Progress:
    """tqdm over samples with the decode rate (generated tokens per second) as a postfix, and the seconds spent
    compiling decode shapes (excluded from the rate's clock) when the step is compiled."""

    def __init__(self, total: int, enabled: bool, stats: CompileStats | None = None):
        self.bar = None
        self.n_tokens = 0
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.stats = stats
        self.compile0 = stats.seconds if stats is not None else 0.0
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="sample", desc="generate", dynamic_ncols=True)

    def _postfix(self, now: float) -> str:
        comp = (self.stats.seconds - self.compile0) if self.stats is not None else 0.0
        rate = self.n_tokens / max(now - self.t0 - comp, 1e-9)
        text = f"{rate:.1f} tok/s, {self.n_tokens} tok"
        if self.stats is not None:
            text += f", compile {comp:.1f} s ({self.stats.n_compiles} shapes)"
        return text

    def tokens(self, n: int, compiled: bool = False) -> None:
        self.n_tokens += n
        now = time.perf_counter()
        if self.bar is not None and now - self.last > 0.5:
            self.last = now
            self.bar.set_postfix_str(self._postfix(now), refresh=True)

    def sample_done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self._postfix(time.perf_counter()))
            self.bar.close()
