"""The plugin's surface against the real, pip-installed SGLang 0.5.23: signatures, registration, serialisation,
refusals (no forward pass here; test_cpu_parity.py runs them). Run with `make test-sglang`."""
from __future__ import annotations

import dataclasses
import inspect
import json
import multiprocessing as mp
import os
import subprocess
import sys
import types

import pytest
import torch

import sglang
from softthink.sglang_glue import EXTERNAL_MODEL_PACKAGE, PAPER_ARCHITECTURES, SUPPORTED_SGLANG

BASES = {
    "Qwen2ForCausalLM": "sglang.srt.models.qwen2",
    "Qwen3ForCausalLM": "sglang.srt.models.qwen3",
    "LlamaForCausalLM": "sglang.srt.models.llama",
    "MistralForCausalLM": "sglang.srt.models.mistral",
    "Gemma2ForCausalLM": "sglang.srt.models.gemma2",
    "Gemma3ForCausalLM": "sglang.srt.models.gemma3_causal",
    "Phi3ForCausalLM": "sglang.srt.models.llama",
    "Qwen3MoeForCausalLM": "sglang.srt.models.qwen3_moe",
    "DeepseekV2ForCausalLM": "sglang.srt.models.deepseek_v2",
    "DeepseekV3ForCausalLM": "sglang.srt.models.deepseek_v2",
}


def _run_py(code: str, env_extra: dict, timeout=300) -> dict:
    env = dict(os.environ, **env_extra)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_pinned_version():
    assert sglang.__version__ == SUPPORTED_SGLANG


@pytest.mark.parametrize("arch", list(BASES))
def test_forward_signature_matches_release(arch):
    """SGLang inspects `model.forward` (e.g. for `pp_proxy_tensors`): the soft class reports the base's signature,
    and the base's first three parameters are the ones the soft forward reads."""
    import importlib

    from softthink.sglang_glue.models import soft_classes

    base = getattr(importlib.import_module(BASES[arch]), arch)
    soft = soft_classes([arch])[0]
    sb, ss = inspect.signature(base.forward), inspect.signature(soft.forward)
    assert list(sb.parameters)[:4] == ["self", "input_ids", "positions", "forward_batch"]
    assert list(ss.parameters) == list(sb.parameters)
    for name in sb.parameters:
        assert ss.parameters[name].default == sb.parameters[name].default, name
    assert soft.__name__ == arch and issubclass(soft, base) and soft.softthink_soft


def test_hook_targets_and_request_row_location():
    from sglang.srt.managers.schedule_batch import Req, ReqKvInfo
    from sglang.srt.model_executor.forward_batch_info import ForwardBatch, ForwardMode
    from sglang.srt.model_executor.model_runner import ModelRunner
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

    assert list(inspect.signature(ModelRunner.sample).parameters) == ["self", "logits_output", "forward_batch"]
    assert list(inspect.signature(CustomLogitProcessor.__call__).parameters) == ["self", "logits",
                                                                                 "custom_param_list"]
    assert hasattr(ModelRunner, "init_cuda_graphs")
    # 0.5.20+: the row moved to req.kv.req_pool_idx
    assert "req_pool_idx" in {f.name for f in dataclasses.fields(ReqKvInfo)}
    assert "retraction_count" in inspect.getsource(Req.__init__)
    fb_fields = {f.name for f in dataclasses.fields(ForwardBatch)}
    assert {"forward_mode", "req_pool_indices", "rids", "sampling_info"} <= fb_fields
    assert ForwardMode.DECODE.is_decode() and ForwardMode.EXTEND.is_extend() and not ForwardMode.IDLE.is_extend()
    # the padding row 0 of ReqToTokenPool
    from sglang.srt.mem_cache.memory_pool import ReqToTokenPool

    assert "size + 1" in inspect.getsource(ReqToTokenPool.__init__)


def test_external_model_package_wins_over_builtin():
    code = r"""
import json
from sglang.srt.models.registry import ModelRegistry
out = {}
from sglang.srt.models.registry import import_model_classes
for arch in ["Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM",
             "DeepseekV3ForCausalLM", "Qwen3MoeForCausalLM", "Gemma3ForCausalLM", "Qwen2VLForConditionalGeneration"]:
    cls, name = ModelRegistry.resolve_model_cls([arch])
    out[arch] = [cls.__module__, bool(getattr(cls, "softthink_soft", False)), cls.__name__]
builtin = import_model_classes("sglang.srt.models")
out["_plain"] = sorted(a for a in builtin if not (getattr(ModelRegistry.models.get(a), "softthink_soft", False)
                                                  or getattr(ModelRegistry.models.get(a), "softthink_refused", False)))
out["_refused"] = sorted(a for a in builtin if getattr(ModelRegistry.models.get(a), "softthink_refused", False))
print(json.dumps(out))
"""
    out = _run_py(code, {"SGLANG_EXTERNAL_MODEL_PACKAGE": EXTERNAL_MODEL_PACKAGE})
    # every architecture resolves to its soft class (a refused one refuses when built, it never serves plain)
    assert out.pop("_plain") == []
    assert "MiniCPMV" in out.pop("_refused")  # a dispatcher class, not a module: a refusing stand-in
    for arch, (mod, soft, name) in out.items():
        assert soft and mod.startswith("softthink.sglang_glue.models") and name == arch


def test_processor_serialises_and_loads_back():
    from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

    from softthink.sglang_glue import processor as P

    assert P.HAVE_SGLANG and issubclass(P.SoftThinkingLogitProcessor, CustomLogitProcessor)
    s = P.processor_str()
    assert len(s) < 400, len(s)  # by reference, not the class body
    inst = CustomLogitProcessor.from_str(s)
    assert type(inst) is P.SoftThinkingLogitProcessor
    # and in a fresh interpreter (the scheduler imports the module on first use)
    out = _run_py(
        "import json,sys\nfrom sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor\n"
        f"p = CustomLogitProcessor.from_str({s!r})\n"
        "print(json.dumps([type(p).__module__, type(p).__name__]))", {})
    assert out == ["softthink.sglang_glue.processor", "SoftThinkingLogitProcessor"]


def test_processor_call_with_real_base_class():
    """Driver A end to end on CPU tensors with a Req stand-in (what apply_custom_logit_processor passes)."""
    from softthink.config import GenerationConfig
    from softthink.sglang_glue import tables as T
    from softthink.sglang_glue.driver import soft_custom_params
    from softthink.sglang_glue.processor import SoftThinkingLogitProcessor

    tb = T.publish(T.SoftStateTables(8, 4))
    try:
        cfg = GenerationConfig.from_dict({"method": "soft", "think": {"max_topk": 4}})
        req = types.SimpleNamespace(rid="x", kv=types.SimpleNamespace(req_pool_idx=3), output_ids=[],
                                    retraction_count=0)
        params = soft_custom_params(cfg, [50], [2], uid=1) | {"__req__": req}
        tb.reset_rows(torch.tensor([3]))
        logits = torch.randn(1, 64, generator=torch.Generator().manual_seed(0))
        logits[0, 50] = logits.min() - 1.0  # the marker id must not win the first step (the row would end thinking)
        out = SoftThinkingLogitProcessor()(logits.clone(), [params])
        assert out.shape == logits.shape
        assert int(out.argmax()) == int(logits.argmax()) and torch.isinf(out).sum() == 63
        assert bool(tb.active[3]) and not bool(tb.fresh[3]) and int(tb.step[3]) == 1
        assert abs(float(tb.w[3].sum()) - 1.0) < 1e-6
    finally:
        T.unpublish()


def _child_load_plugins(q):
    try:
        from sglang.srt.plugins import load_plugins
        from sglang.srt.plugins.hook_registry import HookRegistry

        load_plugins()
        from sglang.srt.managers.schedule_batch import Req
        from sglang.srt.model_executor.model_runner import ModelRunner
        from sglang.srt.models.registry import ModelRegistry

        from softthink.sglang_glue import plugin

        hooks = HookRegistry._hooks.get(plugin.SAMPLE_TARGET, [])
        q.put({
            "pid": os.getpid(),
            "registered": plugin.registered(),
            "sample_wrapped": getattr(ModelRunner.sample, "__wrapped__", None) is not None,
            "sample_hook_is_ours": any(h is plugin.soft_sample for _, h, _ in hooks),
            "req_init_wrapped": getattr(Req.__init__, "__wrapped__", None) is not None,
            "qwen2_soft": bool(getattr(ModelRegistry.models.get("Qwen2ForCausalLM"), "softthink_soft", False)),
            "llama_soft": bool(getattr(ModelRegistry.models.get("LlamaForCausalLM"), "softthink_soft", False)),
        })
    except Exception as e:  # pragma: no cover - reported to the parent
        import traceback

        q.put({"error": repr(e), "tb": traceback.format_exc()})


def test_entry_point_declared():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="sglang.srt.plugins")}
    assert eps.get("softthink") == "softthink.sglang_glue.plugin:register"


def test_plugin_loads_inside_spawned_child(monkeypatch):
    """SGLang spawns its schedulers; the entry point must install Driver B there (not only in the parent)."""
    monkeypatch.setenv("SOFTTHINK_SGLANG_DRIVER", "B")
    ctx = mp.get_context("spawn")  # what sglang uses (engine.py: set_start_method("spawn"))
    q = ctx.Queue()
    p = ctx.Process(target=_child_load_plugins, args=(q,))
    p.start()
    res = q.get(timeout=300)
    p.join(60)
    assert "error" not in res, res.get("tb")
    assert res["pid"] != os.getpid()
    assert res["registered"] == "B"
    assert res["sample_wrapped"] and res["sample_hook_is_ours"] and res["req_init_wrapped"]
    assert res["qwen2_soft"] and res["llama_soft"]


def test_plugin_is_inert_unless_selected():
    code = r"""
import json
from sglang.srt.plugins import load_plugins
load_plugins()
from sglang.srt.model_executor.model_runner import ModelRunner
from softthink.sglang_glue import plugin
print(json.dumps([plugin.registered(), getattr(ModelRunner.sample, "__wrapped__", None) is not None]))
"""
    env = {k: "" for k in ("SOFTTHINK_SGLANG_DRIVER", "SGLANG_PLUGINS")}
    assert _run_py(code, env) == [None, False]


def test_refusals_on_real_server_args():
    from sglang.srt.server_args import ServerArgs

    from softthink.sglang_glue.launch import UnsupportedMode, check_server_args

    assert check_server_args(ServerArgs(model_path="x")) == []
    stock = ServerArgs(model_path="x")
    fields = {name for name in dir(stock) if not name.startswith("_")}
    newer = ({"disaggregation_mode": "decode"}, {"attn_cp_size": 2}, {"dcp_size": 2}, {"enable_pdmux": True},
             {"model_impl": "transformers"}, {"tp_size": 2, "enable_symm_mem": True})
    for bad in newer:  # modes that skip the soft class's reset or mix: each a real field of this release
        assert set(bad) <= fields, set(bad) - fields
    assert "enable_split_prefill" not in fields  # what the old refusal read
    for bad in ({"pp_size": 2}, {"speculative_algorithm": "EAGLE"}, {"enable_mixed_chunk": True},
                {"attn_dp_size": 2}, {"enable_dp_attention": True}) + newer:
        fields = {"model_path": "x", **bad}
        with pytest.raises(UnsupportedMode, match="refuses"):
            check_server_args(fields)
    try:
        sa = ServerArgs(model_path="x", enable_mixed_chunk=True)
    except Exception:
        return
    with pytest.raises(UnsupportedMode):
        check_server_args(sa)


def test_launch_flags_parse_with_release_cli():
    import argparse

    from sglang.srt.server_args import ServerArgs

    from softthink.sglang_glue.launch import LaunchOptions

    opts = LaunchOptions(model_path="m", tp_size=2, num_gpus=8, cuda_graph_bs=[1, 2, 4, 8], mem_fraction_static=0.8,
                         max_running_requests=64, deterministic=True, disable_cuda_graph=True, nnodes=2, node_rank=1,
                         dist_init_addr="10.0.0.1:5000")
    cmd = opts.server_command()
    argv = cmd[cmd.index("sglang.launch_server") + 1:]
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    ns = parser.parse_args(argv)
    assert ns.tp_size == 2 and ns.dp_size == 4 and ns.cuda_graph_bs_decode == [1, 2, 4, 8]
    assert ns.enable_custom_logit_processor and ns.disable_radix_cache and ns.enable_deterministic_inference
    for k in opts.server_kwargs():
        if k != "disable_cuda_graph":
            assert hasattr(ns, k), k


class _ToyModel(torch.nn.Module):
    """A decoder shaped like SGLang's: `model.embed_tokens`, a scale after the lookup (Gemma's normaliser), a
    tied LM head that is the embedding module, a `logits_processor`. Forward returns the scaled inputs."""

    def __init__(self, config=None, quant_config=None, embed=None):
        super().__init__()
        self.config = config
        self.model = torch.nn.Module()
        self.model.embed_tokens = embed if embed is not None else torch.nn.Embedding(30, 6)
        self.lm_head = self.model.embed_tokens
        self.logits_processor = object()
        self.normalizer = 3.0

    def forward(self, input_ids, positions, forward_batch, input_embeds=None, get_embedding=False):
        h = self.model.embed_tokens(input_ids) if input_embeds is None else input_embeds
        self.lm_head(input_ids)  # a second lookup in the same forward must stay plain
        return h * self.normalizer


def _toy_tables(embed_rows=30):
    from softthink.sglang_glue import tables as T

    tb = T.SoftStateTables(5, 3)
    tb.active[2] = True
    tb.ids[2] = torch.tensor([1, 2, 3])
    tb.w[2] = torch.tensor([0.5, 0.25, 0.25])
    tb.note_width(3)  # eager decode mixes the widest admitted concept
    return tb


def test_model_subclass_forward_logic(monkeypatch):
    """Decode: the embedding module returns the concept for active rows, the stock lookup for the others, and
    whatever the model does after the lookup (here x3) applies to both; extend resets the batch's rows."""
    from sglang.srt.model_executor.forward_batch_info import ForwardMode

    from softthink.sglang_glue import models as M
    from softthink.sglang_glue import tables as T

    tb = _toy_tables()
    monkeypatch.setattr(M, "_tables_for", lambda embed, config: T.publish(tb))
    monkeypatch.setattr(M, "_refuse_unsupported_modes", lambda: None)
    soft = M.soft_class(_ToyModel)
    assert soft.__name__ == "_ToyModel" and issubclass(soft, _ToyModel)
    obj = soft(config=types.SimpleNamespace(vocab_size=30))
    E = obj.model.embed_tokens.weight.detach()
    fb = types.SimpleNamespace(forward_mode=ForwardMode.DECODE, req_pool_indices=torch.tensor([2, 1, 0]))
    ids = torch.tensor([7, 8, 0])
    with torch.no_grad():
        out = obj.forward(ids, None, fb)
        concept = 0.5 * E[1] + 0.25 * E[2] + 0.25 * E[3]
        assert torch.allclose(out[0], concept * 3.0, atol=1e-6)
        assert torch.equal(out[1], E[8] * 3.0) and torch.equal(out[2], E[0] * 3.0)  # plain rows: the stock lookup
        assert obj.softthink_embed_hook.rows is None  # disarmed after the forward
        assert torch.equal(obj.model.embed_tokens(ids), E[ids])  # outside a soft forward: the plain module
        fb = types.SimpleNamespace(forward_mode=ForwardMode.EXTEND, req_pool_indices=torch.tensor([2]))
        out = obj.forward(ids[:1], None, fb)
    assert torch.equal(out[0], E[7] * 3.0) and not bool(tb.active[2]) and bool(tb.fresh[2])
    T.unpublish()


def test_scale_inside_the_embedding_module_reaches_the_concept(monkeypatch):
    """Gemma 3's SGLang embedding multiplies inside its forward: a one-hot concept equals the scaled token
    embedding, a mixture is the mixture of scaled rows (the transformers engine mixes its module's rows alike)."""
    from sglang.srt.model_executor.forward_batch_info import ForwardMode
    from sglang.srt.models.gemma3_causal import Gemma3TextScaledWordEmbedding

    from softthink.sglang_glue import models as M
    from softthink.sglang_glue import tables as T

    tb = _toy_tables()
    tb.active[3] = True
    tb.ids[3] = torch.tensor([5, 0, 0])
    tb.w[3] = torch.tensor([1.0, 0.0, 0.0])
    monkeypatch.setattr(M, "_tables_for", lambda embed, config: T.publish(tb))
    monkeypatch.setattr(M, "_refuse_unsupported_modes", lambda: None)
    embed = Gemma3TextScaledWordEmbedding(30, 6, 0, embed_scale=8.0)
    obj = M.soft_class(_ToyModel)(config=None, embed=embed)
    E = embed.weight.detach()
    fb = types.SimpleNamespace(forward_mode=ForwardMode.DECODE, req_pool_indices=torch.tensor([3, 2, 1]))
    with torch.no_grad():
        out = obj.forward(torch.tensor([9, 9, 9]), None, fb)
    assert torch.equal(out[0], E[5] * 8.0 * 3.0)  # one-hot concept == the module's own (scaled) token embedding
    assert torch.allclose(out[1], 8.0 * 3.0 * (0.5 * E[1] + 0.25 * E[2] + 0.25 * E[3]), atol=1e-5)
    assert torch.equal(out[2], E[9] * 8.0 * 3.0)
    T.unpublish()


def test_models_whose_inputs_are_not_token_embeddings_are_refused():
    """Multimodal classes, models without an LM head and the transformers backend are refused when built (and the
    process records why, so a soft request gets that reason); a causal LM with an embedding module is accepted."""
    from sglang.srt.models.qwen2_vl import Qwen2VLForConditionalGeneration

    from softthink.sglang_glue import models as M
    from softthink.sglang_glue import tables as T

    def bare(cls, **attrs):
        obj = cls.__new__(cls)
        torch.nn.Module.__init__(obj)
        for k, v in attrs.items():
            setattr(obj, k, v)
        return obj

    vl = bare(Qwen2VLForConditionalGeneration, logits_processor=object())
    assert "multimodal" in M.refusal(vl)
    head_less = bare(_ToyModel)
    head_less.model = torch.nn.Module()
    head_less.model.embed_tokens = torch.nn.Embedding(4, 2)
    assert "no language-model head" in M.refusal(head_less)
    no_embed = bare(_ToyModel, logits_processor=object())
    assert "no token-embedding module" in M.refusal(no_embed)
    ok = _ToyModel()
    assert M.refusal(ok) is None and M.input_embedding(ok) is ok.model.embed_tokens
    from sglang.srt.models.transformers import TransformersForCausalLM

    assert "transformers backend" in M.refusal(bare(TransformersForCausalLM, logits_processor=object()))
    try:
        with pytest.raises(M.UnsupportedArchitecture, match="multimodal"):
            M.attach(vl)
        with pytest.raises(RuntimeError, match="multimodal"):
            T.get_tables()
    finally:
        T.unpublish()


def test_engine_refuses_without_cuda():
    from softthink.sglang_glue.launch import SGLangEngine, SGLangUnavailable

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(SGLangUnavailable, match="device='cpu'"):
        SGLangEngine("some/model")


def test_request_survives_sglang_sampling_params_ipc():
    """The request built by the client passes SGLang's SamplingParams type (msgspec, the IPC codec) unchanged."""
    import msgspec
    from sglang.srt.sampling.sampling_params import SamplingParams

    from softthink.config import GenerationConfig
    from softthink.sglang_glue.driver import RequestSpec
    from softthink.sglang_glue.launch import build_request

    for cfg in ({"method": "soft", "stop": ["###"], "cold_stop": {"threshold": 0.01, "length": 256}},
                {"method": "moi"}, {"method": "cot_greedy", "think": {"budget": 10}}):
        req = build_request(GenerationConfig.from_dict(cfg), [151668], [151645, 151643], uid=5)
        sp = dict(req["sampling_params"])
        stop = sp.pop("stop", None)
        back = msgspec.msgpack.decode(msgspec.msgpack.encode(SamplingParams(**sp, stop=stop)), type=SamplingParams)
        assert back.custom_params == req["sampling_params"]["custom_params"]
        spec = RequestSpec.from_params(dict(back.custom_params))
        assert spec.marker == (151668,) and spec.eos == (151645, 151643) and spec.uid == 5


def test_tensor_parallel_path_uses_the_release_shard_gather(monkeypatch):
    """Under TP the subclass mixes on the local vocabulary shard with the layer's own `_embed_local_shard` and
    reduces once with SGLang's all-reduce."""
    from sglang.srt.distributed import tensor_model_parallel_all_reduce
    from sglang.srt.layers.vocab_parallel_embedding import VocabParallelEmbedding

    from softthink.sglang_glue.models import _sharded_ops

    assert hasattr(VocabParallelEmbedding, "_embed_local_shard")
    fake = types.SimpleNamespace(tp_size=2, use_attn_tp_group=False, _embed_local_shard=lambda x: x)
    lookup, reduce = _sharded_ops(fake)
    assert lookup is fake._embed_local_shard
    calls, ctx = [], types.SimpleNamespace(input_scattered=False)
    monkeypatch.setattr("sglang.srt.distributed.tensor_model_parallel_all_reduce", lambda x: calls.append(x) or x)
    monkeypatch.setattr("sglang.srt.layers.layer_boundary.get_attn_tp_context", lambda: ctx)
    lookup, reduce = _sharded_ops(fake)
    x = torch.ones(2)
    reduce(x)
    assert len(calls) == 1  # the stock all-reduce
    ctx.input_scattered = True
    assert reduce(x) is x and len(calls) == 1  # scattered inputs: the stock layer skips it, so do we
    assert _sharded_ops(types.SimpleNamespace(tp_size=1)) is None
    assert _sharded_ops(torch.nn.Embedding(3, 2)) is None

    class Scaled(VocabParallelEmbedding):  # a subclass that changes the lookup keeps its own forward
        def forward(self, input_):
            return super().forward(input_) * 2

    scaled = Scaled.__new__(Scaled)
    torch.nn.Module.__init__(scaled)
    scaled.tp_size = 2
    assert _sharded_ops(scaled) is None
