"""The top-1 reliance probe (transformers engine): does the model read more than the top-1 token of a concept?

Wu et al. (arXiv 2508.03440) find that a model fed a concept token relies almost only on its top-1 component, so
Soft Thinking behaves like greedy decoding. The probe replays the first items of a run and, at every probed
thinking step, compares the next-step distribution under the concept token with the next-step distributions under
the one-hot embeddings of the concept's top-1 and top-2 tokens, from the same KV prefix:

    p_c = softmax(f(prefix, sum_i w_i E[idx_i])),  p_1 = softmax(f(prefix, E[idx_1])),  p_2 = ... E[idx_2]
    js_top1 = JS(p_c, p_1),  js_top2 = JS(p_c, p_2),  js_top1_top2 = JS(p_1, p_2)    (nats, at most ln 2)

beside the concept's top-1 weight w_1 and the entropy of its weights. js_top1 << js_top1_top2 means the concept
acts like its top-1 token. A concept that is exactly one-hot gives js_top1 = 0 exactly (E[id] bit for bit).

The generation itself is the engine's (`HFEngine`, eager, static KV cache; `core.step` decides every step): the
probe only swaps the decode runner for `ProbeRunner`, which, before the step's own forward, runs one extra forward
per probed input on the same cache slot (the step's forward then overwrites that slot with the concept). So a probed
step costs 1 + 2 forwards and no re-run of the prefix. Results are cached in `<run>/probe/`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from softthink.decode_step import StaticRunner, _static_forward, _think_and_input
from softthink.engine import HFEngine
from softthink.methods import ROWS

PROBE_VERSION = 1  # bump when the probe's numbers would change (invalidates cached results)
PROBE_DIR = "probe"
COLUMNS = ["sample_uid", "step", "w_top1", "concept_entropy", "step_entropy", "support", "js_top1", "js_top2",
           "js_top1_top2"]
UNPROBED_ROWS = tuple(n for n, m in ROWS.items()  # no top-k concept to probe: discrete, hidden-state, full-vocabulary
                      if not (m.soft and ROWS[m.base or n].topk_concept))


def js_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) between softmax(logits_p) and softmax(logits_q), per row."""
    p, q = torch.softmax(logits_p.double(), -1), torch.softmax(logits_q.double(), -1)
    m = 0.5 * (p + q)
    return 0.5 * (torch.xlogy(p, p / m).nansum(-1) + torch.xlogy(q, q / m).nansum(-1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class ProbeRunner(StaticRunner):
    """`StaticRunner` (eager) whose step also runs the top-1 / top-2 probe forwards on the rows fed a concept.

    `steps`: the step indices to probe (None: every step). Records go to `records` (one dict per probed row and
    step), seconds to `timing` ("step": the step without the probe, "probe": the probe forwards and divergences)."""

    def __init__(self, parts, batch: int, plen: int, max_new: int, steps: set[int] | None,
                 records: list[dict[str, Any]], timing: dict[str, float]):
        super().__init__(parts, batch, plen, max_new)
        self.steps, self.records, self.timing = steps, records, timing

    def step(self, logits, hidden, state, prm, uid, next_pos, st, uniforms=None):
        dev = logits.device
        _sync(dev)
        t0 = time.perf_counter()
        window = self.next_slot()
        out, state, emb = _think_and_input(self.parts, logits, hidden, state, prm, uid, st, uniforms)

        def fwd(e):  # the decode forward on this step's slot
            return _static_forward(self.parts, self.cache, e, next_pos, self.prompt_valid, self.plen_t, window=window,
                                   additive=self.additive)[0]

        probe = None
        if (self.steps is None or self.t in self.steps) and out.in_dense is None:
            rows = out.soft_input & ~out.use_hidden & (uid >= 0)
            if bool(rows.any()):
                probe = rows
        t_probe = 0.0
        if probe is not None:  # before the step's forward: it overwrites this slot with the concept
            _sync(dev)
            tp = time.perf_counter()
            logits_1 = fwd(self.parts.embed_module(out.in_ids[:, 0]))
            has_2 = out.in_w.shape[1] > 1
            logits_2 = fwd(self.parts.embed_module(out.in_ids[:, 1])) if has_2 else None
            _sync(dev)
            t_probe += time.perf_counter() - tp
        logits, hidden = _static_forward(self.parts, self.cache, emb, next_pos, self.prompt_valid, self.plen_t,
                                         window=window, additive=self.additive)  # the step's own forward
        if probe is not None:
            _sync(dev)
            tp = time.perf_counter()
            w = out.in_w.double()
            second = w[:, 1] > 0 if has_2 else torch.zeros_like(probe)
            nan = torch.full_like(w[:, 0], math.nan)
            js2 = torch.where(second, js_divergence(logits, logits_2), nan) if has_2 else nan
            js12 = torch.where(second, js_divergence(logits_1, logits_2), nan) if has_2 else nan
            cols = torch.stack([uid.double(), w[:, 0], torch.special.entr(w).sum(-1), out.entropy.double(),
                                (w > 0).sum(-1).double(), js_divergence(logits, logits_1), js2, js12], 1)
            for row in cols[probe].tolist():
                self.records.append({"sample_uid": int(row[0]), "step": self.t, **dict(zip(COLUMNS[2:], row[1:]))})
            t_probe += time.perf_counter() - tp
        _sync(dev)
        self.timing["probe"] += t_probe
        self.timing["step"] += time.perf_counter() - t0 - t_probe
        self.timing["steps"] += 1
        self.timing["probed_steps"] += probe is not None
        return out, state, logits, hidden


class ProbeEngine(HFEngine):
    """`HFEngine` on the eager static cache whose decode runner is a `ProbeRunner`; `probe_steps` picks the steps."""

    def __init__(self, model, tokenizer, probe_steps: Sequence[int] | None = None, **kw):
        super().__init__(model, tokenizer, kv_cache="static", compile="off", progress=False, **kw)
        if self.kv_cache != "static":
            raise ValueError(f"the probe needs the static KV cache, which this model cannot use "
                             f"({self.static_unsupported})")
        self.probe_steps = None if probe_steps is None else set(int(s) for s in probe_steps)
        self.records: list[dict[str, Any]] = []
        self.timing = {"step": 0.0, "probe": 0.0, "steps": 0, "probed_steps": 0}

    def _runner(self, bsz, plen, max_new, pre_norm, compiled):
        return ProbeRunner(self.parts, bsz, plen, max_new, self.probe_steps, self.records, self.timing)


def probe_generate(engine: ProbeEngine, prompts: Sequence[Sequence[int]], config, sample_uids: Sequence[int]):
    """Generate with the probe on; returns (frame of probed steps, generations). A row that finished at step t is
    still stepped as a dead row until its batch is compacted: only steps before a sample's last token are kept."""
    engine.records.clear()
    gens = engine.generate(list(prompts), config, sample_uids=list(sample_uids))
    frame = pd.DataFrame(engine.records, columns=COLUMNS)
    last = {g.sample_uid: g.num_tokens for g in gens}
    frame = frame[frame.step < frame.sample_uid.map(last)].reset_index(drop=True)
    return frame, gens


def choose_steps(max_steps: int, n_steps: int, seed: int = 0) -> list[int] | None:
    """`n_steps` step indices in 1..max_steps drawn without replacement (seeded); None (every step) if n_steps <= 0."""
    if n_steps <= 0 or n_steps >= max_steps:
        return None
    return sorted(int(s) for s in np.random.default_rng(seed).choice(np.arange(1, max_steps + 1), n_steps, False))


def probe_run(run_dir: str | Path, n_items: int = 2, n_steps: int = 0, seed: int = 0, device: str = "cpu",
              engines: dict[str, ProbeEngine] | None = None, refresh: bool = False) -> pd.DataFrame:
    """The probe over sample 0 of the first `n_items` items of a run (every thinking step, or `n_steps` seeded
    steps), cached in `<run>/probe/`. Columns: COLUMNS + item_index, replay (share of the run's stored tokens the
    replay reproduced, 1.0 = the same trajectory). attrs["meta"]: run, method, settings and timing. Runs without a
    concept input (discrete CoT, COCONUT-TF, SwiReasoning) give an empty frame. `engines`: {model: ProbeEngine},
    filled with the model loaded on `device` when it lacks the run's model (share it across runs)."""
    from softthink.data import load_dataset, select
    from softthink.generate import _prompt_for, _prompt_ids, sample_uid
    from softthink.methods import row_of
    from softthink.runspec import UID_STRIDE
    from softthink.store import RunDir, write_json_atomic

    rd = RunDir.open(run_dir)
    spec, cfg = rd.spec, rd.spec.generation
    row = row_of(cfg.to_dict())
    name = f"probe-v{PROBE_VERSION}-items{n_items}-steps{n_steps}-seed{seed}"
    csv, meta_path = rd.path / PROBE_DIR / f"{name}.csv", rd.path / PROBE_DIR / f"{name}.json"
    if csv.exists() and meta_path.exists() and not refresh:
        frame = pd.read_csv(csv)
        frame.attrs["meta"] = json.loads(meta_path.read_text())
        return frame
    meta = {"run": rd.path.name, "model": spec.model, "dataset": spec.dataset, "method": row, "n_items": n_items,
            "n_steps": n_steps, "seed": seed, "probe_version": PROBE_VERSION}
    if row in UNPROBED_ROWS:
        frame = pd.DataFrame(columns=COLUMNS + ["item_index", "replay"])
        frame.attrs["meta"] = {**meta, "skipped": "no concept input"}
        return frame
    engines = {} if engines is None else engines
    if spec.model not in engines:
        from softthink.models import load_model
        from softthink.runkey import resolve_device, resolve_dtype

        dev = resolve_device(device)
        engines[spec.model] = ProbeEngine(*load_model(spec.model, device=dev, dtype=resolve_dtype(spec.dtype, dev)))
    engine = engines[spec.model]
    steps = choose_steps(cfg.max_new_tokens, n_steps, seed)
    engine.probe_steps = None if steps is None else set(steps)
    engine.timing.update(step=0.0, probe=0.0, steps=0, probed_steps=0)
    items = select(load_dataset(spec.dataset).items, spec.start, spec.end, spec.limit)[:n_items]
    prompts = [_prompt_ids(engine, engine.tokenizer, _prompt_for(spec, engine.tokenizer, it, 0, cfg)[0])
               for it in items]
    uids = [sample_uid(it.index, 0) for it in items]
    frame, gens = probe_generate(engine, prompts, cfg, uids)
    stored = {int(s["sample_uid"]): s.get("token_ids") or [] for s in rd.samples() if int(s["sample_index"]) == 0}
    replay = {g.sample_uid: float(np.mean([a == b for a, b in zip(g.token_ids, stored.get(g.sample_uid, []))] or [0]))
              for g in gens}
    frame["item_index"] = frame.sample_uid // UID_STRIDE
    frame["replay"] = frame.sample_uid.map(replay)
    t = engine.timing
    meta["timing"] = {**t, "s_per_step": t["step"] / max(t["steps"], 1),
                      "s_per_probed_step": t["probe"] / max(t["probed_steps"], 1)}
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(csv, index=False)
    write_json_atomic(meta_path, meta)
    frame.attrs["meta"] = meta
    return frame


def probe_runs(run_dirs: Sequence[str], **kw) -> pd.DataFrame:
    """`probe_run` over several runs (one model load per model), with model, dataset, method and run columns."""
    engines: dict[str, ProbeEngine] = {}
    frames = []
    for d in run_dirs:
        f = probe_run(d, engines=engines, **kw)
        m = f.attrs["meta"]
        frames.append(f.assign(model=m["model"], dataset=m["dataset"], method=m["method"], run=m["run"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


# ---------------------------------------------------------------------------------------------------------------
# table and figure


def probe_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method, dataset): probed steps, mean top-1 weight, mean JS to the top-1 and top-2 inputs, mean JS
    between top-1 and top-2 (the scale), the share of steps closer to top-1 than top-2, and the replay share."""
    keys = ["model", "method", "dataset"]
    if not len(frame):
        return pd.DataFrame(columns=keys + ["probed steps", "mean w_top1", "JS(concept, top-1)", "JS(concept, top-2)",
                                            "JS(top-1, top-2)", "closer to top-1 %", "replay %"])
    g = frame.assign(closer=(frame.js_top1 < frame.js_top2).where(frame.js_top2.notna())).groupby(keys, sort=False)
    return pd.DataFrame({
        "probed steps": g.size(), "mean w_top1": g.w_top1.mean(), "JS(concept, top-1)": g.js_top1.mean(),
        "JS(concept, top-2)": g.js_top2.mean(), "JS(top-1, top-2)": g.js_top1_top2.mean(),
        "closer to top-1 %": 100 * g.closer.mean(), "replay %": 100 * g.replay.mean(),
    }).reset_index()


def probe_figure(frame: pd.DataFrame):
    """JS(concept, top-1) against the step and against the concept's top-1 weight, colour = method; JS(concept,
    top-2) as hollow markers for scale."""
    import matplotlib.pyplot as plt

    from softthink.diagnostics import _method_order
    from softthink.figures import _empty, method_color, method_label, method_marker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    if not len(frame):
        for ax in axes:
            _empty(ax, "no probed step")
        return fig
    for m in _method_order(frame.method):
        sub = frame[frame.method == m]
        c, mk = method_color(m), method_marker(m)
        per_step = sub.groupby("step")[["js_top1", "js_top2"]].mean()
        axes[0].plot(per_step.index, per_step.js_top1, color=c, marker=mk, ms=3, lw=1, label=method_label(m))
        axes[0].plot(per_step.index, per_step.js_top2, color=c, ls=":", lw=1)
        axes[1].scatter(sub.w_top1, sub.js_top1, color=c, marker=mk, s=14, alpha=0.7, label=method_label(m))
        axes[1].scatter(sub.w_top1, sub.js_top2, facecolors="none", edgecolors=c, marker=mk, s=14, alpha=0.5)
    axes[0].set_xlabel("thinking step")
    axes[0].set_ylabel("JS divergence of the next-step distribution (nats)")
    axes[0].set_title("mean over probed samples: concept vs top-1 (solid), vs top-2 (dotted)", fontsize=9)
    axes[1].set_xlabel("concept weight of its top-1 token")
    axes[1].set_title("per step: vs top-1 (filled), vs top-2 (hollow)", fontsize=9)
    for ax in axes:
        ax.axhline(math.log(2), color="0.5", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle("Top-1 reliance probe: does the next step read more than the concept's top-1 token? (ln 2 dashed)",
                 fontsize=11)
    return fig
