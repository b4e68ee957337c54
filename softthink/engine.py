"""The transformers engine: batched soft thinking over any causal LM with a KV cache (the numerical reference).

Each step runs the model on one input vector per row, fed through `inputs_embeds`: the concept token
sum_i w_i E[idx_i] while a row thinks, the embedding of the recorded token otherwise (one-hot weights, which is
E[id] bit for bit). The step rule itself is `softthink.core.step`; this file only drives the model, the cache,
finish checks and bookkeeping.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

import torch

from softthink import core
from softthink.chat import encode_prompt
from softthink.config import GenerationConfig


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
    """Batched generation with soft thinking on a transformers causal LM (CPU or one GPU)."""

    name = "hf"

    def __init__(self, model, tokenizer, *, batch_size: int | None = None, progress: bool = True,
                 ignore_eos: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress
        self.device = next(model.parameters()).device
        # the model's own input-embedding module: Gemma-style models scale inside it (sqrt(hidden) in transformers
        # 5.x), so a concept built from its rows is scaled exactly like a token embedding (docs/design/algorithm.md)
        self.embed_module = model.get_input_embeddings()
        self.embedding = self.embed_module.weight
        self.embed_scale = embedding_scale(self.embed_module)
        self.vocab_size = model.config.vocab_size if hasattr(model.config, "vocab_size") else self.embedding.shape[0]
        all_eos = eos_ids(model, tokenizer)
        self.eos = [] if ignore_eos else all_eos  # ignore_eos: fixed-length runs (benchmarks)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (all_eos[0] if all_eos else 0)
        self._base = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        self._head = model.get_output_embeddings()
        # transformers >= 5.2x names the cache argument `cache`; older releases `past_key_values`
        params = inspect.signature(self._base.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

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
        bar = _Progress(len(ids), enabled=show)
        try:
            for start in range(0, len(ids), bs):
                rows = list(range(start, min(start + bs, len(ids))))
                for j, g in self._run_batch([ids[r] for r in rows], [uids[r] for r in rows], cfg, bar):
                    yield rows[j], g
        finally:
            bar.close()

    # -- one batch --------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _run_batch(self, prompts: list[list[int]], uids: list[int], cfg: GenerationConfig, bar: "_Progress"):
        dev, bsz = self.device, len(prompts)
        t0 = time.perf_counter()
        marker = marker_ids(self.tokenizer, cfg.think.end_str)
        swir = cfg.method == "swir"
        prm = core.Params.from_config(cfg, bsz, marker, device=dev, open_id=self._last_id(cfg.phase.open_str),
                                      newline_id=self._last_id("\n"))
        state = core.State.new(bsz, len(marker), device=dev, swir=swir)
        if cfg.method == "nothinking":  # the prompt already closed the thinking block
            state.think.zero_()
        open_ids = self.tokenizer.encode(cfg.phase.open_str, add_special_tokens=False)
        waiting = [False] * bsz  # phase.start = after_open_tag: rows that wait for the opening tag
        if cfg.phase.start == "after_open_tag":
            for r, p in enumerate(prompts):
                text = self.tokenizer.decode(p)
                opened = text.rfind(cfg.phase.open_str) > text.rfind(cfg.think.end_str)
                waiting[r] = not opened
                state.think[r] = opened
        width, concept_width = core.static_widths(cfg, self.vocab_size)
        uid_t = torch.tensor(uids, dtype=torch.int64, device=dev)
        gen = torch.Generator(device=dev).manual_seed(cfg.seed) if cfg.noise.rng == "global" else None
        uniforms = None
        if gen is not None:
            uniforms = lambda n, salt: torch.rand(len(uid_t), n, generator=gen, device=dev)  # noqa: E731
        eos = torch.tensor(self.eos or [-1], device=dev)
        pre_norm = cfg.method == "coconut_tf" and cfg.coconut.hidden == "pre_norm"

        # left-padded prefill
        plen = max(len(p) for p in prompts)
        input_ids = torch.full((bsz, plen), self.pad_id, dtype=torch.long, device=dev)
        mask = torch.zeros((bsz, plen), dtype=torch.long, device=dev)
        for r, p in enumerate(prompts):
            input_ids[r, plen - len(p):] = torch.tensor(p, device=dev)
            mask[r, plen - len(p):] = 1
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        cache = _new_cache(self.model)
        logits, hidden = self._forward(self.embed_module(input_ids), mask, pos, cache, pre_norm)
        next_pos = pos[:, -1] + 1

        # per-row bookkeeping, indexed by original row; `live` maps batch position -> original row
        live = list(range(bsz))
        tokens: list[list[int]] = [[] for _ in range(bsz)]
        n_think = [0] * bsz
        end_step: list[int | None] = [None] * bsz
        end_reason: list[str | None] = [None] * bsz
        traces = [Trace() for _ in range(bsz)] if cfg.trace else None
        stop_strs = list(cfg.stop)
        stop_tail = 4 * max((len(s) for s in stop_strs), default=0) + 8

        for t in range(1, cfg.max_new_tokens + 1):
            keys = core.row_keys(prm.seed, uid_t, state.step)
            out, state = core.step(logits, state, prm, keys, width=width, concept_width=concept_width,
                                   dirichlet=cfg.noise.kind == "dirichlet", gumbel=cfg.noise.kind == "gumbel",
                                   swir=swir, uniforms=uniforms)
            # one host transfer per step for every per-row fact the bookkeeping needs
            none = torch.zeros_like(out.ended)
            flags = torch.stack([out.token, out.was_think, out.ended, torch.isin(out.raw_token, eos), out.abort_finish,
                                 out.cold, out.budget_hit, none if out.cap_hit is None else out.cap_hit,
                                 none if out.limit_finish is None else out.limit_finish], dim=1).long().tolist()
            if traces is not None:
                ent, ids_l, w_l = out.entropy.tolist(), out.in_ids.tolist(), out.in_w.tolist()
            done_pos: list[tuple[int, str]] = []
            for b, r in enumerate(live):
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
            bar.tokens(len(live))
            for b, reason in done_pos:
                r = live[b]
                # a think end the row never reached does not count (a forced marker cut short by the finish)
                reason_end = end_reason[r] if end_step[r] is not None else None
                yield r, self._finish(prompts[r], tokens[r], reason, reason_end, n_think[r], end_step[r],
                                      time.perf_counter() - t0, uids[r], traces[r] if traces else None, stop_strs)
                bar.sample_done()
            if done_pos:
                done = {b for b, _ in done_pos}
                keep = [b for b in range(len(live)) if b not in done]
                if not keep:
                    return
                sel = torch.tensor(keep, device=dev)
                live = [live[b] for b in keep]
                out = _select_out(out, sel)
                state, prm = state.index(sel), prm.index(sel)
                uid_t, mask, next_pos = uid_t[sel], mask[sel], next_pos[sel]
                hidden = hidden[sel]
                cache.batch_select_indices(sel)
            # the next input: concept (THINK) or one-hot (everything else); COCONUT-TF feeds the hidden state
            if out.in_dense is not None:  # SwiReasoning: full-vocabulary mixtures
                emb = (out.in_dense.to(self.embedding.dtype) @ self.embedding)
                if self.embed_scale is not None:
                    emb = emb * self.embed_scale
            else:
                emb = core.mix_rows(self.embed_module(out.in_ids), out.in_w, fp32=cfg.mix.dtype == "fp32")
            emb = torch.where(out.use_hidden[:, None], hidden.to(emb.dtype), emb)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            logits, hidden = self._forward(emb[:, None, :], mask, next_pos[:, None], cache, pre_norm)
            next_pos = next_pos + 1

    def _last_id(self, text: str) -> int:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        return ids[-1] if ids else -1

    def _forward(self, embeds, mask, pos, cache, pre_norm: bool):
        """Decoder on input embeddings; logits of the last position only (and its hidden state)."""
        captured: list[torch.Tensor] = []
        hook = None
        if pre_norm:
            hook = self._base.norm.register_forward_hook(lambda m, inp, o: captured.append(inp[0][:, -1]))
        try:
            h = self._base(inputs_embeds=embeds, attention_mask=mask, position_ids=pos, use_cache=True,
                           **{self._cache_kw: cache}).last_hidden_state[:, -1]
        finally:
            if hook is not None:
                hook.remove()
        logits = self._head(h).float()[:, : self.vocab_size]
        return logits, (captured[0] if captured else h)

    def _finish(self, prompt, toks, reason, end_reason, n_think, end_step, wall, uid, trace, stop_strs) -> Generation:
        text = self.tokenizer.decode(toks, skip_special_tokens=True)
        if reason == "stop":
            cut = min((text.find(s) for s in stop_strs if s in text), default=-1)
            if cut >= 0:
                text = text[:cut]
        return Generation(text=text, token_ids=list(toks), finish_reason=reason, think_end_reason=end_reason,
                          num_thinking_tokens=n_think, num_answer_tokens=len(toks) - n_think, think_end_step=end_step,
                          wall_time=wall, prompt_tokens=len(prompt), sample_uid=uid, trace=trace)


def embedding_scale(module) -> torch.Tensor | None:
    """The multiplier an input-embedding module applies to its rows (`embed_scale` of transformers' Gemma
    `*ScaledWordEmbedding`), or None for a plain lookup. Only the dense SwiReasoning mixture needs it explicitly:
    every other input goes through the module itself."""
    scale = getattr(module, "embed_scale", None)
    if scale is None:
        return None
    return torch.as_tensor(scale).to(module.weight.dtype)


def _new_cache(model):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=model.config)
    except TypeError:
        return DynamicCache()


def _select_out(out: core.StepOut, sel: torch.Tensor) -> core.StepOut:
    return core.StepOut(**{k: (None if v is None else v[sel]) for k, v in vars(out).items()})


def _hit_stop(tokenizer, tail: list[int], stops: list[str]) -> bool:
    text = tokenizer.decode(tail, skip_special_tokens=True)
    return any(s in text for s in stops)


class _Progress:
    """tqdm over samples with the decode rate (generated tokens per second) as a postfix."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.n_tokens = 0
        self.t0 = time.perf_counter()
        self.last = 0.0
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="sample", desc="generate", dynamic_ncols=True)

    def tokens(self, n: int) -> None:
        self.n_tokens += n
        now = time.perf_counter()
        if self.bar is not None and now - self.last > 0.5:
            self.last = now
            self.bar.set_postfix_str(f"{self.n_tokens / (now - self.t0):.1f} tok/s, {self.n_tokens} tok", refresh=True)

    def sample_done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            now = time.perf_counter()
            self.bar.set_postfix_str(f"{self.n_tokens / max(now - self.t0, 1e-9):.1f} tok/s, {self.n_tokens} tok")
            self.bar.close()
