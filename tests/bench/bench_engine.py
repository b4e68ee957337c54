"""Decode throughput of the transformers engine (make bench). Ratios are measured in one process, interleaved.

* soft / discrete: soft thinking (K = 10) vs discrete CoT sampling in the same engine, batch 1, 8, 32;
* engine / generate: the engine's discrete sampling vs transformers' own `generate` with the same filters.
Every run generates exactly N tokens per row (EOS ignored). Prints a table and writes build/bench/engine.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from softthink import GenerationConfig, HFEngine, load_model, render_chat
from softthink.chat import encode_prompt

QUESTIONS = ["What is 12 * 3? Think step by step.", "Is 91 a prime number? Explain.",
             "A train travels 60 km in 45 minutes. What is its speed in km/h?", "Simplify 3/12 and explain."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="build/bench/engine.json")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    model, tok = load_model(args.model)
    engine = HFEngine(model, tok, progress=False, ignore_eos=True)
    n = args.tokens
    sampling = {"temperature": 0.6, "top_k": 30, "top_p": 0.95, "min_p": 0.0}
    soft = GenerationConfig.from_dict({"method": "soft", "max_new_tokens": n, "batch_size": 64,
                                       "think": {**sampling, "min_p": 0.001, "max_topk": 10}})
    disc = GenerationConfig.from_dict({"method": "cot_sample", "max_new_tokens": n, "batch_size": 64,
                                       "think": sampling})
    results = []
    for bsz in [int(b) for b in args.batches.split(",")]:
        prompts = [render_chat(tok, QUESTIONS[i % len(QUESTIONS)]) for i in range(bsz)]
        ids = [encode_prompt(tok, p) for p in prompts]
        plen = max(map(len, ids))
        batch = torch.full((bsz, plen), tok.pad_token_id)
        mask = torch.zeros((bsz, plen), dtype=torch.long)
        for r, p in enumerate(ids):
            batch[r, plen - len(p):] = torch.tensor(p)
            mask[r, plen - len(p):] = 1

        def run_soft():
            engine.generate(prompts, soft)

        def run_disc():
            engine.generate(prompts, disc)

        def run_hf():
            with torch.no_grad():
                model.generate(batch, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=True,
                               pad_token_id=tok.pad_token_id, **sampling)

        timings: dict[str, list[float]] = {"soft": [], "discrete": [], "generate": []}
        for fn in (run_soft, run_disc, run_hf):  # warm-up
            fn()
        for _ in range(args.rounds):
            for name, fn in (("soft", run_soft), ("discrete", run_disc), ("generate", run_hf)):
                t0 = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - t0)
        tps = {k: bsz * n / statistics.median(v) for k, v in timings.items()}
        row = {"batch": bsz, "tokens_per_row": n, **{f"{k}_tok_s": round(v, 1) for k, v in tps.items()},
               "soft_over_discrete": round(tps["soft"] / tps["discrete"], 3),
               "engine_over_generate": round(tps["discrete"] / tps["generate"], 3)}
        results.append(row)
        print(json.dumps(row), flush=True)
    meta = {"model": args.model, "machine": f"{platform.machine()} {os.cpu_count()} cores", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "rounds": args.rounds}
    print(f"\n{'batch':>5} {'soft tok/s':>11} {'discrete tok/s':>15} {'generate tok/s':>15} {'soft/disc':>10} "
          f"{'engine/gen':>11}")
    for r in results:
        print(f"{r['batch']:>5} {r['soft_tok_s']:>11} {r['discrete_tok_s']:>15} {r['generate_tok_s']:>15} "
              f"{r['soft_over_discrete']:>10} {r['engine_over_generate']:>11}")
    print(f"({meta['machine']}, torch {meta['torch']}, {meta['threads']} threads, median of {args.rounds} rounds)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
