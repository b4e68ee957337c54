"""Prepared GPU check: soft thinking on the architecture families SGLang's CPU path cannot run (`make gpu-check`
runs it when SGLang is importable; `python tests/gpu/gpu_families.py` alone).

DeepSeek-V2 / V3 (MLA + MoE): on the CPU SGLang 0.5.23 runs MLA only through its intel_amx attention backend,
whose kernels need a real sgl-kernel CPU build (the torch-native backend fails, see
tests/sglang_real/test_cpu_families.py); on a GPU the stock CUDA backends run it. Gemma 2: SGLang's CPU forward
differs from transformers' already in the prefill logits (greedy agrees; soft thinking cannot be compared there).

Per family: one SGLang engine (`SGLangEngine(device="cuda")`, fp32, deterministic inference, the tiny seeded
checkpoint of `softthink.tiny_models`), soft thinking, soft thinking with Cold Stop firing and greedy decoding
against `HFEngine` on the same GPU in fp32 (greedy token for token, soft rows by the drift rule of the CPU family
test); with CUDA graphs off (eager) and, for the first family, on (the mixing inside the captured decode graph).
Also one CPU-verified family (Qwen3-MoE) as a control: if it fails here, the failure is the GPU setup's.

CPU smoke run of the script's logic on a CPU-verified family: `python tests/gpu/gpu_families.py --device cpu
--families tiny-random-qwen3moe --no-graphs`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "sglang_real"))

GPU_FAMILIES = ["tiny-random-deepseekv3", "tiny-random-deepseekv2", "tiny-random-gemma2", "tiny-random-qwen3moe"]
QUESTIONS = ["What is 2+3?", "Name a prime number larger than 10.", "What is the capital of France?",
             "Count to five."]
N = 16
CONFIGS = {
    "soft": {"method": "soft", "max_new_tokens": N},
    "soft_cold_stop": {"method": "soft", "max_new_tokens": N, "cold_stop": {"threshold": 1.0, "length": 2}},
    "cot_greedy": {"method": "cot_greedy", "max_new_tokens": N},
}


def sglang_available() -> str | None:
    """None when SGLang is importable, else why not."""
    import importlib.util

    try:
        return None if importlib.util.find_spec("sglang.srt") is not None else "sglang is not installed"
    except (ImportError, ValueError) as e:
        return f"sglang is not importable ({e})"


def check_family(model: str, device: str, graphs: bool) -> dict:
    import torch

    from child import run_jobs
    from test_cpu_families import row_problems  # the CPU family test's rule, the same on the GPU
    from softthink.chat import render_chat
    from softthink.engine import HFEngine
    from softthink.models import load_model

    m, tok = load_model(model, device=device, dtype="float32")
    hf = HFEngine(m, tok, progress=False)
    items = {name: [{"prompt": render_chat(tok, q), "config": cfg, "uid": i} for i, q in enumerate(QUESTIONS)]
             for name, cfg in CONFIGS.items()}
    ref = {name: [hf.generate([it["prompt"]], dict(it["config"], trace=True), sample_uids=[it["uid"]],
                              progress=False)[0] for it in its] for name, its in items.items()}
    del hf, m
    if device == "cuda":
        torch.cuda.empty_cache()
    out = {"model": model, "runs": {}}
    modes = [("eager", {"disable_cuda_graph": True})]
    if graphs and device == "cuda":
        modes.append(("cuda_graph", {"cuda_graph_bs": [1, 2, 4, 8], "disable_cuda_graph": False}))
    ok = True
    for label, opts in modes:
        t0 = time.time()
        extra = {"dtype": "float32", "deterministic": device == "cuda"}
        if device == "cuda":
            extra.update(mem_fraction_static=0.5, max_running_requests=8)
        res = run_jobs(model, [{"name": n, "items": its} for n, its in items.items()], timeout=900,
                       device=device, driver="B", **extra, **opts)  # B: per-step concept records
        run = {"seconds": round(time.time() - t0, 1), "jobs": {}}
        for name in CONFIGS:
            if name in res["errors"]:
                run["jobs"][name] = {"ok": False, "error": res["errors"][name]}
            else:
                problems = row_problems(name, ref[name], res["results"][name])
                run["jobs"][name] = {"ok": not problems, "problems": problems}
            ok &= run["jobs"][name]["ok"]
        out["runs"][label] = run
    fired = any(r.think_end_step is not None for r in ref["soft_cold_stop"])
    out["cold_stop_fired_in_reference"] = fired
    out["ok"] = ok and fired
    return out


def check_families(device: str = "cuda", families=None, graphs: bool = True) -> dict:
    why = sglang_available()
    if why:
        return {"ok": None, "skipped": why + ": install softthink[sglang] on the GPU machine to run it"}
    report, ok = {"families": {}}, True
    for i, model in enumerate(families or GPU_FAMILIES):
        try:  # CUDA graphs on the first family only: each engine start costs a minute of device time
            report["families"][model] = check_family(model, device, graphs and i == 0)
        except Exception as e:  # noqa: BLE001 - keep going, report it
            report["families"][model] = {"ok": False, "error": repr(e)[-3000:], "traceback": traceback.format_exc()}
        ok &= bool(report["families"][model].get("ok"))
        print(f"[families] {model}: ok={report['families'][model].get('ok')}", flush=True)
    report["ok"] = ok
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--families", nargs="*", default=None)
    ap.add_argument("--no-graphs", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_families.json"))
    a = ap.parse_args(argv)
    report = check_families(a.device, a.families, graphs=not a.no_graphs)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(json.dumps({k: v for k, v in report.items() if k != "families"}), f"report: {a.out}")
    return 0 if report.get("ok") in (True, None) else 1


if __name__ == "__main__":
    sys.exit(main())
