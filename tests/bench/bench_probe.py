"""Cost of the top-1 reliance probe (make bench): seconds per probed step against a decode step, one process.

Arms, interleaved over rounds, every row generating exactly N tokens of Soft Thinking (K = 10, EOS ignored, the
thinking budget = N so every step feeds a concept):
* plain: `HFEngine` as the probe runs it (static KV cache, eager);
* probe: `softthink.probe.ProbeEngine`, probing every step (two extra forwards: the one-hot top-1 and top-2 inputs).
Reported: s/step of each arm, the probe's own s per probed step (its timer), and probe/plain. Writes
build/bench/probe.json.
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

from softthink import HFEngine, load_model, render_chat
from softthink.chat import encode_prompt
from softthink.probe import ProbeEngine

QUESTIONS = ["What is 12 * 3? Think step by step.", "Is 91 a prime number? Explain.",
             "A train travels 60 km in 45 minutes. What is its speed in km/h?", "Simplify 3/12 and explain."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="build/bench/probe.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    n = args.tokens
    cfg = {"method": "soft", "max_new_tokens": n, "batch_size": 64, "seed": 0,
           "think": {"temperature": 0.6, "top_k": 30, "top_p": 0.95, "min_p": 0.001, "max_topk": 10, "budget": n}}
    plain = HFEngine(model, tok, progress=False, ignore_eos=True, kv_cache="static", compile="off")
    probe = ProbeEngine(model, tok, ignore_eos=True)
    results = []
    for b in [int(x) for x in args.batches.split(",")]:
        prompts = [encode_prompt(tok, render_chat(tok, QUESTIONS[i % len(QUESTIONS)])) for i in range(b)]
        plain.generate(prompts[:1], {**cfg, "max_new_tokens": 4})  # warm-up
        times = {"plain": [], "probe": []}
        own = []
        for _ in range(args.rounds):
            for arm, eng in (("plain", plain), ("probe", probe)):
                probe.timing.update(step=0.0, probe=0.0, steps=0, probed_steps=0)
                t0 = time.perf_counter()
                eng.generate(prompts, cfg)
                times[arm].append((time.perf_counter() - t0) / n)
            own.append(probe.timing["probe"] / max(probe.timing["probed_steps"], 1))
        row = {"batch": b, "tokens": n, "plain_s_per_step": statistics.median(times["plain"]),
               "probe_s_per_step": statistics.median(times["probe"]),
               "probe_own_s_per_probed_step": statistics.median(own)}
        row["probe_over_plain"] = row["probe_s_per_step"] / row["plain_s_per_step"]
        row["probed_step_over_decode_step"] = row["probe_own_s_per_probed_step"] / row["plain_s_per_step"]
        results.append(row)
        print(f"batch {b:3d}: plain {row['plain_s_per_step'] * 1e3:7.1f} ms/step, with probe "
              f"{row['probe_s_per_step'] * 1e3:7.1f} ms/step (x{row['probe_over_plain']:.2f}); probe forwards "
              f"{row['probe_own_s_per_probed_step'] * 1e3:7.1f} ms per probed step "
              f"(x{row['probed_step_over_decode_step']:.2f} a decode step)", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "threads": args.threads, "machine": platform.processor(),
                               "loadavg": os.getloadavg(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
