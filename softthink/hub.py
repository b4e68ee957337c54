"""Results on the Hugging Face Hub, and models from it.

* :func:`export_runs` writes runs as a Hub dataset folder: one configuration per run (``<run>/samples.parquet``:
  every sample with its grades), a ``settings`` configuration (one row per run), a ``summary`` configuration (the
  summary table) and the dataset card ``README.md`` naming them. GPQA question text and completions are never
  written (its authors ask that its examples stay out of plain text online): a GPQA run keeps indices, lengths and
  grades only.
* :func:`push_runs` uploads that folder as one commit to a dataset repository (``huggingface_hub``'s
  ``create_repo`` / ``create_commit``). The token comes from ``HF_TOKEN`` or the Hub's own login, never from a file
  of ours and never written.
* :func:`fetch_model` is the official ``models/download.py``: the Hub's resumable ``snapshot_download`` into
  ``models/<org>/<name>``, so ``model: models/Qwen/QwQ-32B`` then works offline.
* :func:`validate_push_section` / :func:`push_profile_runs`: a profile's ``push: {repo_id, private}`` section, pushed
  at the end of ``reproduce``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from softthink.config import ConfigError

SAMPLES_FILE = "samples.parquet"
SETTINGS_CONFIG = "settings"
SUMMARY_CONFIG = "summary"
SAMPLES_SPLIT = "samples"
TABLE_SPLIT = "runs"
#: sample fields that carry text (never exported for GPQA) and ones not worth exporting at all
TEXT_FIELDS = ("text", "token_ids", "question", "prompt", "answer_text")
SKIPPED_FIELDS = ("token_ids",)
#: the official models/download.py skips these (other frameworks' weight formats)
MODEL_IGNORE_PATTERNS = ["*.msgpack", "*.h5", "*.ot", "*.gguf", "consolidated.safetensors"]
PUSH_KEYS = ("repo_id", "private")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
LICENSE_NOTE = (
    "Model outputs on public benchmarks, produced with softthink. Each benchmark keeps its own licence: AIME and AMC "
    "problems (MAA, evaluation use), GSM8K (MIT), MATH-500 (MIT), HumanEval (MIT), MBPP (CC BY 4.0), LiveCodeBench "
    "(see its dataset card), GPQA (CC BY 4.0). GPQA questions and completions are not included, as the GPQA authors "
    "ask that its examples not be published in plain text; GPQA runs carry indices, lengths and grades only.")


class HubError(ConfigError):
    """The Hub could not be reached or refused the request: one line for the user."""


# ================================================================================================================
# export


def config_name(run_dir: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(run_dir).name)


def _cell(v: Any) -> Any:
    """Parquet-friendly: scalars as they are, anything nested as its JSON text (schemas differ between engines)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v, ensure_ascii=False, sort_keys=True)


def sample_rows(run_dir: Path) -> list[dict[str, Any]]:
    """One row per sample: the sample record and, per grades file, ``<label>:correct|status|extracted|judge``."""
    from softthink.data import DATASETS
    from softthink.store import RunDir, load_grades

    rd = RunDir.open(run_dir)
    gpqa = rd.spec is not None and DATASETS[rd.spec.dataset].kind == "gpqa"
    drop = set(SKIPPED_FIELDS) | (set(TEXT_FIELDS) if gpqa else set())
    grades = {label: {(g["item_index"], g["sample_index"]): g for g in recs} for label, recs in load_grades(rd).items()}
    rows = []
    for s in rd.samples():
        row = {k: _cell(v) for k, v in s.items() if k not in drop and not (gpqa and k == "official")}
        for label, by_key in grades.items():
            g = by_key.get((s["item_index"], s["sample_index"]), {})
            row[f"{label}:correct"] = g.get("correct")
            row[f"{label}:status"] = g.get("status")
            row[f"{label}:extracted"] = _cell(g.get("extracted"))
            judge = g.get("judge") or {}
            row[f"{label}:judge_correct"] = judge.get("correct")
        rows.append(row)
    return rows


def settings_row(run_dir: Path) -> dict[str, Any]:
    from softthink.runkey import package_version
    from softthink.store import RunDir
    from softthink.summaries import settings_of

    rd = RunDir.open(run_dir)
    cfg = rd.config()
    spec = rd.spec
    gen = rd.key.get("generation", {})
    imported = cfg.get("imported") or {}
    return {"config_name": config_name(rd.path), "run": rd.path.name, "hash": rd.hash,
            "model": spec.model if spec else None, "dataset": spec.dataset if spec else None,
            "method": gen.get("method"), "preset": gen.get("preset"), "n": rd.key.get("n"),
            "engine": spec.engine if spec else None, "max_new_tokens": gen.get("max_new_tokens"),
            **{k: _cell(v) for k, v in settings_of(gen).items()},
            "imported_from": imported.get("origin"), "imported_sha256": imported.get("sha256"),
            "softthink_version": (cfg.get("versions") or {}).get("softthink") or package_version("softthink"),
            "generation_json": json.dumps(gen, sort_keys=True)}


def summary_rows(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    from softthink.summaries import TABLE_COLUMNS, summarize_runs

    df = summarize_runs([str(d) for d in run_dirs])
    keep = ["run", "model", "dataset", "row"] + [c for c in TABLE_COLUMNS if c != "run"]
    df = df[[c for c in keep if c in df.columns]]
    df.insert(0, "config_name", [config_name(Path(r)) for r in df["run"]])
    return [{k: _cell(None if _isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def export_runs(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write the Hub dataset folder for ``run_dirs`` into ``out`` (created; files of ours replaced)."""
    import pandas as pd

    from softthink.store import RunDir

    runs = [RunDir.open(d).path for d in run_dirs]  # every argument checked before writing
    names = [config_name(r) for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("export: two runs with the same directory name")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for run, name in zip(runs, names):
        rows = sample_rows(run)
        (out / name).mkdir(exist_ok=True)
        pd.DataFrame(rows).to_parquet(out / name / SAMPLES_FILE, index=False)
    settings = [settings_row(r) for r in runs]
    summary = summary_rows(runs)
    for cfg, rows in ((SETTINGS_CONFIG, settings), (SUMMARY_CONFIG, summary)):
        (out / cfg).mkdir(exist_ok=True)
        pd.DataFrame(rows).to_parquet(out / cfg / f"{cfg}.parquet", index=False)
    (out / "README.md").write_text(dataset_card(names, settings, summary))
    return out


def dataset_card(names: list[str], settings: list[dict[str, Any]], summary: list[dict[str, Any]]) -> str:
    import yaml

    from softthink.runkey import package_version

    configs = [{"config_name": n, "data_files": [{"split": SAMPLES_SPLIT, "path": f"{n}/{SAMPLES_FILE}"}]}
               for n in names]
    configs += [{"config_name": c, "data_files": [{"split": TABLE_SPLIT, "path": f"{c}/{c}.parquet"}]}
                for c in (SETTINGS_CONFIG, SUMMARY_CONFIG)]
    front = {"license": "other", "pretty_name": "softthink evaluation results", "tags": ["soft-thinking",
             "evaluation", "softthink"], "configs": configs}
    version = package_version("softthink")
    setting_cols = ["config_name", "model", "dataset", "method", "preset", "n", "max_new_tokens", "T", "top_p",
                    "top_k", "min_p", "max_topk", "cold_stop_tau", "cold_stop_L", "noise", "imported_from"]
    summary_cols = ["config_name", "dataset", "n", "n_items", "grader", "pass@1", "len_all", "len_correct"]
    body = [
        "# softthink evaluation results", "",
        f"Runs of [Soft Thinking](https://arxiv.org/abs/2505.15778) and its baselines, written by softthink "
        f"{version}. Each run is a configuration whose `{SAMPLES_SPLIT}` split holds one row per sample with its "
        "grades (`<grader>:correct`, `:status`, `:extracted`); `settings` and `summary` hold one row per run.", "",
        "```python", "from datasets import load_dataset",
        f'load_dataset("ORG/NAME", "{names[0] if names else SUMMARY_CONFIG}", split="{SAMPLES_SPLIT if names else TABLE_SPLIT}")',
        "```", "", "## Settings", "", _markdown(settings, setting_cols), "", "## Summary", "",
        _markdown(summary, summary_cols), "", "## Licence", "", LICENSE_NOTE, "",
    ]
    return "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n" + "\n".join(body)


def _markdown(rows: list[dict[str, Any]], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.2f}"
        return str(v).replace("|", "\\|")

    cols = [c for c in cols if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


# ================================================================================================================
# upload


def check_repo_id(repo_id: str) -> str:
    if not isinstance(repo_id, str) or not REPO_ID_RE.match(repo_id):
        raise ConfigError(f"--repo-id: {repo_id!r} is not ORG/NAME")
    return repo_id


def _hub_api():
    from huggingface_hub import HfApi

    return HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)


def push_runs(run_dirs: Sequence[str | os.PathLike], repo_id: str, private: bool = False) -> str:
    """Export ``run_dirs`` and upload them as one commit to the dataset repository ``repo_id``; returns its URL."""
    from huggingface_hub import CommitOperationAdd, get_token

    from softthink.store import RunDir

    check_repo_id(repo_id)
    for d in run_dirs:  # bad input first: each must be a run directory
        RunDir.open(d)
    if not get_token():
        raise HubError("no Hugging Face token: set HF_TOKEN (or log in with `hf auth login`); tokens are never "
                       "taken from files of softthink")
    api = _hub_api()
    tmp = Path(tempfile.mkdtemp(prefix="softthink-hub-"))
    try:
        folder = export_runs(run_dirs, tmp / "export")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        ops = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
               for p in files]
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            info = api.create_commit(repo_id, ops, repo_type="dataset",
                                     commit_message=f"softthink: {len(run_dirs)} run(s)")
        except Exception as e:  # noqa: BLE001 - network and HTTP errors of huggingface_hub: one line for the user
            raise HubError(f"upload to {repo_id} failed: {_short(e)}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    url = getattr(info, "commit_url", None) or f"{api.endpoint}/datasets/{repo_id}"
    print(f"pushed {len(run_dirs)} run(s) to {url}")
    return url


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {msg[:300]}"


def validate_push_section(value: Any, where: str = "push") -> dict[str, Any] | None:
    """A profile's ``push:`` section: ``{repo_id: ORG/NAME, private: false}`` (or null)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping with repo_id (and private)")
    for k in value:
        if k not in PUSH_KEYS:
            hint = " (tokens come from HF_TOKEN only)" if "token" in str(k).lower() else ""
            raise ConfigError(f"{where}: unknown key {k!r}{hint}; allowed: {', '.join(PUSH_KEYS)}")
    check_repo_id(value.get("repo_id"))
    if not isinstance(value.get("private", False), bool):
        raise ConfigError(f"{where}.private: expected true or false")
    return {"repo_id": value["repo_id"], "private": value.get("private", False)}


def push_profile_runs(push: dict[str, Any] | None, run_dirs: Sequence[str | os.PathLike]) -> str | None:
    """The end of ``reproduce`` for a profile with a ``push`` section: upload its runs (nothing without one)."""
    push = validate_push_section(push)
    if not push or not run_dirs:
        return None
    return push_runs(run_dirs, push["repo_id"], private=push["private"])


# ================================================================================================================
# models


def fetch_model(model_id: str, dest: str | os.PathLike = "models") -> Path:
    """``snapshot_download`` of ``model_id`` into ``dest/<org>/<name>`` (resumable; the official layout)."""
    from huggingface_hub import snapshot_download

    if not REPO_ID_RE.match(model_id or ""):
        raise ConfigError(f"model fetch: {model_id!r} is not a Hub model id ORG/NAME")
    local = Path(dest) / model_id
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    try:
        path = snapshot_download(repo_id=model_id, local_dir=str(local), ignore_patterns=MODEL_IGNORE_PATTERNS,
                                 endpoint=os.environ.get("HF_ENDPOINT") or None)
    except Exception as e:  # noqa: BLE001 - classified into one line below
        name = type(e).__name__
        if "RepositoryNotFound" in name or "GatedRepo" in name:
            raise HubError(f"model fetch {model_id}: no such model on {endpoint}, or it is gated/private "
                           "(accept its terms and set HF_TOKEN)") from None
        if "LocalEntryNotFound" in name or "Connect" in name or "Timeout" in name or isinstance(e, OSError):
            raise HubError(f"model fetch {model_id}: cannot reach the Hugging Face Hub at {endpoint} "
                           f"({name}); check the network or HF_ENDPOINT, or copy the model folder to {local}") from None
        raise HubError(f"model fetch {model_id}: {_short(e)}") from None
    print(f"{model_id} -> {path}  (use model: {local})")
    return Path(path)


# ================================================================================================================
# commands


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("push", help="upload runs to a Hugging Face dataset repository (token: HF_TOKEN)")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repository (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.set_defaults(func=lambda a: push_runs(a.run_dirs, a.repo_id, private=a.private) and 0)

    e = subparsers.add_parser("export-hf", help="write the Hub dataset folder of runs without uploading it")
    e.add_argument("run_dirs", nargs="+")
    e.add_argument("--out", required=True, help="folder to write (Parquet per run, settings, summary, README.md)")
    e.set_defaults(func=_cmd_export)

    m = subparsers.add_parser("model", help="models from the Hugging Face Hub (official models/download.py layout)")
    msub = m.add_subparsers(dest="model_command", required=True)
    f = msub.add_parser("fetch", help="download a model into models/<org>/<name> (resumable)")
    f.add_argument("model_id", help="Hub id, e.g. Qwen/QwQ-32B")
    f.add_argument("--dest", default="models", help="folder the official scripts read models from (models/)")
    f.set_defaults(func=lambda a: fetch_model(a.model_id, a.dest) and 0)


def _cmd_export(args) -> int:
    out = export_runs(args.run_dirs, args.out)
    print(f"wrote {out} ({len(args.run_dirs)} run(s))")
    return 0
