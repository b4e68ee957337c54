"""Benchmark: math and GPQA grading of long completions (8k and 32k tokens of thinking + answer); not a pytest test.

Completions are built from the datasets' gold answers: a thinking trace of about ``4 * tokens`` characters
(sentences with numbers, inline LaTeX and boxed intermediate values, ~4 characters per token) followed by
``</think>`` and a final answer in one of the corpus forms (tests/grading_corpus.py). Prints items/s per length
and mode, the verdicts (every completion states the gold, so all should be correct), and whether the pool lost
any item: a serial in-process run over a sample must give the same verdicts, with no timeouts.

    python tests/bench/bench_grading_long.py [--workers 2] [--items 400] [--official-items 40]
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # tests/: grading_corpus

from grading_corpus import _GPQA_CORRECT, ANY_GOLD_FORMS, INTEGER_FORMS  # noqa: E402
from softthink.data import load_dataset  # noqa: E402
from softthink.grading import MathGradePool, grade_gpqa, grade_math  # noqa: E402

SENTENCES = [
    "Let me reconsider the constraint: if $x = {a}$ then $x^2 + {b}x = {c}$, which is too large.",
    "So the intermediate total is {a} + {b} = {c}, but I should double-check the units.",
    "Maybe the answer is $\\boxed{{{c}}}$? No wait, that ignores the second condition.",
    "Consider $\\frac{{{a}}}{{{b}}}$ and compare it with $\\sqrt{{{c}}}$; the ratio is about {a}.{b}.",
    "Option ({L}) seemed plausible, but the data rule it out.",
    "Hmm, ${a} \\cdot {b} = {c}$, and subtracting {a} leaves {b}.",
]


def thinking(rng: random.Random, chars: int) -> str:
    out, n = [], 0
    while n < chars:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        s = rng.choice(SENTENCES).format(a=a, b=b, c=a * b, L=rng.choice("ABCD"))
        out.append(s)
        n += len(s) + 1
    return " ".join(out)


def math_completions(tokens: int, n: int, rng: random.Random) -> list[tuple[str, str, str]]:
    golds = [("gsm8k", str(it.answer)) for it in load_dataset("gsm8k").items]
    golds += [("math500", str(it.answer)) for it in load_dataset("math500").items]
    rng.shuffle(golds)
    out = []
    for ds, g in golds[:n]:
        forms = ANY_GOLD_FORMS + (INTEGER_FORMS if ds == "gsm8k" else [])
        _, form = rng.choice(forms)
        out.append((ds, g, thinking(rng, 4 * tokens) + "\n</think>\n\n" + form.format(g=g, plain=g.replace(",", ""))))
    return out


def gpqa_completions(tokens: int, rng: random.Random) -> list[tuple[str, str]]:
    golds = [str(it.answer) for it in load_dataset("gpqa_diamond").items]
    return [(g, thinking(rng, 4 * tokens) + "\n</think>\n\n" + rng.choice(_GPQA_CORRECT)[1].format(x=g))
            for g in golds]


def _pool_grade(pool: MathGradePool, jobs: list[tuple[str, str, str]], mode: str) -> list:
    out: list = [None] * len(jobs)
    for ds in sorted({j[0] for j in jobs}):
        idx = [i for i, j in enumerate(jobs) if j[0] == ds]
        for i, g in zip(idx, pool.grade(ds, [(jobs[i][1], jobs[i][2]) for i in idx], mode)):
            out[i] = g
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--items", type=int, default=400, help="math completions per length")
    ap.add_argument("--official-items", type=int, default=40, help="math completions per length, official mode")
    ap.add_argument("--serial-check", type=int, default=40, help="items re-graded serially to compare verdicts")
    args = ap.parse_args()
    rng = random.Random(0)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"loadavg {os.getloadavg()[0]:.2f}; workers={args.workers}")
    with MathGradePool(args.workers) as pool:
        pool.grade("gsm8k", [("1", "</think>\\boxed{1}")] * args.workers)   # workers up before timing
        for tokens in (8192, 32768):
            jobs = math_completions(tokens, args.items, rng)
            chars = sum(len(j[2]) for j in jobs) / len(jobs)
            for mode, n in (("suite", len(jobs)), ("official", min(args.official_items, len(jobs)))):
                t0 = time.perf_counter()
                grades = _pool_grade(pool, jobs[:n], mode)
                dt = time.perf_counter() - t0
                ok = sum(bool(g.correct) for g in grades)
                timeouts = sum(g.status == "timeout" for g in grades)
                print(f"math {tokens // 1024}k tokens (~{chars / 1000:.0f}k chars) {mode}: {n} items in {dt:.2f} s = "
                      f"{n / dt:.1f} items/s; correct {ok}/{n}; timeouts {timeouts}")
                if mode == "suite":
                    sample = list(range(min(args.serial_check, n)))
                    serial = [grade_math(jobs[i][0], jobs[i][1], jobs[i][2], mode) for i in sample]
                    diff = sum(bool(serial[k].correct) != bool(grades[i].correct) for k, i in enumerate(sample))
                    print(f"   pool vs serial on {len(sample)} items: {diff} verdicts differ")
            gp = gpqa_completions(tokens, rng)
            for mode in ("suite", "official"):
                t0 = time.perf_counter()
                grades = [grade_gpqa(g, c, mode) for g, c in gp]
                dt = time.perf_counter() - t0
                ok = sum(bool(g.correct) for g in grades)
                print(f"gpqa {tokens // 1024}k tokens {mode} (in process, 1 core): {len(gp)} items in {dt:.2f} s = "
                      f"{len(gp) / dt:.1f} items/s; correct {ok}/{len(gp)}")


if __name__ == "__main__":
    main()
