"""The serving layout without SGLang: the `serving` section's validation, the memory sizing rule on the paper's
models, which keys reach the run key, grouping experiments by model and layout, and packing groups onto GPUs."""
from __future__ import annotations

import threading
import time

import pytest

from softthink.config import ConfigError
from softthink.groups import group_experiments, pack_groups
from softthink.runspec import RunSpec
from softthink.serving import KNOWN_SHAPES, ServingSpec, shape_from_config, size_layout

BASE = {"model": "tiny-random-qwen2", "dataset": "gsm8k", "engine": "sglang", "device": "cpu", "limit": 1}


@pytest.mark.parametrize("serving, words", [
    ({"tp_sise": 2}, "did you mean 'serving.tp_size'"),
    ({"tp_size": 0}, "serving.tp_size"),
    ({"mem_fraction_static": 1.2}, "serving.mem_fraction_static"),
    ({"driver": "C"}, "serving.driver"),
    ({"url": "localhost:30000"}, "serving.url"),
    ({"api_key": "abc"}, "secrets come from the environment"),
    ({"kmax": 4}, "serving.kmax: 4 is below generation.think.max_topk 10"),
    ({"nnodes": 2, "tp_size": 16}, "multi-node server"),
])
def test_bad_serving_sections_name_the_key(serving, words):
    with pytest.raises(ConfigError, match=None) as e:
        RunSpec.from_dict(dict(BASE, serving=serving, generation={"method": "soft"}))
    assert words in str(e.value)


def test_serving_is_for_sglang_only():
    with pytest.raises(ConfigError, match="engine 'sglang' only"):
        RunSpec.from_dict(dict(BASE, engine="hf", serving={"tp_size": 2}))


def test_sizing_of_the_paper_models():
    qwq = size_layout("Qwen/QwQ-32B", ServingSpec(tp_size=8, mem_fraction_static=0.8), "bfloat16", 32768)
    assert round(qwq.weights_gb, 1) == 65.5 and qwq.kv_bytes_per_token == 256 * 1024
    assert qwq.max_running_requests == int(0.9 * qwq.kv_tokens / (1024 + 32768)) > 30
    with pytest.raises(ConfigError) as e:  # 141 GB of weights on one 80 GB GPU: refused with the numbers
        size_layout("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", ServingSpec(tp_size=1), "bfloat16", 32768)
    msg = str(e.value)
    assert "weights 141.1 GB" in msg and "320 KiB per token" in msg and "tp_size 4 would fit" in msg
    # a layout that holds the weights but not one request of this length
    with pytest.raises(ConfigError, match="cannot hold one request"):
        size_layout("Qwen/QwQ-32B", ServingSpec(tp_size=2, gpu_memory_gb=40), "bfloat16", 32768)


def test_shape_from_a_config_counts_parameters_and_kv():
    cfg = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "intermediate_size": 128, "vocab_size": 1000, "tie_word_embeddings": True}
    s = shape_from_config(cfg)
    assert s.kv_bytes_per_token(2) == 2 * 2 * 2 * 16 * 2  # layers x (K and V) x kv heads x head dim x bytes
    attn = 64 * 64 + 2 * 64 * 32 + 64 * 64
    assert s.params == 1000 * 64 + 2 * (attn + 3 * 64 * 128)
    assert KNOWN_SHAPES["Qwen/QwQ-32B"].layers == 64


def test_tp_and_driver_change_the_run_key_layout_does_not():
    from softthink.runkey import run_key

    def key(serving):
        return run_key(RunSpec.from_dict(dict(BASE, serving=serving)))

    default = key(None)
    assert "serving" not in default  # older runs keep their keys
    assert key({"dp_size": 2, "max_running_requests": 8, "url": "http://127.0.0.1:1"}) == default
    assert key({"tp_size": 2})["serving"] == {"tp_size": 2, "driver": "A"}
    assert key({"driver": "B"}) != default


def test_groups_by_model_and_layout():
    specs = {"a": dict(BASE), "b": dict(BASE, n=4), "c": dict(BASE, serving={"dp_size": 2}),
             "d": dict(BASE, model="tiny-random-llama"), "e": dict(BASE, engine="hf"), "f": dict(BASE, engine="hf")}
    groups = group_experiments(list(specs), {k: RunSpec.from_dict(v) for k, v in specs.items()})
    assert [g.experiments for g in groups] == [["a", "b"], ["c"], ["d"], ["e", "f"]]
    assert [g.engine for g in groups] == ["sglang", "sglang", "sglang", "hf"]
    assert len({g.key for g in groups}) == 4 and groups[1].layout["dp_size"] == 2


def test_pack_groups_on_disjoint_gpus_largest_first():
    from softthink.groups import Group

    groups = [Group(f"g{i}", "sglang", "m", "cuda", n, 1, [f"e{i}"]) for i, n in enumerate([2, 8, 4, 2, 16])]
    active, seen, lock = set(), [], threading.Lock()

    def run_one(g, gpus):
        with lock:
            assert not active & set(gpus), "two groups share a GPU"
            active.update(gpus)
            seen.append((g.key, tuple(gpus)))
        time.sleep(0.05)
        with lock:
            active.difference_update(gpus)
        return g.key

    res = pack_groups(groups, 8, run_one)
    assert res[:4] == ["g0", "g1", "g2", "g3"] and isinstance(res[4], ValueError)  # 16 GPUs on an 8-GPU node
    assert seen[0] == ("g1", tuple(range(8)))  # the largest first
    assert all(len(g) == n for (_k, g), n in zip(sorted(seen), [2, 8, 4, 2]))
