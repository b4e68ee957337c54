"""Refactors keep every cached run cached: the run key of each experiment of the local-model profiles equals the one
recorded before the code was reshaped (tests/golden/run_keys.json, written at commit 2c1d08d by the code of that
time), so `make reproduce` finds the same run directories afterwards.

Package versions (torch, transformers, softthink) are part of a real run key; they are masked here so that the golden
file pins what the code decides (spec, resolved generation config, prompts, dataset slice, model and tokenizer
fingerprints), not what pip installed. Regenerate the golden file only for a change that is meant to invalidate
caches, and say so in the commit.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from softthink import profiles
from softthink.data import DataNotFound, load_dataset
from softthink.runkey import load_tokenizer, run_key, run_slug
from softthink.store import hash_key

GOLDEN = Path(__file__).parent / "golden" / "run_keys.json"
PROFILES = ("ci", "demo", "methods", "sweep")


def masked_key_hash(spec, tokenizers: dict, datasets: dict) -> str:
    if spec.model not in tokenizers:
        tokenizers[spec.model] = load_tokenizer(spec.model)
    if spec.dataset not in datasets:
        datasets[spec.dataset] = load_dataset(spec.dataset)
    key = run_key(spec, tokenizer=tokenizers[spec.model], dataset=datasets[spec.dataset])
    key["engine"] = {"name": key["engine"]["name"]}
    key["softthink"] = None
    return hash_key(key)


def test_run_keys_of_every_local_profile_experiment_are_unchanged():
    golden = json.loads(GOLDEN.read_text())
    tokenizers: dict = {}
    datasets: dict = {}
    seen = {}
    try:
        for name in PROFILES:
            for e in profiles.load_profile(name).experiments:
                spec = e.run_spec()
                if not (spec.model.startswith("tiny-random-") or spec.model == "smollm2-135m"):
                    continue
                seen[f"{name}/{e.name}"] = {"slug": run_slug(spec),
                                            "key_sha256": masked_key_hash(spec, tokenizers, datasets)}
    except DataNotFound as err:
        pytest.skip(f"benchmark files not found: {err}")
    assert set(seen) == set(golden), "experiments added or removed: update tests/golden/run_keys.json deliberately"
    changed = [k for k in golden if seen[k] != golden[k]]
    assert not changed, f"{len(changed)} run keys changed (cached runs would be regenerated), e.g. {changed[:3]}"
