"""Official Soft Thinking result files as softthink runs: ``python -m softthink import-official FILE...``.

:func:`import_results` turns an official results JSON (``{output_dir}/results/{dataset}/<name>.json``) into a
softthink run directory marked as imported (origin and file hash kept), graded again by softthink's graders, with
the official verdicts kept beside them as the grades file ``official-recorded`` (docs/official.md). The settings are
read from the records' ``hyperparams`` without evaluating code and translated like an official command line
(:mod:`softthink.official`).
"""
from __future__ import annotations

import ast
import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softthink.config import ConfigError
from softthink.official import (_FLAGS, NOTHINKING_SCRIPT, OFFICIAL_REPO, SECRET_FLAGS, SOFT_SCRIPT, Translation,
                                translate_args)

REQUIRED_RECORD_KEYS = ("hyperparams", "prompt", "completion", "ground_truth", "generated_tokens", "idx", "n",
                        "finish_generation", "judge_info", "passat1", "passat1_list")
IMPORTED_GRADES = "official-recorded.jsonl"  # the official verdicts, a grades file beside softthink's


def parse_hyperparams(text: str) -> dict[str, Any]:
    """The official ``str(args)`` (``Namespace(dataset='aime2024', ...)``) as a dict, without evaluating code."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ConfigError("hyperparams: not an argparse Namespace(...) string") from None
    if not isinstance(node, ast.Call) or getattr(node.func, "id", None) != "Namespace" or node.args:
        raise ConfigError("hyperparams: not an argparse Namespace(...) string")
    out = {}
    for kw in node.keywords:
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            raise ConfigError(f"hyperparams: the value of {kw.arg!r} is not a literal") from None
    return out


@dataclass
class OfficialFile:
    path: Path
    sha256: str
    records: list[dict[str, Any]]
    settings: dict[str, Any]    # the official args, secrets removed
    translation: Translation
    statistics: dict[str, Any] | None


def read_official_file(path: str | os.PathLike) -> OfficialFile:
    """Read and check one official results file; a ConfigError naming the file and the problem otherwise."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: no such file") from None
    sha = hashlib.sha256(raw).hexdigest()

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{p}: {msg}")

    try:
        records = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"not valid JSON ({e})") from None
    if isinstance(records, dict) and "pass@1" in records:
        raise bad("a statistics file; import the results file beside it (without _statistics)")
    if not isinstance(records, list) or not records:
        raise bad("expected a non-empty list of per-item records (the official results file)")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise bad(f"record {i}: not an object")
        missing = [k for k in REQUIRED_RECORD_KEYS if k not in r]
        if missing:
            raise bad(f"record {i}: missing {', '.join(missing)}")
        n = r["n"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or not isinstance(r["idx"], int):
            raise bad(f"record {i}: n and idx must be integers")
        for k in ("completion", "generated_tokens", "finish_generation", "passat1_list", "judge_info"):
            if not isinstance(r[k], list) or len(r[k]) != n:
                raise bad(f"record {i} (idx {r['idx']}): {k} must be a list of n = {n} entries")
        if not all(isinstance(c, str) for c in r["completion"]):
            raise bad(f"record {i} (idx {r['idx']}): completion must hold strings")
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in r["generated_tokens"]):
            raise bad(f"record {i} (idx {r['idx']}): generated_tokens must hold integers")
    idxs = [r["idx"] for r in records]
    if len(set(idxs)) != len(idxs):
        raise bad("an idx appears twice")
    if len({r["n"] for r in records}) != 1 or len({r["hyperparams"] for r in records}) != 1:
        raise bad("records with different n or settings; one file holds one run")
    args = parse_hyperparams_or_bad(records[0]["hyperparams"], bad)
    script = NOTHINKING_SCRIPT if "nothinking" in args else SOFT_SCRIPT
    known = {k: v for k, v in args.items() if k in _FLAGS}
    try:
        t = translate_args(script, known, set(known), strict=False)
    except ConfigError as e:
        raise bad(f"settings: {e}") from None
    for k in sorted(set(args) - set(_FLAGS)):
        t.notes.append(f"official setting {k}={args[k]!r}: not known to softthink (kept in imported.settings)")
    if t.spec["n"] != records[0]["n"]:
        raise bad(f"hyperparams say num_samples {t.spec['n']}, the records n {records[0]['n']}")
    stats_path = p.with_name(p.stem + "_statistics.json")
    stats = None
    if stats_path.is_file():
        try:
            stats = json.loads(stats_path.read_text())
        except ValueError:
            stats = None
    settings = {k: v for k, v in args.items() if k not in SECRET_FLAGS}
    return OfficialFile(path=p, sha256=sha, records=records, settings=settings, translation=t, statistics=stats)


def parse_hyperparams_or_bad(text: Any, bad) -> dict[str, Any]:
    if not isinstance(text, str):
        raise bad("hyperparams: expected the official str(args) string")
    try:
        return parse_hyperparams(text)
    except ConfigError as e:
        raise bad(str(e)) from None


def _check_against_dataset(f: OfficialFile, dataset: Any) -> None:
    by_index = {it.index: it for it in dataset.items}
    for r in f.records:
        item = by_index.get(r["idx"])
        if item is None:
            raise ConfigError(f"{f.path}: idx {r['idx']} is not an item of {dataset.name} ({len(by_index)} items)")
        if isinstance(r["prompt"], str) and r["prompt"].strip() != item.question.strip():
            raise ConfigError(f"{f.path}: idx {r['idx']}: the prompt differs from softthink's {dataset.name} item "
                              "(another dataset version?)")


def _sample_records(f: OfficialFile, dataset: Any, max_new_tokens: int) -> list[dict[str, Any]]:
    from softthink.runspec import UID_STRIDE

    by_index = {it.index: it for it in dataset.items}
    out = []
    for r in sorted(f.records, key=lambda r: r["idx"]):
        for j in range(r["n"]):
            tokens = r["generated_tokens"][j]
            out.append({
                "item_index": r["idx"], "item_id": by_index[r["idx"]].id, "sample_index": j,
                "sample_uid": r["idx"] * UID_STRIDE + j, "text": r["completion"][j], "token_ids": None,
                "num_tokens": tokens, "num_thinking_tokens": None, "num_answer_tokens": None,
                # the engine stops at EOS / a stop string or at the length limit; the file keeps only the count
                "finish_reason": "length" if tokens >= max_new_tokens else "stop",
                "imported": True,
                "official": {"finish_generation": r["finish_generation"][j], "passat1": r["passat1_list"][j],
                             "judge_info": r["judge_info"][j]},
            })
    return out


def _official_grades(f: OfficialFile, kind: str) -> list[dict[str, Any]]:
    """The verdicts the official code recorded, as a softthink grades file (label ``official-recorded``)."""
    out = []
    for r in sorted(f.records, key=lambda r: r["idx"]):
        for j in range(r["n"]):
            info = r["judge_info"][j]
            rec: dict[str, Any] = {"item_index": r["idx"], "sample_index": j, "mode": "recorded",
                                   "grader_version": "official", "extracted": None}
            if kind == "code":  # graded by execution only in the --reeval pass; before it, passat1 is a placeholder 0
                evaluated = info is not None
                rec.update(correct=bool(r["passat1_list"][j]) if evaluated else None,
                           status="graded" if evaluated else "not_evaluated")
            elif isinstance(info, dict) and "rule_judge_result" in info:
                rule, llm = info.get("rule_judge_result"), info.get("llm_judge_result")
                rec.update(correct=bool(rule), status="graded")
                rec["judge"] = {"correct": bool(llm) if llm is not None else None, "label": "official",
                                "status": ("skipped_rule_correct" if rule else
                                           "yes" if llm else "no" if llm is not None else None)}
                if rec["judge"]["status"] is None:
                    rec.pop("judge")
            else:  # the official scorer gave up on this sample (five failed attempts): no verdict
                rec.update(correct=None, status="grader_error")
            out.append(rec)
    return out


def import_results(paths: list[str], runs_dir: str | None = None, grade: bool = True) -> list[Path]:
    """Import official result files as run directories; every file is checked before anything is written."""
    from softthink import runkey
    from softthink.data import load_dataset
    from softthink.runspec import RunSpec
    from softthink.store import CONFIG_FILE, RunDir, hash_key, resolve_runs_root, write_grades, write_json_atomic
    from softthink.store import JsonlAppender, scrub_secrets

    files = [read_official_file(p) for p in paths]
    planned = []
    for f in files:
        spec_dict = copy.deepcopy(f.translation.spec)
        if spec_dict["grader"].pop("judge", None):  # its verdicts are kept; softthink's judge is asked on request
            f.translation.notes.append("the official run used an LLM judge: its verdicts are in the official-recorded "
                                       "grades; python -m softthink grade RUN_DIR --judge asks softthink's")
        spec = RunSpec.from_dict(spec_dict)
        dataset = load_dataset(spec.dataset, aime2024_key=spec.grader.aime2024_key)
        _check_against_dataset(f, dataset)
        key = {"key_version": runkey.RUN_KEY_VERSION, "imported": {"origin": OFFICIAL_REPO, "sha256": f.sha256},
               "model": {"spec": spec.model}, "dataset": {"name": spec.dataset, "sha256": dict(sorted(dataset.files.items())),
               "item_indices": sorted(r["idx"] for r in f.records)}, "n": spec.n,
               "generation": spec.generation.to_dict(), "engine": {"name": "official"}}
        h = hash_key(key)
        root = resolve_runs_root(runs_dir if runs_dir is not None else spec.runs_dir)
        path = root / f"{runkey.run_slug(spec)}-official-{h[:12]}"
        planned.append((f, spec, dataset, key, h, path))

    out = []
    for f, spec, dataset, key, h, path in planned:
        if (path / CONFIG_FILE).exists():
            print(f"{f.path}: already imported as {path}", file=sys.stderr)
            out.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            body = {"hash": h, "slug": path.name, "spec": spec.to_dict(), "run_key": key, "generation": key["generation"],
                    "versions": {"softthink": runkey.package_version("softthink")},
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "imported": {"origin": OFFICIAL_REPO, "file": f.path.name, "sha256": f.sha256,
                                 "script": f.translation.script, "settings": f.settings, "notes": f.translation.notes,
                                 "statistics": f.statistics}}
            write_json_atomic(tmp / CONFIG_FILE, scrub_secrets(body))
            with JsonlAppender(tmp / "samples.jsonl") as w:
                for rec in _sample_records(f, dataset, spec.generation.max_new_tokens):
                    w.write(rec)
            write_grades(tmp / "grades" / IMPORTED_GRADES, _official_grades(f, dataset.kind))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        print(f"{f.path.name} -> {path}")
        out.append(path)
    if grade and out:
        from softthink.grade_runs import grade_in_subprocess

        for st in grade_in_subprocess(out):
            if st["status"] != "ok":
                print(f"warning: grading {st['run']} failed: {st['error']}", file=sys.stderr)
    else:
        from softthink.summaries import write_summary

        for p in out:
            write_summary(RunDir.open(p))
    return out


def add_commands(subparsers) -> None:
    i = subparsers.add_parser("import-official", help="import official results JSON files as softthink runs")
    i.add_argument("files", nargs="+")
    i.add_argument("--runs-dir", default=None, help="root of run directories (default $SOFTTHINK_RUNS_DIR or ./runs)")
    i.add_argument("--no-grade", action="store_true", help="keep only the official verdicts")
    i.set_defaults(func=_cmd_import)


def _cmd_import(args) -> int:
    import_results(args.files, runs_dir=args.runs_dir, grade=not args.no_grade)
    return 0
