"""Decode throughput of the transformers engine (make bench). Ratios are measured in one process, interleaved.

Arms (every run generates exactly N tokens per row, EOS ignored), at batch 1, 8, 32:
* soft / discrete: soft thinking (K = 10) vs discrete CoT sampling, both in the default engine (static KV cache,
  eager);
* generate: transformers' own `generate` with the same filters (its default dynamic cache);
* dynamic: the engine with transformers' DynamicCache (the engine before the static cache);
* compiled / compiled_soft: the engine with the torch.compile'd decode forward. Its compile time is measured in
  the warm-up and reported separately; the timed rounds reuse the compiled graphs. After timing, greedy decoding
  in the compiled and the eager engine: how many rows agree token for token;
* weights_only: only the model's linear layers, each weight matrix once per step as one plain ATen matmul at
  M = batch (no attention, norms, sampling or Python around them). Its tokens/s is the ceiling of any engine that
  reads every weight per step with ATen's matmul; weights_only / generate bounds engine / generate.
Prints a table and writes build/bench/engine.json (with the load average before and after every batch size).
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

# ratio name -> (numerator arm, denominator arm), all in tokens/s
RATIOS = {"soft_over_discrete": ("soft", "discrete"), "engine_over_generate": ("discrete", "generate"),
          "static_over_dynamic": ("discrete", "dynamic"), "compiled_over_eager": ("compiled", "discrete"),
          "compiled_over_generate": ("compiled", "generate"),
          "compiled_soft_over_discrete": ("compiled_soft", "compiled"),
          "weights_only_over_generate": ("weights_only", "generate")}
QUESTIONS = ["What is 12 * 3? Think step by step.", "Is 91 a prime number? Explain.",
             "A train travels 60 km in 45 minutes. What is its speed in km/h?", "Simplify 3/12 and explain."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="build/bench/engine.json")
    ap.add_argument("--arms", default="soft,discrete,generate,dynamic,compiled,compiled_soft,weights_only")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    arms = args.arms.split(",")
    engine = HFEngine(model, tok, progress=False, ignore_eos=True, compile="off")
    dynamic = HFEngine(model, tok, progress=False, ignore_eos=True, kv_cache="dynamic", compile="off")
    compiled = HFEngine(model, tok, progress=False, ignore_eos=True, compile="on")
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

        def run_hf():
            with torch.no_grad():
                model.generate(batch, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=True,
                               pad_token_id=tok.pad_token_id, **sampling)

        fns = {"soft": lambda: engine.generate(prompts, soft), "discrete": lambda: engine.generate(prompts, disc),
               "generate": run_hf, "dynamic": lambda: dynamic.generate(prompts, disc),
               "compiled": lambda: compiled.generate(prompts, disc),
               "compiled_soft": lambda: compiled.generate(prompts, soft)}
        weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
        xs = {w.shape[1]: torch.randn(bsz, w.shape[1], dtype=w.dtype) for w in weights}

        def run_weights_only():  # n steps of nothing but one plain matmul per weight matrix
            with torch.no_grad():
                for _ in range(n):
                    for w in weights:
                        torch.nn.functional.linear(xs[w.shape[1]], w)

        fns["weights_only"] = run_weights_only
        fns = {k: v for k, v in fns.items() if k in arms}
        load0 = os.getloadavg()[0]
        c0 = compiled.compile_stats.seconds
        for fn in fns.values():  # warm-up (compiles the compiled arm's shapes)
            fn()
        compile_s = compiled.compile_stats.seconds - c0
        timings: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(args.rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - t0)
        tps = {k: bsz * n / statistics.median(v) for k, v in timings.items()}
        row = {"batch": bsz, "tokens_per_row": n, **{f"{k}_tok_s": round(v, 1) for k, v in tps.items()},
               "compile_s": round(compile_s, 1), "compiled_shapes": compiled.compile_stats.n_compiles,
               "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2)}
        for name, (num, den) in RATIOS.items():
            if num in tps and den in tps:
                row[name] = round(tps[num] / tps[den], 3)
        if "compiled" in fns:  # same shapes as the timed runs: nothing new to compile
            greedy = disc.replace(method="cot_greedy")
            same = [a.token_ids == b.token_ids for a, b in zip(engine.generate(prompts, greedy),
                                                                  compiled.generate(prompts, greedy))]
            row["compiled_equal_greedy_rows"] = f"{sum(same)}/{len(same)}"
        results.append(row)
        print(json.dumps(row), flush=True)
    import transformers

    meta = {"model": args.model, "machine": f"{platform.machine()} {os.cpu_count()} cores", "torch": torch.__version__,
            "transformers": transformers.__version__, "threads": torch.get_num_threads(), "rounds": args.rounds,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    cols = [c for c in ["soft_tok_s", "discrete_tok_s", "generate_tok_s", "dynamic_tok_s", "compiled_tok_s",
                        "compiled_soft_tok_s", "weights_only_tok_s", *RATIOS, "compile_s", "load_before"] if c in results[0]]
    print("\n" + " ".join(f"{c.replace('_tok_s', ''):>{max(8, len(c) - 6)}}" for c in ["batch"] + cols))
    for r in results:
        print(" ".join(f"{str(r[c]):>{max(8, len(c) - 6)}}" for c in ["batch"] + cols))
    print(f"({meta['machine']}, torch {meta['torch']}, {meta['threads']} threads, median of {args.rounds} rounds)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
