"""Real SGLang 0.5.23 forward passes on the CPU against the transformers engine, token for token.

Every engine runs in a child process (`child.run_jobs`; a scheduler crash kills its parent). One engine start per
fixture; the jobs of a fixture are the generate calls made on that engine.
"""
from __future__ import annotations

import pytest

from child import run_jobs
from parity import CONFIGS, LONG_QUESTION, MODEL, QUESTIONS, assert_same, items, prompts

ALL = list(CONFIGS)
SUBSET = ["soft", "soft_cold_stop", "soft_gumbel", "moi", "cot_greedy_budget", "cot_greedy"]


def _mixed_items():
    """One batch mixing methods, prompt lengths and finishing steps (rows freed and reused mid-batch)."""
    names = ["soft", "cot_greedy", "soft_cold_stop", "moi", "soft_dirichlet", "thinkrouter", "cot_greedy_budget",
             "avg_embedding"]
    qs = (QUESTIONS * 2)[:len(names)]
    out = []
    for i, (name, q) in enumerate(zip(names, qs)):
        cfg = dict(CONFIGS[name], max_new_tokens=8 + 4 * i)  # rows finish at different steps
        out.append({"prompt": prompts([q])[0], "config": cfg, "uid": 100 + i})
    return out


def _jobs(names):
    return [{"name": n, "items": items(n)} for n in names]


ENGINES = {
    # name: (engine options, environment, jobs)
    "A-overlap": ({"driver": "A"}, {}, _jobs(ALL) + [{"name": "mixed", "items": _mixed_items()}]),
    "A-no-overlap": ({"driver": "A", "disable_overlap_schedule": True}, {}, _jobs(SUBSET)),
    "B-overlap": ({"driver": "B"}, {}, _jobs(ALL) + [{"name": "mixed", "items": _mixed_items()}]),
    "B-no-overlap": ({"driver": "B", "disable_overlap_schedule": True}, {}, _jobs(SUBSET)),
}

_RESULTS = {}


def results(engine: str) -> dict:
    if engine not in _RESULTS:
        options, env, jobs = ENGINES[engine]
        _RESULTS[engine] = run_jobs(MODEL, jobs, env=env, **options)
    return _RESULTS[engine]


def _cases():
    for engine, (_, _, jobs) in ENGINES.items():
        for job in jobs:
            yield pytest.param(engine, job, id=f"{engine}-{job['name']}")


@pytest.mark.parametrize("engine,job", list(_cases()))
def test_parity(engine, job):
    res = results(engine)
    assert job["name"] not in res["errors"], res["errors"][job["name"]]
    assert_same(job["items"], res["results"][job["name"]], f"{engine}/{job['name']}")


def test_driver_b_records_are_json_per_step():
    """Driver B returns the per-step concept (ids, weights, entropy) as plain JSON in meta_info."""
    res = results("B-overlap")
    row = res["results"]["soft"][0]
    info = row["meta"]  # SGLang accumulates customized_info keys straight into meta_info, one element per step
    assert "st_ids" in info, sorted(info)
    assert len(info["st_ids"]) >= row["num_thinking_tokens"] > 0
    first_w = info["st_w"][0]
    assert abs(sum(first_w) - 1.0) < 1e-5 and all(isinstance(i, int) for i in info["st_ids"][0])
    assert all(isinstance(h, float) for h in info["st_H"])
