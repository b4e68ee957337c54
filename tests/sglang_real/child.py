"""Run `SGLangEngine` jobs in a child process and return the results as JSON (one engine start per call).

SGLang kills its parent process when a scheduler dies (rc 137), so the tests and the benchmark never start an
engine in their own process: `run_jobs(...)` launches `python child.py SPEC.json OUT.json` and reads the result.

A job is one `generate` call:
* `{"name", "items": [{"prompt": str | [ids], "config": {...}, "uid": int}]}` - `SGLangEngine.generate_mixed`
  (methods may differ inside the batch); the result holds `Generation.to_dict()` plus SGLang's `meta_info`;
* `{"name", "raw": {Engine.generate kwargs}}` - the stock `sgl.Engine.generate` (n > 1, grammar requests,
  hand-made bad requests); the result is SGLang's own output list.
Result: {"start_s", "results": {name: [...]}, "errors": {name: message}, "wall_s": {name: s}}
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time


def run_jobs(model: str, jobs: list, timeout: float = 1200, env: dict | None = None, **options) -> dict:
    spec = {"model": model, "options": {"device": "cpu", **options}, "jobs": jobs}
    with tempfile.TemporaryDirectory() as tmp:
        path, out = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
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
    from softthink.sglang_glue.launch import SGLangEngine

    spec = json.load(open(spec_path))
    t0 = time.time()
    eng = SGLangEngine(spec["model"], **spec["options"])
    res = {"start_s": time.time() - t0, "results": {}, "errors": {}, "wall_s": {}}
    try:
        for job in spec["jobs"]:
            t1 = time.time()
            try:
                if "raw" in job:
                    out = eng._engine.generate(**job["raw"])
                    res["results"][job["name"]] = json.loads(json.dumps(out))  # must serialise as it is
                else:
                    items = job["items"]
                    gens = eng.generate_mixed([it["prompt"] for it in items], [it["config"] for it in items],
                                              [it.get("uid", i) for i, it in enumerate(items)])
                    res["results"][job["name"]] = [dict(g.to_dict(), meta=json.loads(json.dumps(m)))
                                                   for g, m in zip(gens, eng.last_meta)]
            except Exception as e:  # noqa: BLE001 - reported per job; the engine keeps serving the next one
                res["errors"][job["name"]] = f"{type(e).__name__}: {e}"
            res["wall_s"][job["name"]] = time.time() - t1
    finally:
        eng.shutdown()
    with open(out_path, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
