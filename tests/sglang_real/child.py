"""Run `SGLangEngine` jobs in a child process and print the results as JSON (one engine start per call).

SGLang kills its parent process when a scheduler dies (rc 137), so the tests and the benchmark never start an
engine in their own process: `run_jobs(...)` launches `python child.py SPEC.json` and reads its JSON result.

SPEC: {"model": alias or path, "options": {LaunchOptions fields}, "env": {...},
       "jobs": [{"name", "prompts": [str | [ids]], "config": {GenerationConfig}, "uids": [int] | null}]}
Result: {"start_s", "results": {name: [Generation.to_dict() + "wall_s"]}, "errors": {name: message}}
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def run_jobs(model: str, jobs: list, timeout: float = 900, env: dict | None = None, **options) -> dict:
    spec = {"model": model, "options": {"device": "cpu", **options}, "env": env or {}, "jobs": jobs}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spec.json")
        out = os.path.join(tmp, "out.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        p = subprocess.run([sys.executable, __file__, path, out], capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, **(env or {})))
        if p.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"engine child failed (rc {p.returncode}):\n{p.stderr[-6000:]}")
        with open(out) as f:
            res = json.load(f)
    res["stderr"] = p.stderr
    return res


def main(spec_path: str, out_path: str) -> None:
    from softthink.config import GenerationConfig
    from softthink.sglang_glue.launch import SGLangEngine

    spec = json.load(open(spec_path))
    t0 = time.time()
    eng = SGLangEngine(spec["model"], **spec["options"])
    res = {"start_s": time.time() - t0, "results": {}, "errors": {}}
    try:
        for job in spec["jobs"]:
            cfg = GenerationConfig.from_dict(job["config"])
            t1 = time.time()
            try:
                gens = eng.generate(job["prompts"], cfg, sample_uids=job.get("uids"))
            except Exception as e:  # a refused request: reported, the engine keeps serving
                res["errors"][job["name"]] = f"{type(e).__name__}: {e}"
                continue
            wall = time.time() - t1
            res["results"][job["name"]] = [dict(g.to_dict(), wall_s=wall) for g in gens]
    finally:
        eng.shutdown()
    with open(out_path, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
