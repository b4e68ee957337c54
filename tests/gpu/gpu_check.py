"""Prepared GPU check for the SGLang plugin's pure-torch parts (`make gpu-check`). Needs only torch + transformers
and one NVIDIA GPU (H100/H200); finishes in a few minutes. Writes a JSON report (default `gpu_check.json`, or
`$OUT/gpu_check.json` when `$OUT` is set) and exits non-zero when a check fails.

1. **graph**: CUDA-graph capture/replay of the decode mixing step (`SoftStateTables.mix`) reading persistent tables
   that are rewritten in place between replays (as the driver does), padded with row 0, bf16 embedding of
   151,936 x 1,536; replay == eager, bit for bit, at batch sizes 1..256.
2. **driver**: the driver step (`driver.driver_step` -> `softthink.core.step`) on random fp32 logits over a
   152,064-id vocabulary at batch 1..256, three consecutive steps on the same rows, on the GPU and on the CPU;
   tokens identical, concept ids identical and weights within 1e-5 except rows whose filter boundary is a near tie
   (reported).
2b. **nosync**: the driver step, the mixing and the forced logits run under `torch.cuda.set_sync_debug_mode("error")`
   (no host synchronisation, as the overlap scheduler needs).
1b. **graph_scaled**: the same through `SoftStateTables.mix_module` with a lookup that scales inside (how the plugin
   mixes on every architecture: the model's own embedding module, e.g. Gemma 3's sqrt(hidden) one).
3. **timing**: decode step time of soft vs discrete (CoT greedy) decoding with `HFEngine` on a randomly
   initialised 1.5B-shaped Qwen2 model (bf16), reported as a ratio, plus the plugin's own per-step costs
   (mixing + driver) at batch 1..256.

4. **engine**: the transformers engine's decode throughput on a random Qwen2-0.5B-shaped model (bf16): static KV
   cache eager, the compiled decode forward (torch.compile mode "reduce-overhead": CUDA graphs) and transformers'
   `generate`, soft vs discrete, at batch 1, 8, 32 (interleaved rounds, compile time separate), plus the greedy
   tokens of compiled vs eager (common prefix per row; bf16 logits can tie, so this is reported, not asserted).
5. **families** (`gpu_families.py`, needs SGLang): soft thinking, Cold Stop and greedy decoding through SGLang vs
   `HFEngine` token for token on the tiny DeepSeek-V3 / V2 (MLA + MoE, not runnable on SGLang's CPU path) and
   Qwen3-MoE checkpoints, eager and with CUDA graphs; reported as skipped where SGLang is not installed.

CPU smoke run (logic only, small shapes, no graphs): `python tests/gpu/gpu_check.py --device cpu --small`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from softthink.config import GenerationConfig  # noqa: E402
from softthink.sglang_glue import driver as D  # noqa: E402
from softthink.sglang_glue import tables as T  # noqa: E402

BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------------- 1. graph
def check_graph(dev, vocab, hidden, batches, kmax=30, rows=1024, scale=None):
    """`scale=None`: `tables.mix` on the weight matrix; a number: `tables.mix_module` through a lookup that
    multiplies inside (Gemma 3's embedding module, the every-architecture path of sglang_glue.models)."""
    res = {"vocab": vocab, "hidden": hidden, "kmax": kmax, "scale": scale, "batches": {}}
    g = torch.Generator(device="cpu").manual_seed(0)
    weight = (torch.randn(vocab, hidden, generator=g) * 0.02).to(dev, torch.bfloat16)
    tb = T.SoftStateTables(rows, kmax, device=dev)
    tb.note_width(kmax)
    if scale is not None:
        def lookup(x):
            return torch.nn.functional.embedding(x, weight) * scale

        def run_mix(r, ids):
            return tb.mix_module(lookup, r, ids)
    else:
        def lookup(x):
            return torch.nn.functional.embedding(x, weight)

        def run_mix(r, ids):
            return tb.mix(weight, r, ids)
    ok_all = True
    for bs in batches:
        n_live = max(1, bs - bs // 4)  # the rest is padding (row 0)
        r_static = torch.zeros(bs, dtype=torch.int64, device=dev)
        ids_static = torch.zeros(bs, dtype=torch.int64, device=dev)
        use_graph = dev.type == "cuda"
        if use_graph:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(2):  # warm-up outside the graph
                    run_mix(r_static, ids_static)
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out_static = run_mix(r_static, ids_static)
        worst = 0.0
        for step in range(4):
            gen = torch.Generator(device="cpu").manual_seed(1000 * bs + step)
            live_rows = torch.randperm(rows - 1, generator=gen)[:n_live] + 1
            r = torch.cat([live_rows, torch.zeros(bs - n_live, dtype=torch.int64)])
            ids = torch.randint(0, vocab, (bs,), generator=gen)
            # the driver's in-place writes between replays
            act = torch.rand(n_live, generator=gen) < 0.7
            w = torch.rand(n_live, kmax, generator=gen)
            w[:, kmax // 2:] *= (torch.rand(n_live, 1, generator=gen) < 0.5)
            w = w / w.sum(-1, keepdim=True)
            cid = torch.randint(0, vocab, (n_live, kmax), generator=gen)
            tb.scatter(live_rows.to(dev), {"active": act.to(dev), "w": w.to(dev), "ids": cid.to(dev)})
            r_static.copy_(r.to(dev))
            ids_static.copy_(ids.to(dev))
            eager = run_mix(r.to(dev), ids.to(dev))
            if use_graph:
                graph.replay()
                got = out_static.clone()
            else:
                got = run_mix(r_static, ids_static)
            _sync(dev)
            diff = (got.float() - eager.float()).abs().max().item()
            worst = max(worst, diff)
            # inactive rows and padding are the plain lookup, bit for bit
            plain = lookup(ids.to(dev))
            inactive = ~tb.active[r.to(dev)]
            if not torch.equal(got[inactive], plain[inactive]):
                worst = max(worst, float("inf"))
        row0_clean = (not bool(tb.active[0])) and float(tb.w[0].abs().sum()) == 0.0
        ok = worst == 0.0 and row0_clean
        ok_all &= ok
        res["batches"][bs] = {"max_abs_diff": worst, "row0_clean": row0_clean, "graph": use_graph, "ok": ok}
    res["ok"] = ok_all
    return res


# ---------------------------------------------------------------------------------------------------- 2. driver
def _specs(n, marker, eos):
    cfgs = [
        {"method": "soft", "think": {"max_topk": 10, "top_k": 30, "top_p": 0.95, "min_p": 0.001, "temperature": 0.6},
         "cold_stop": {"threshold": 0.5, "length": 2}, "preset": "as_published"},
        {"method": "soft", "think": {"max_topk": 15, "top_k": -1, "top_p": 0.9, "min_p": 0.0}, "seed": 3},
        {"method": "soft", "think": {"max_topk": 5}, "noise": {"kind": "gumbel", "rng": "counter"}, "seed": 5},
        {"method": "soft", "think": {"max_topk": 10}, "noise": {"kind": "dirichlet", "rng": "counter"},
         "answer": {"mode": "sample", "temperature": 0.7}},
    ]
    specs = []
    for i in range(n):
        cfg = GenerationConfig.from_dict(cfgs[i % len(cfgs)])
        p = D.soft_custom_params(cfg, marker, [eos], uid=i)
        specs.append(D.RequestSpec.from_params(p))
    return specs


def _near_tie(z, spec, tol=1e-5):
    """Is this row's filter boundary a near tie (top-p cumulative mass or min-p threshold within tol)?"""
    cfg = spec.cfg
    p = torch.softmax(z.double() / cfg.think.temperature, -1)
    vals, _ = torch.topk(p, min(4096, p.numel()))
    k = cfg.think.top_k if cfg.think.top_k > 0 else vals.numel()
    v = vals[:k] / vals[:k].sum()
    c = torch.cumsum(v, 0) - v
    near_p = bool(((c - cfg.think.top_p).abs() < tol).any())
    near_m = bool(((vals[:k] - cfg.think.min_p * vals[0]).abs() < tol * vals[0]).any())
    top2 = bool((vals[0] - vals[1]) / vals[0] < tol)
    return near_p or near_m or top2


def check_driver(dev, vocab, batches, steps=3, rows=1024):
    res = {"vocab": vocab, "batches": {}}
    marker, eos = [vocab - 5], vocab - 1
    ok_all = True
    for bs in batches:
        gen = torch.Generator(device="cpu").manual_seed(bs)
        r = torch.randperm(rows - 1, generator=gen)[:bs] + 1
        specs = _specs(bs, marker, eos)
        tb_cpu = T.SoftStateTables(rows, 30)
        tb_dev = T.SoftStateTables(rows, 30, device=dev)
        tb_cpu.reset_rows(r)
        tb_dev.reset_rows(r.to(dev))
        mism_tok = mism_concept = near = 0
        t_dev = 0.0
        for step in range(steps):
            z = torch.randn(bs, vocab, generator=gen) * 3.0
            z[:, marker[0]] -= 5.0
            out_c = D.driver_step(tb_cpu, z, r, specs)
            _sync(dev)
            t0 = time.perf_counter()
            out_d = D.driver_step(tb_dev, z.to(dev), r.to(dev), specs)
            _sync(dev)
            t_dev += time.perf_counter() - t0
            tok_c, tok_d = out_c.token, out_d.token.cpu()
            for i in range(bs):
                if int(tok_c[i]) != int(tok_d[i]):
                    if _near_tie(z[i], specs[i]):
                        near += 1
                    else:
                        mism_tok += 1
            ids_c, w_c = tb_cpu.ids[r], tb_cpu.w[r]
            ids_d, w_d = tb_dev.ids[r.to(dev)].cpu(), tb_dev.w[r.to(dev)].cpu()
            for i in range(bs):
                nz = w_c[i] > 0
                same = torch.equal(nz, w_d[i] > 0) and torch.equal(ids_c[i][nz], ids_d[i][nz]) and \
                    float((w_c[i] - w_d[i]).abs().max()) <= 1e-5
                if not same:
                    if _near_tie(z[i], specs[i]):
                        near += 1
                    else:
                        mism_concept += 1
            for name in ("think", "cnt", "step", "nthink", "abort", "active"):
                if not torch.equal(getattr(tb_cpu, name)[r], getattr(tb_dev, name)[r.to(dev)].cpu()):
                    mism_concept += 1
        ok = mism_tok == 0 and mism_concept == 0
        ok_all &= ok
        res["batches"][bs] = {"token_mismatch": mism_tok, "concept_mismatch": mism_concept, "near_ties": near,
                              "device_ms_per_step": 1000 * t_dev / steps, "ok": ok}
    res["ok"] = ok_all
    return res


# ---------------------------------------------------------------------------------------------------- 2b. no sync
def check_nosync(dev, vocab, bs=64, rows=1024):
    """The driver step and the mixing must not synchronise the host with the GPU (the overlap scheduler launches
    step t+1 while step t runs): run them under `torch.cuda.set_sync_debug_mode("error")` after a warm-up that fills
    the per-config parameter cache."""
    if dev.type != "cuda":
        return {"ok": True, "skipped": "needs CUDA"}
    tb = T.SoftStateTables(rows, 30, device=dev)
    r = torch.arange(1, bs + 1, device=dev)
    specs = _specs(bs, [vocab - 5], vocab - 1)
    weight = torch.randn(vocab, 256, device=dev, dtype=torch.bfloat16)
    z = torch.randn(bs, vocab, device=dev)
    ids = torch.randint(0, vocab, (bs,), device=dev)
    tb.reset_rows(r)
    D.driver_step(tb, z, r, specs)  # warm-up: parameter cache
    torch.cuda.synchronize()
    res = {"ok": True}
    for name, fn in (("mix", lambda: tb.mix(weight, r, ids)),
                     ("driver", lambda: D.driver_step(tb, z, r, specs)),
                     ("force_logits", lambda: D.force_logits(z, ids, ids % 2 == 0))):
        try:
            torch.cuda.set_sync_debug_mode("error")
            fn()
            res[name] = "no sync"
        except Exception as e:
            res[name] = f"SYNC: {e!r}"[:500]
            res["ok"] = False
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return res


# ---------------------------------------------------------------------------------------------------- 3. timing
def tiny_or_15b(small: bool):
    from transformers import Qwen2Config

    if small:
        return Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    # Qwen2.5-1.5B / DeepSeek-R1-Distill-Qwen-1.5B shape
    return Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                       num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                       tie_word_embeddings=True, rope_theta=10000.0)


class _ByteTok:
    """Enough tokenizer for HFEngine on id prompts."""

    def __init__(self, eos, think_id):
        self.eos_token_id, self.pad_token_id, self.think_id = eos, eos, think_id

    def encode(self, text, add_special_tokens=False):
        return [self.think_id] if text == "</think>" else [ord(c) % 200 + 3 for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(65 + (i % 26)) for i in ids)


def check_timing(dev, small, batches, new_tokens=64):
    from transformers import AutoModelForCausalLM

    from softthink.engine import HFEngine

    cfg_m = tiny_or_15b(small)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(dev):
        try:
            model = AutoModelForCausalLM.from_config(cfg_m, dtype=dtype)
        except TypeError:  # transformers < 4.56
            model = AutoModelForCausalLM.from_config(cfg_m, torch_dtype=dtype)
    model.eval()
    model.generation_config.eos_token_id = cfg_m.vocab_size - 1
    tok = _ByteTok(cfg_m.vocab_size - 1, cfg_m.vocab_size - 2)
    eng = HFEngine(model, tok, progress=False)
    prompts = [[(7 * i + j) % 1000 + 3 for j in range(32)] for i in range(max(batches))]
    res = {"model": "random Qwen2 1.5B shape" if not small else "tiny", "dtype": str(dtype), "new_tokens": new_tokens,
           "batches": {}}
    for bs in batches:
        row = {}
        for method in ("cot_greedy", "soft"):
            cfg = GenerationConfig.from_dict({"method": method, "max_new_tokens": new_tokens, "batch_size": bs,
                                              "think": {"max_topk": 10}, "cold_stop": {"threshold": 0.0}})
            eng.generate(prompts[:bs], cfg.replace(max_new_tokens=4))  # warm-up
            _sync(dev)
            t0 = time.perf_counter()
            gens = eng.generate(prompts[:bs], cfg)
            _sync(dev)
            dt = time.perf_counter() - t0
            steps = max(len(g.token_ids) for g in gens)
            row[method] = {"s": dt, "ms_per_step": 1000 * dt / max(1, steps)}
        row["soft_over_discrete"] = row["soft"]["ms_per_step"] / row["cot_greedy"]["ms_per_step"]
        res["batches"][bs] = row
    del model
    # the plugin's own per-step costs on the 1.5B shapes: in-graph mixing + driver (eager)
    vocab, hidden = cfg_m.vocab_size, cfg_m.hidden_size
    weight = torch.randn(vocab, hidden, device=dev, dtype=dtype) * 0.02
    tb = T.SoftStateTables(1024, 30, device=dev)
    plug = {}
    for bs in batches:
        r = torch.arange(1, bs + 1, device=dev)
        specs = _specs(bs, [vocab - 5], vocab - 1)
        specs = [specs[0]] * bs  # the published setting for every row
        tb.reset_rows(r)
        z = torch.randn(bs, vocab, device=dev)
        ids = torch.randint(0, vocab, (bs,), device=dev)
        for _ in range(2):
            D.driver_step(tb, z, r, specs)
            tb.mix(weight, r, ids)
        _sync(dev)
        n = 10
        t0 = time.perf_counter()
        for _ in range(n):
            tb.mix(weight, r, ids)
        _sync(dev)
        t1 = time.perf_counter()
        for _ in range(n):
            D.driver_step(tb, z, r, specs)
        _sync(dev)
        t2 = time.perf_counter()
        plug[bs] = {"mix_ms": 1000 * (t1 - t0) / n, "driver_ms": 1000 * (t2 - t1) / n}
    res["plugin_per_step"] = plug
    res["ok"] = True
    return res


# ---------------------------------------------------------------------------------------------------- 4. engine
def qwen2_05b(small: bool):
    from transformers import Qwen2Config

    if small:
        return tiny_or_15b(True)
    # Qwen2.5-0.5B shape
    return Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       tie_word_embeddings=True, rope_theta=1000000.0)


def check_engine(dev, small, batches, new_tokens=64, rounds=3):
    from transformers import AutoModelForCausalLM

    from softthink.engine import HFEngine

    cfg_m = qwen2_05b(small)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(dev):
        try:
            model = AutoModelForCausalLM.from_config(cfg_m, dtype=dtype, attn_implementation="sdpa")
        except TypeError:  # transformers < 4.56
            model = AutoModelForCausalLM.from_config(cfg_m, torch_dtype=dtype, attn_implementation="sdpa")
    model.eval()
    eos = cfg_m.vocab_size - 1
    model.generation_config.eos_token_id = eos
    tok = _ByteTok(eos, cfg_m.vocab_size - 2)
    eager = HFEngine(model, tok, progress=False, ignore_eos=True, compile="off")
    comp = HFEngine(model, tok, progress=False, ignore_eos=True, compile="on")
    sampling = {"temperature": 0.6, "top_k": 30, "top_p": 0.95}
    disc = GenerationConfig.from_dict({"method": "cot_sample", "max_new_tokens": new_tokens, "batch_size": 256,
                                       "think": sampling})
    soft = GenerationConfig.from_dict({"method": "soft", "max_new_tokens": new_tokens, "batch_size": 256,
                                       "think": {**sampling, "min_p": 0.001, "max_topk": 10}})
    greedy = GenerationConfig.from_dict({"method": "cot_greedy", "max_new_tokens": new_tokens, "batch_size": 256})
    res = {"model": "random Qwen2 0.5B shape" if not small else "tiny", "dtype": str(dtype),
           "new_tokens": new_tokens, "batches": {}}
    for bs in batches:
        prompts = [[(7 * i + j) % 1000 + 3 for j in range(24 + i % 9)] for i in range(bs)]
        ids = torch.full((bs, max(map(len, prompts))), eos, device=dev)
        mask = torch.zeros_like(ids)
        for r, p in enumerate(prompts):
            ids[r, ids.shape[1] - len(p):] = torch.tensor(p, device=dev)
            mask[r, ids.shape[1] - len(p):] = 1

        def run_hf():
            with torch.no_grad():
                model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                               do_sample=True, pad_token_id=eos, **sampling)

        arms = {"eager": lambda: eager.generate(prompts, disc), "eager_soft": lambda: eager.generate(prompts, soft),
                "compiled": lambda: comp.generate(prompts, disc),
                "compiled_soft": lambda: comp.generate(prompts, soft), "generate": run_hf}
        c0 = comp.compile_stats.seconds
        for fn in arms.values():  # warm-up; compiles the compiled arm's shapes
            fn()
        _sync(dev)
        compile_s = comp.compile_stats.seconds - c0
        times = {k: [] for k in arms}
        for _ in range(rounds):
            for k, fn in arms.items():
                _sync(dev)
                t0 = time.perf_counter()
                fn()
                _sync(dev)
                times[k].append(time.perf_counter() - t0)
        tps = {k: bs * new_tokens / sorted(v)[len(v) // 2] for k, v in times.items()}
        a, b = eager.generate(prompts, greedy), comp.generate(prompts, greedy)
        prefix = [next((i for i, (x, y) in enumerate(zip(g.token_ids, h.token_ids)) if x != y), len(g.token_ids))
                  for g, h in zip(a, b)]
        res["batches"][bs] = {**{f"{k}_tok_s": round(v, 1) for k, v in tps.items()}, "compile_s": round(compile_s, 1),
                              "eager_over_generate": tps["eager"] / tps["generate"],
                              "compiled_over_generate": tps["compiled"] / tps["generate"],
                              "soft_over_discrete_eager": tps["eager_soft"] / tps["eager"],
                              "soft_over_discrete_compiled": tps["compiled_soft"] / tps["compiled"],
                              "greedy_identical_rows": sum(p == new_tokens for p in prefix), "rows": bs,
                              "greedy_min_common_prefix": min(prefix)}
    res["compiled_shapes"] = comp.compile_stats.shapes
    res["ok"] = True
    return res


# ---------------------------------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="small shapes (CPU smoke run)")
    ap.add_argument("--only", nargs="*",
                    default=["graph", "graph_scaled", "driver", "nosync", "timing", "engine", "families"])
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "gpu_check.json"))
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run on a GPU machine or use --device cpu --small for a smoke run")
        return 2
    report = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    small = a.small
    vocab, hidden = (4096, 64) if small else (151936, 1536)
    batches = [1, 2, 8, 32] if small else BATCHES
    t_start = time.time()
    checks = {
        "graph": lambda: check_graph(dev, vocab, hidden, batches),
        "graph_scaled": lambda: check_graph(dev, vocab, hidden, batches, scale=8.0),
        "driver": lambda: check_driver(dev, 2048 if small else 152064, batches),
        "nosync": lambda: check_nosync(dev, 2048 if small else 152064),
        "timing": lambda: check_timing(dev, small, [1, 4] if small else [1, 16, 64]),
        "engine": lambda: check_engine(dev, small, [1, 8] if small else [1, 8, 32], new_tokens=16 if small else 64),
        # SGLang end to end on the families its CPU path cannot run (DeepSeek MLA); skipped without SGLang
        "families": lambda: __import__("gpu_families").check_families(
            a.device, ["tiny-random-qwen3moe"] if small else None, graphs=not small),
    }
    ok = True
    for name in a.only:
        t0 = time.time()
        try:
            report[name] = checks[name]()
        except Exception as e:  # keep going, report the failure
            report[name] = {"ok": False, "error": repr(e), "traceback": traceback.format_exc()}
        report[name]["seconds"] = round(time.time() - t0, 1)
        if report[name].get("ok") is None and "skipped" in report[name]:
            print(f"[{name}] skipped: {report[name]['skipped']}", flush=True)
            continue
        ok &= bool(report[name].get("ok"))
        print(f"[{name}] ok={report[name].get('ok')} ({report[name]['seconds']} s)", flush=True)
    report["ok"], report["seconds"] = ok, round(time.time() - t_start, 1)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1, default=str)
    summary = {k: v for k, v in report.items() if not isinstance(v, dict)}
    print(json.dumps(summary))
    if "timing" in report and "batches" in report["timing"]:
        for bs, row in report["timing"]["batches"].items():
            print(f"timing bs={bs}: soft/discrete step time = {row['soft_over_discrete']:.3f}")
    if "engine" in report and "batches" in report["engine"]:
        for bs, row in report["engine"]["batches"].items():
            print(f"engine bs={bs}: eager/generate {row['eager_over_generate']:.2f}, compiled/generate "
                  f"{row['compiled_over_generate']:.2f}, soft/discrete {row['soft_over_discrete_eager']:.2f} (eager) "
                  f"{row['soft_over_discrete_compiled']:.2f} (compiled), compile {row['compile_s']} s, greedy rows "
                  f"identical {row['greedy_identical_rows']}/{row['rows']}")
    print(f"report: {a.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
