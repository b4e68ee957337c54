"""Throughput of the code grader: the 164 HumanEval canonical solutions (or the 257 MBPP reference solutions)
through `grade_code_many`.

    python tests/bench/bench_grading_code.py [--dataset humaneval|mbpp] [--workers 2] [--repeat 3] [--mode suite]

Prints programs/s per repeat and the median, with the sandbox isolation level and the machine load (timeouts and
throughput both depend on how busy the machine is; docs/design/evaluation.md §4.1).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from softthink.data import load_dataset
from softthink.execution import grade_code_many, outcome_counts, sandbox_info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--mode", choices=("suite", "official"), default="suite")
    ap.add_argument("--dataset", choices=("humaneval", "mbpp"), default="humaneval")
    args = ap.parse_args()

    ds = load_dataset(args.dataset)
    if args.dataset == "mbpp":
        tag = "python" if args.mode == "official" else "Python"
        pairs = [(it, f"```{tag}\n" + it.meta["code"] + "\n```") for it in ds.items]
    elif args.mode == "suite":
        pairs = [(it, "```python\n" + it.meta["prompt"] + it.meta["canonical_solution"] + "\n```")
                 for it in ds.items]
    else:
        pairs = [(it, "```python\n" + it.meta["canonical_solution"] + "```") for it in ds.items]
    info = sandbox_info()   # detection outside the timed region
    print(f"isolation={info.isolation} network_isolation={info.network_isolation} workers={args.workers} "
          f"dataset={args.dataset} mode={args.mode} cpus={os.cpu_count()} loadavg_before={os.getloadavg()[0]:.2f}")
    rates = []
    for r in range(args.repeat):
        t0 = time.perf_counter()
        grades = grade_code_many(args.dataset, pairs, mode=args.mode, workers=args.workers)
        dt = time.perf_counter() - t0
        counts = {k: v for k, v in outcome_counts(grades).items() if v}
        rates.append(len(pairs) / dt)
        print(f"run {r + 1}: {len(pairs)} programs in {dt:.2f} s = {rates[-1]:.1f} programs/s  {counts}")
    print(f"median: {statistics.median(rates):.1f} programs/s  (loadavg_after={os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
