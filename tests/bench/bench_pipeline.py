"""The SGLang pipeline on the CPU (make bench-sglang; the .venv-sglang interpreter) or one GPU (make gpu-check,
`--device cuda`), in one invocation:

(a) as before the server groups: one in-process SGLang engine per experiment, each run in fixed synchronous
    batches of `batch_size` (each batch waits for its longest sample);
(b) one server for the model, the runs as concurrent clients, every sample in flight at once.

The profile: `--runs` runs of smollm2-135m (GSM8K and MATH-500 x CoT sampling, Soft Thinking with Gumbel noise,
greedy CoT; sampling up to `--max-new-tokens`, so output lengths are long-tailed: some stop early, many run to the
cap). Both arms generate exactly the same (item, sample) pairs into separate results stores. Prints wall time,
engine/server starts, generated tokens and the mean number of requests in flight, and writes
build/bench/pipeline.json.

Requests in flight: (a) from the recorded lengths, `sum(tokens) / sum over batches of (longest sample)`: the mean
number of a batch's slots still decoding per step; (b) the client's time-weighted mean of open requests.
"""
from __future__ import annotations

import argparse
import json
import platform
import threading
import time
from pathlib import Path

MODEL = "smollm2-135m"


def specs(max_new: int, limit: int, runs: int, device: str = "cpu") -> list[dict]:
    out = []
    for ds in ("gsm8k", "math500"):
        for name, n, gen in (("cot", 4, {"method": "cot_sample"}),
                             ("soft-gumbel", 4, {"method": "soft", "noise": {"kind": "gumbel", "gumbel_tau": 0.5},
                                                 "cold_stop": {"threshold": 0.01, "length": 64}}),
                             ("greedy", 1, {"method": "cot_greedy"})):
            out.append({"model": MODEL, "dataset": ds, "engine": "sglang", "device": device, "limit": limit, "n": n,
                        "generation": dict(gen, max_new_tokens=max_new, batch_size=8)})
    return out[:runs]


def _samples(rd) -> list[dict]:
    return [json.loads(x) for x in Path(rd.samples_path).read_text().splitlines() if x.strip()]


def arm_engine_per_run(spec_dicts: list[dict], runs_dir: Path) -> dict:
    from softthink.generate import _build_engine, generate_run
    from softthink.runspec import RunSpec

    t0, starts, tokens, slot_steps = time.time(), 0, 0, 0
    start_s = 0.0
    for d in spec_dicts:
        spec = RunSpec.from_dict(d)
        s0 = time.time()
        eng = _build_engine(spec)
        start_s += time.time() - s0
        starts += 1
        try:
            rd = generate_run(spec, engine=eng, progress=False, runs_dir=runs_dir)
        finally:
            eng.shutdown()
        recs = _samples(rd)
        lens = [r["num_tokens"] for r in recs]
        bs = spec.generation.batch_size
        tokens += sum(lens)
        slot_steps += sum(max(lens[k:k + bs]) for k in range(0, len(lens), bs))
    return {"wall_s": time.time() - t0, "starts": starts, "start_s": start_s, "tokens": tokens,
            "in_flight_mean": tokens / max(1, slot_steps)}


def arm_one_server(spec_dicts: list[dict], runs_dir: Path, log: Path) -> dict:
    from softthink.generate import generate_run
    from softthink.models import load_tokenizer
    from softthink.runspec import RunSpec
    from softthink.serving import launch_options
    from softthink.sglang_glue.client import ServerEngine
    from softthink.sglang_glue.server import ServerProcess, free_port

    t0 = time.time()
    first = RunSpec.from_dict(spec_dicts[0])
    opts = launch_options(first, port=free_port())
    opts.extra["log_level"] = "warning"
    with ServerProcess(opts, log) as server:
        start_s = server.start_seconds
        tok = load_tokenizer(MODEL)
        engines, dirs, errors = [], [], []

        def client(d):
            try:
                spec = RunSpec.from_dict(dict(d, serving={"url": server.url}))
                eng = ServerEngine.for_spec(server.url, spec, tok)
                engines.append(eng)
                dirs.append(generate_run(spec, engine=eng, progress=False, runs_dir=runs_dir))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=client, args=(d,)) for d in spec_dicts]
        busy = _InFlight(engines)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        busy.stop()
        if errors:
            raise errors[0]
    tokens = sum(r["num_tokens"] for rd in dirs for r in _samples(rd))
    return {"wall_s": time.time() - t0, "starts": 1, "start_s": start_s, "tokens": tokens,
            "in_flight_mean": busy.mean}


class _InFlight:
    """Samples the clients' open requests every 0.2 s (all clients together)."""

    def __init__(self, engines: list):
        self.engines, self.samples, self._stop = engines, [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.2):
            n = sum(e._busy for e in self.engines)
            if n:
                self.samples.append(n)

    def stop(self):
        self._stop.set()
        self._t.join()

    @property
    def mean(self) -> float:
        return sum(self.samples) / max(1, len(self.samples))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--limit", type=int, default=4, help="items per run")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (make gpu-check: one GPU)")
    ap.add_argument("--out", default="build/bench/pipeline.json")
    a = ap.parse_args()
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    sd = specs(a.max_new_tokens, a.limit, a.runs, a.device)
    n_samples = sum(d["limit"] * d["n"] for d in sd)
    where = platform.processor() or platform.machine()
    if a.device == "cuda":
        import torch

        where = torch.cuda.get_device_name(0)
    print(f"{len(sd)} runs of {MODEL}, {n_samples} samples, up to {a.max_new_tokens} tokens each; {a.device}: "
          f"{where}", flush=True)
    b = arm_one_server(sd, tmp / "b", tmp / "server.log")
    print(f"(b) one server, every request in flight: {b}", flush=True)
    a_ = arm_engine_per_run(sd, tmp / "a")
    print(f"(a) an engine per run, fixed batches:     {a_}", flush=True)
    ratio = a_["wall_s"] / b["wall_s"]
    print(f"\n| arm | wall s | starts | start s | tokens | tokens/s | requests in flight |\n|---|---|---|---|---|---|---|")
    for name, r in (("(a) engine per run, batches of 8", a_), ("(b) one server, all in flight", b)):
        print(f"| {name} | {r['wall_s']:.0f} | {r['starts']} | {r['start_s']:.0f} | {r['tokens']} | "
              f"{r['tokens'] / r['wall_s']:.1f} | {r['in_flight_mean']:.1f} |")
    print(f"\n(b) is {ratio:.2f}x faster than (a) (goal: 2x)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"device": where, "a_engine_per_run": a_, "b_one_server": b, "speedup": ratio,
                                       "runs": len(sd), "samples": n_samples, "max_new_tokens": a.max_new_tokens},
                                      indent=1))


if __name__ == "__main__":
    main()
