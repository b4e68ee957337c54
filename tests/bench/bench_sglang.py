"""Decode throughput of the SGLang engine on the CPU (make bench; run with the .venv-sglang interpreter).

* soft / discrete: Soft Thinking (K = 10, Driver A and Driver B) vs greedy discrete decoding in the same server,
  batch 1, 8, 32, interleaved rounds, N new tokens per row with EOS ignored;
* host synchronisations per decode step caused by the plugin (processor + driver step), counted by wrapping
  every torch call that copies a device value to the host (`item`, `tolist`, `__bool__`, `__int__`, `__float__`,
  `cpu`, `numpy`) while Driver A runs one decode step of a batch: on a GPU each such call would block the host.
Prints a table and writes build/bench/sglang.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sglang_real"))
from child import run_jobs  # noqa: E402

QUESTIONS = ["What is 12 * 3? Think step by step.", "Is 91 a prime number? Explain.",
             "A train travels 60 km in 45 minutes. What is its speed in km/h?", "Simplify 3/12 and explain."]
SOFT = {"method": "soft", "think": {"temperature": 0.6, "top_k": 30, "top_p": 0.95, "min_p": 0.001, "max_topk": 10}}
DISCRETE = {"method": "cot_greedy"}


def _requests(cfg: dict, bsz: int, n: int, driver: str):
    from softthink.chat import encode_prompt, render_chat
    from softthink.config import GenerationConfig
    from softthink.models import load_tokenizer
    from softthink.sglang_glue.launch import build_request

    tok = load_tokenizer("smollm2-135m")
    gc = GenerationConfig.from_dict(dict(cfg, max_new_tokens=n))
    marker = tok.encode("</think>", add_special_tokens=False)
    reqs = [build_request(gc, marker, [tok.eos_token_id], i, driver=driver) for i in range(bsz)]
    for r in reqs:
        r["sampling_params"]["ignore_eos"] = True
    raw = {"input_ids": [encode_prompt(tok, render_chat(tok, QUESTIONS[i % len(QUESTIONS)])) for i in range(bsz)],
           "sampling_params": [r["sampling_params"] for r in reqs]}
    if any(r.get("custom_logit_processor") for r in reqs):
        raw["custom_logit_processor"] = [r.get("custom_logit_processor") for r in reqs]
    return raw


def host_syncs_per_step(bsz: int = 8, vocab: int = 49152) -> dict:
    """Count the plugin's device->host copies in one Driver A decode step (processor call on CPU tensors)."""
    from softthink.config import GenerationConfig
    from softthink.sglang_glue import tables as T
    from softthink.sglang_glue.driver import soft_custom_params
    from softthink.sglang_glue.processor import SoftThinkingLogitProcessor

    tb = T.publish(T.SoftStateTables(64, 30))
    tb.vocab = vocab
    cfg = GenerationConfig.from_dict(SOFT)
    params = []
    for i in range(bsz):
        req = types.SimpleNamespace(rid=f"r{i}", kv=types.SimpleNamespace(req_pool_idx=i + 1), output_ids=[],
                                    retraction_count=0, sampling_params=types.SimpleNamespace(n=1))
        params.append(soft_custom_params(cfg, [50], [2], uid=i) | {"__req__": req})
    proc = SoftThinkingLogitProcessor()
    tb.reset_rows(torch.arange(1, bsz + 1))
    gen = torch.Generator().manual_seed(0)
    proc(torch.randn(bsz, vocab, generator=gen), params)  # first step: admission and caches
    counts: dict = {}
    names = ["item", "tolist", "__bool__", "__int__", "__float__", "cpu", "numpy"]
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def wrap(name, fn):
        def inner(self, *a, **k):
            counts[name] = counts.get(name, 0) + 1
            return fn(self, *a, **k)
        return inner

    try:
        for n in names:
            setattr(torch.Tensor, n, wrap(n, saved[n]))
        bool(torch.ones(1)), torch.ones(2).tolist()  # the counter sees host copies
        assert counts == {"__bool__": 1, "tolist": 1}, counts
        counts.clear()
        proc(torch.randn(bsz, vocab, generator=gen), params)
    finally:
        for n in names:
            setattr(torch.Tensor, n, saved[n])
        T.unpublish()
    return {"total": sum(counts.values()), "by_call": counts}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--drivers", default="A,B")
    ap.add_argument("--out", default="build/bench/sglang.json")
    args = ap.parse_args()
    n, batches = args.tokens, [int(b) for b in args.batches.split(",")]
    syncs = host_syncs_per_step()
    rows = []
    for driver in args.drivers.split(","):
        jobs = [{"name": "warmup", "raw": _requests(SOFT, 2, 8, driver)}]
        for r in range(args.rounds):
            for b in batches:
                for kind, cfg in (("discrete", DISCRETE), ("soft", SOFT)):
                    jobs.append({"name": f"{kind}-{b}-{r}", "raw": _requests(cfg, b, n, driver)})
        res = run_jobs("smollm2-135m", jobs, driver=driver, timeout=3600)
        assert not res["errors"], res["errors"]
        for b in batches:
            tps = {k: statistics.median(b * n / res["wall_s"][f"{k}-{b}-{r}"] for r in range(args.rounds))
                   for k in ("discrete", "soft")}
            rows.append({"driver": driver, "batch": b, "soft_tok_s": tps["soft"], "discrete_tok_s": tps["discrete"],
                         "ratio": tps["soft"] / tps["discrete"], "engine_start_s": res["start_s"]})
    print(f"SGLang {__import__('sglang').__version__} on the CPU, smollm2-135m fp32, {n} tokens/row, "
          f"median of {args.rounds} interleaved rounds; {platform.machine()}, {os.cpu_count()} cores")
    print("| driver | batch | soft tok/s | discrete tok/s | soft / discrete |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['driver']} | {r['batch']} | {r['soft_tok_s']:.1f} | {r['discrete_tok_s']:.1f} | "
              f"**{r['ratio']:.2f}** |")
    print(f"plugin host synchronisations per decode step (Driver A, batch 8): {syncs['total']} {syncs['by_call']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "host_syncs": syncs, "tokens": n,
                                          "machine": platform.platform(), "cores": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
