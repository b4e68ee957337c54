"""``make data``: download the benchmarks into ``./data`` for users without the shipped copies.

Sources (docs/design/evaluation.md §1, §4.4):

* ``--source hf`` (default): the Hugging Face hub datasets the official builder scripts used, converted to the
  shipped JSON layout (``{"prompt": [{"from": "user", "value": q}], "final_answer": a}``, ``indent=4``). Rebuilt
  files need not be byte-identical to the shipped copies (the hub data may have moved); ``softthink.data`` then
  reports the sha256 mismatch. GPQA-Diamond cannot be rebuilt (gated, and the frozen option shuffle's origin is
  unknown), so its file is copied from the official repository as with ``--source github``.
* ``--source github``: byte copies of the official repository's ``datasets/`` at the pinned commit, checked
  against the sha256 table.
* LiveCodeBench tests always come from the hub: the raw ``test*.jsonl`` files of
  ``livecodebench/code_generation_lite`` (release_v5 = the first five files; the repository's loading script is
  not used), joined on ``question_id`` with the dataset's 279 items (all must be found), private tests decoded
  ``base64 -> zlib -> pickle -> JSON`` with an unpickler that refuses every global, written to
  ``livecodebench_tests.json`` = ``{question_id: {"public": [...], "private": [...], "func_name": str|None}}``.

``huggingface_hub`` is an optional dependency (``pip install 'softthink[data]'``); parquet files also need
``pyarrow``. Nothing here runs at import time.
"""
from __future__ import annotations

import base64
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import pickle
import sys
import urllib.request
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from softthink.data import DATASETS, LCB_TESTS_FILE, SHA256, sha256_file

OFFICIAL_REPO = "eric-ai-lab/Soft-Thinking"
OFFICIAL_COMMIT = "b97407c60d5e971da4a4fe76f405d6e236d0ddfa"
GITHUB_RAW = f"https://raw.githubusercontent.com/{OFFICIAL_REPO}/{OFFICIAL_COMMIT}/datasets/"

LCB_REPO = "livecodebench/code_generation_lite"
LCB_RELEASE = "release_v5"
LCB_RELEASE_FILES = ["test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl"]  # release_vN: first N
LCB_START_DATE = "2024-08-01T00:00:00"
LCB_REVISION = "main"  # pin a commit sha with --revision for a frozen download; the resolved value is recorded
MANIFEST = "FETCHED.json"


class FetchError(RuntimeError):
    """A download or conversion failed (missing optional dependency, hub error, incomplete join)."""


# ------------------------------------------------------------------------------------------------ LCB decoding

class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler for data-only payloads: any global (class, function) or persistent id is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused global {module}.{name} in a test-case payload")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused persistent id in a test-case payload")


def restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` that can only build plain containers and scalars (no globals)."""
    return _NoGlobalsUnpickler(io.BytesIO(data)).load()


def decode_private_tests(value: str) -> list[dict[str, Any]]:
    """LCB ``private_test_cases``: a JSON string, or base64 -> zlib -> pickle(str) -> JSON."""
    if not value:
        return []
    try:
        out = json.loads(value)
    except json.JSONDecodeError:
        payload = restricted_loads(zlib.decompress(base64.b64decode(value)))
        if not isinstance(payload, str):
            raise ValueError(f"private tests: the pickle held {type(payload).__name__}, expected str")
        out = json.loads(payload)
    if not isinstance(out, list):
        raise ValueError(f"private tests decode to {type(out).__name__}, expected a list")
    return out


def lcb_row_tests(row: dict[str, Any]) -> dict[str, Any]:
    """{"public", "private", "func_name"} for one raw LCB row."""
    public = json.loads(row.get("public_test_cases") or "[]")
    private = decode_private_tests(row.get("private_test_cases") or "")
    meta = row.get("metadata") or "{}"
    meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
    return {"public": public, "private": private, "func_name": meta.get("func_name")}


def join_lcb_tests(rows: Iterable[dict[str, Any]], question_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Tests for exactly ``question_ids`` from raw rows (first occurrence wins); FetchError if any is missing."""
    wanted = set(question_ids)
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        qid = str(row.get("question_id"))
        if qid in wanted and qid not in found:
            found[qid] = lcb_row_tests(row)
    missing = [q for q in question_ids if q not in found]
    if missing:
        raise FetchError(f"LiveCodeBench: {len(missing)} of {len(question_ids)} question ids not found in "
                         f"{LCB_REPO} {LCB_RELEASE} (first: {missing[:5]})")
    return {q: found[q] for q in question_ids}


def lcb_record(row: dict[str, Any]) -> dict[str, Any]:
    """The shipped livecodebench.json layout for one raw row (no tests)."""
    fa = {k: row[k] for k in ("question_title", "question_id", "contest_id", "contest_date", "starter_code",
                              "difficulty")}
    return {"prompt": [{"from": "user", "value": row["question_content"]}], "final_answer": fa}


# ------------------------------------------------------------------------------------------------ hub access

def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise FetchError("fetching from the Hugging Face hub needs huggingface_hub: pip install 'softthink[data]'") \
            from None
    return huggingface_hub


def _download(repo: str, filename: str, revision: str | None = None) -> Path:
    try:
        return Path(_hub().hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset", revision=revision))
    except FetchError:
        raise
    except Exception as e:  # network, gating, missing file: one clear message
        raise FetchError(f"download of {repo}/{filename} (revision {revision or 'main'}) failed: {e}") from e


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    name = path.name
    if name.endswith(".parquet"):
        try:
            import pandas as pd

            return pd.read_parquet(path).to_dict("records")
        except ImportError as e:
            raise FetchError(f"reading {name} needs pyarrow: pip install pyarrow ({e})") from None
    if name.endswith(".jsonl"):
        return list(_iter_jsonl(path))
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, list) else data.get("data") or data.get("rows") or []


def hub_rows(repo: str, split: str, subdir: str | None = None, revision: str | None = None) -> list[dict[str, Any]]:
    """All rows of one split of a hub dataset, read from its raw data files (no loading script)."""
    files = _hub().list_repo_files(repo, repo_type="dataset", revision=revision)
    picks = sorted(f for f in files if _is_split_file(f, split, subdir))
    if not picks:
        raise FetchError(f"{repo}: no data file for split {split!r}{f' under {subdir}/' if subdir else ''}")
    rows: list[dict[str, Any]] = []
    for f in picks:
        rows.extend(_read_rows(_download(repo, f, revision)))
    return rows


def _is_split_file(path: str, split: str, subdir: str | None) -> bool:
    if not path.endswith((".parquet", ".jsonl", ".json")):
        return False
    parts = path.split("/")
    if subdir is not None and subdir not in parts[:-1]:
        return False
    base = parts[-1]
    return base.startswith(f"{split}.") or base.startswith(f"{split}-") or (len(parts) > 1 and parts[-2] == split)


# ------------------------------------------------------------------------------------------------ builders

def _record(question: str, answer: Any) -> dict[str, Any]:
    return {"prompt": [{"from": "user", "value": question}], "final_answer": answer}


def _build_simple(repo: str, q: str, a: Callable[[dict], Any], subdir: str | None = None) -> Callable[[], list]:
    def build() -> list[dict[str, Any]]:
        return [_record(r[q], a(r)) for r in hub_rows(repo, "test", subdir)]
    return build


def _gsm8k_answer(row: dict[str, Any]) -> str:
    return row["answer"].split("####")[-1].strip()


def _build_humaneval() -> list[dict[str, Any]]:
    rows = hub_rows("openai/openai_humaneval", "test")
    return [_record(r["prompt"], {"task_id": r["task_id"], "canonical_solution": r["canonical_solution"],
                                  "test": r["test"], "entry_point": r["entry_point"]}) for r in rows]


def _build_mbpp() -> list[dict[str, Any]]:
    rows = hub_rows("google-research-datasets/mbpp", "test", subdir="sanitized")
    return [_record(r["prompt"], {"task_id": int(r["task_id"]), "code": r["code"], "test_list": list(r["test_list"]),
                                  "test_import": list(r.get("test_imports") or r.get("test_import") or [])})
            for r in rows]


def lcb_raw_rows(revision: str | None = None) -> Iterator[dict[str, Any]]:
    for name in LCB_RELEASE_FILES:
        yield from _iter_jsonl(_download(LCB_REPO, name, revision))


def _build_livecodebench() -> list[dict[str, Any]]:
    return [lcb_record(r) for r in lcb_raw_rows(LCB_REVISION) if r["contest_date"] >= LCB_START_DATE]


HF_BUILDERS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "aime2024": _build_simple("math-ai/aime24", "problem", lambda r: str(r["answer"])),
    "aime2025": _build_simple("math-ai/aime25", "problem", lambda r: str(r["answer"])),
    "amc23": _build_simple("zwhe99/amc23", "question", lambda r: str(int(float(r["answer"])))),
    "math500": _build_simple("HuggingFaceH4/MATH-500", "problem", lambda r: r["answer"]),
    "gsm8k": _build_simple("openai/gsm8k", "question", _gsm8k_answer, subdir="main"),
    "humaneval": _build_humaneval,
    "mbpp": _build_mbpp,
    "livecodebench": _build_livecodebench,
}


def _write_json(path: Path, data: Any, indent: int | None = 4) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent)
    os.replace(tmp, path)


def write_humaneval_gz(path: Path, records: list[dict[str, Any]]) -> None:
    """``HumanEval.jsonl.gz`` (task_id, prompt, entry_point, canonical_solution, test) from humaneval records."""
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        for r in records:
            fa = r["final_answer"]
            f.write(json.dumps({"task_id": fa["task_id"], "prompt": r["prompt"][0]["value"],
                                "entry_point": fa["entry_point"], "canonical_solution": fa["canonical_solution"],
                                "test": fa["test"]}) + "\n")
    os.replace(tmp, path)


def fetch_github(dest: Path, names: Sequence[str]) -> dict[str, str]:
    """Byte copies of the official files at the pinned commit; sha256 checked (mismatch -> FetchError)."""
    out: dict[str, str] = {}
    for name in names:
        for fname in DATASETS[name].files:
            target = dest / fname
            try:
                with urllib.request.urlopen(GITHUB_RAW + fname, timeout=120) as r:  # noqa: S310 (fixed https URL)
                    data = r.read()
            except OSError as e:
                raise FetchError(f"download of {GITHUB_RAW + fname} failed: {e}") from e
            digest = hashlib.sha256(data).hexdigest()
            if digest != SHA256[fname]:
                raise FetchError(f"{fname}: downloaded sha256 {digest} differs from the pinned {SHA256[fname]}")
            target.write_bytes(data)
            out[fname] = digest
            print(f"  {fname}: ok ({len(data)} bytes)")
    return out


def fetch_lcb_tests(dest: Path, revision: str | None = None) -> Path:
    """Write ``livecodebench_tests.json`` for the items of ``dest/livecodebench.json`` (or the found copy)."""
    from softthink.data import load_dataset

    try:
        ds = load_dataset("livecodebench", data_dir=dest)
    except FileNotFoundError:
        ds = load_dataset("livecodebench")
    ids = [it.id for it in ds.items]
    tests = join_lcb_tests(lcb_raw_rows(revision), ids)
    path = dest / LCB_TESTS_FILE
    _write_json(path, tests, indent=None)
    n_priv = sum(len(t["private"]) for t in tests.values())
    print(f"  {LCB_TESTS_FILE}: {len(tests)} problems, {n_priv} private tests")
    return path


def main(dest: str | os.PathLike = "./data", datasets: Sequence[str] | None = None, revision: str | None = None,
         source: str = "hf", tests: bool = True) -> int:
    """Fetch ``datasets`` (default: all) into ``dest``; then the LiveCodeBench tests. Returns an exit code."""
    global LCB_REVISION
    if revision:
        LCB_REVISION = revision
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    names = list(datasets or DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        print(f"unknown datasets: {unknown}; known: {list(DATASETS)}", file=sys.stderr)
        return 2
    manifest: dict[str, Any] = {"source": source, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                                "files": {}, "lcb": {"repo": LCB_REPO, "release": LCB_RELEASE,
                                                     "revision": LCB_REVISION}}
    failures = []
    try:
        if source == "github":
            print(f"fetching {names} from {OFFICIAL_REPO}@{OFFICIAL_COMMIT[:7]} into {dest}")
            manifest["files"].update(fetch_github(dest, names))
        elif source == "hf":
            for name in names:
                if name not in HF_BUILDERS:
                    print(f"{name}: no hub rebuild (gated data, unknown option shuffle); "
                          f"copying the official file from {OFFICIAL_REPO}@{OFFICIAL_COMMIT[:7]} instead")
                    try:
                        manifest["files"].update(fetch_github(dest, [name]))
                    except FetchError as e:
                        failures.append(f"{name}: {e}")
                    continue
                print(f"building {name} from the hub ...")
                try:
                    records = HF_BUILDERS[name]()
                except FetchError as e:
                    failures.append(f"{name}: {e}")
                    continue
                main_file = dest / DATASETS[name].files[0]
                _write_json(main_file, records)
                if name == "humaneval":
                    write_humaneval_gz(dest / "HumanEval.jsonl.gz", records)
                for f in DATASETS[name].files:
                    digest = sha256_file(dest / f)
                    manifest["files"][f] = digest
                    same = "identical to the shipped copy" if digest == SHA256.get(f) else "differs from the shipped sha256"
                    print(f"  {f}: {len(records)} items, {same}")
        else:
            print(f"unknown source {source!r} (hf | github)", file=sys.stderr)
            return 2
        if tests and "livecodebench" in names:
            print(f"fetching LiveCodeBench tests ({LCB_REPO} {LCB_RELEASE}, revision {LCB_REVISION}) ...")
            try:
                fetch_lcb_tests(dest, LCB_REVISION)
            except FetchError as e:
                failures.append(f"livecodebench tests: {e}")
    except FetchError as e:
        failures.append(str(e))
    _write_json(dest / MANIFEST, manifest)
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failures else 0
