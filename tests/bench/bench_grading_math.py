"""Benchmark: math grading throughput through ``grade_many`` (not a pytest test).

Grades the 1,319 GSM8K gold answers, each wrapped as ``</think>\\boxed{gold}``, with a 2-worker pool and
prints items/s. Pool start-up (worker spawn + math-verify import) is timed separately from grading.

    python tests/bench/bench_grading_math.py [--workers 2] [--mode suite|official] [--pad-chars 4000]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

from softthink.data import load_dataset
from softthink.grading import MathGradePool, grade_many


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", default="suite", choices=["suite", "official"])
    ap.add_argument("--pad-chars", type=int, default=0,
                    help="prepend about this many characters of thinking text (with inline LaTeX) to each completion")
    args = ap.parse_args()

    items = load_dataset("gsm8k").items
    pad = ""
    if args.pad_chars:
        unit = "We have $x = \\frac{3}{4}$ so $2x + 1 = 2.5$, then 7 more steps. "
        pad = unit * (args.pad_chars // len(unit) + 1)
    entries = [(it, f"{pad}Reasoning.\n</think>\nThe answer is \\boxed{{{it.answer}}}.") for it in items]

    t0 = time.perf_counter()
    with MathGradePool(args.workers) as pool:
        pool.grade("gsm8k", [("1", "</think>\\boxed{1}")] * args.workers)  # wait until workers are up
        t1 = time.perf_counter()
        grades = grade_many("gsm8k", entries, mode=args.mode, pool=pool)
        t2 = time.perf_counter()
    n_ok = sum(bool(g.correct) for g in grades)
    statuses: dict[str, int] = {}
    for g in grades:
        statuses[g.status] = statuses.get(g.status, 0) + 1
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; workers={args.workers}; "
          f"mode={args.mode}; context={pool.context}; completion length ~{len(entries[0][1])} chars")
    print(f"pool start-up: {t1 - t0:.2f} s")
    print(f"graded {len(grades)} items in {t2 - t1:.2f} s: {len(grades) / (t2 - t1):.1f} items/s "
          f"(correct {n_ok}/{len(grades)}; statuses {statuses})")
    print(f"end to end incl. start-up: {len(grades) / (t2 - t0):.1f} items/s")


if __name__ == "__main__":
    main()
