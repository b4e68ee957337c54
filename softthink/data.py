"""Benchmark data: the registry :data:`DATASETS` and the loader of the shipped JSON files.

:data:`DATASETS` is the one list of benchmarks: kind, files, size, prompt builder, grader and display labels of each.
Prompts, graders, tables and figures look a dataset up there and keep no list of their own; adding a benchmark is a
:class:`DatasetSpec` entry plus its data file (docs/architecture.md, "How to add a benchmark").

Rules (docs/design/evaluation.md §1):

* Every JSON file is a list of ``{"prompt": [{"from": "user", "value": question}], "final_answer": answer}``
  records (GPQA adds ``choices``). ``Item.index`` is the 0-based position in the file; ``Item.id`` is the
  ``task_id`` / ``question_id`` where the record has one, else ``str(index)``.
* Every file read is hashed; a sha256 that differs from the table below is recorded as a warning on the dataset
  (``Dataset.warnings``, ``Dataset.sha_ok``) and emitted with ``warnings.warn`` -- never silently accepted.
* Folder lookup order: ``$SOFTTHINK_DATA_DIR``, ``./data`` (cwd), ``<repo>/data``, ``<repo>/../shared/datasets``,
  ``./../shared/datasets`` (cwd). The first folder that holds the dataset's main file wins. Missing data raises
  one :class:`DataNotFound` naming every folder tried and the fetch command.
* ``aime2024_key="original"`` restores gold 480 for index 22 (the answer used before upstream commit ``ca051c2``;
  docs/design/algorithm.md B7); ``"fixed"`` (default) keeps the file's corrected 197.
* LiveCodeBench tests are not shipped; ``livecodebench_tests.json`` (written by ``python -m softthink data fetch``)
  is looked up in the same folders and merged into ``Item.meta["tests"]`` when present.
"""
from __future__ import annotations

import gzip
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from softthink.files import repo_root, sha256_file  # noqa: F401  (data.sha256_file, data.repo_root: public names)

ENV_VAR = "SOFTTHINK_DATA_DIR"
FETCH_COMMAND = "make data  (= python -m softthink data fetch --dest ./data)"
LCB_TESTS_FILE = "livecodebench_tests.json"

# Full sha256 of the shipped files (docs/design/evaluation.md §1; official repository commit b97407c).
SHA256: dict[str, str] = {
    "aime2024.json": "d7e2deccb589c973cffabb5d36e8e428a9c9c595dae6b6c95beb2ee2cfa870c3",
    "aime2025.json": "b9d730eab85774f6ce5dbb30d813520fea8c0f543e8224bc4de853f65084477a",
    "amc23.json": "a08542e241ab31d2c99dedbe84b2755400e5bd53e6d8d16678b14b897530254c",
    "gsm8k.json": "f7c5625d8118e758abb0c6ed3e1d6002d238c72ea4a835157488502443d65085",
    "math500.json": "236bd0cc329ee3efaf045a150e6473e4f420e7e7e17051a4e77a1f2688599e63",
    "gpqa_diamond.json": "a24a0e376dcf6d1ea515ed6810c3918293406655ea760b6c2ab76e8b96af88da",
    "humaneval.json": "1d1e7fd459c96df294222242683726e766588a0086370c5ad68f86f01cabbada",
    "HumanEval.jsonl.gz": "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
    "mbpp.json": "1a2894d0aadfb104c2c43b5d241f559f8bee4bc3db85336196031d96afce5822",
    "mbpp_test.jsonl": "e57e9c9999aa35128f4d0b6a486979c2c1dce4f4b8c0680bf92bc6f5f147779f",
    "livecodebench.json": "9fac5eb7b355ce86bba186bf0e1dcbb34c95904ac38e39fc460f5678d34c9d9d",
}


@dataclass(frozen=True)
class DatasetSpec:
    """One benchmark: everything the loader, prompts, graders, tables and figures need to know about it.

    ``kind`` picks the grader family (math | gpqa | code); ``prompt`` the builder in ``softthink.prompts.BUILDERS``
    (math | gpqa | humaneval | mbpp | livecodebench); ``grader`` how that family reads the gold: for math
    ``math_expr`` (a plain number or expression, parsed by math-verify's ``ExprExtractionConfig``) or ``math_latex``
    (wrapped as ``$gold$`` and parsed as LaTeX); ``gpqa`` (a letter A-D); for code the program shape
    ``humaneval`` | ``mbpp`` | ``livecodebench``. ``files``: the files read (the first is the main JSON list);
    ``count``: the expected number of items; ``label``/``title``: table column and long names."""

    name: str
    kind: str
    files: tuple[str, ...]
    count: int
    label: str
    title: str
    prompt: str
    grader: str
    optional_files: tuple[str, ...] = ()


# name, kind, files, count, label, title, prompt, grader
DATASETS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("aime2024", "math", ("aime2024.json",), 30, "AIME24", "AIME 2024", "math", "math_expr"),
    DatasetSpec("aime2025", "math", ("aime2025.json",), 30, "AIME25", "AIME 2025", "math", "math_expr"),
    DatasetSpec("amc23", "math", ("amc23.json",), 40, "AMC23", "AMC 2023", "math", "math_latex"),
    DatasetSpec("math500", "math", ("math500.json",), 500, "MATH500", "MATH-500", "math", "math_latex"),
    DatasetSpec("gsm8k", "math", ("gsm8k.json",), 1319, "GSM8K", "GSM8K", "math", "math_expr"),
    DatasetSpec("gpqa_diamond", "gpqa", ("gpqa_diamond.json",), 198, "GPQA-D", "GPQA Diamond", "gpqa", "gpqa"),
    DatasetSpec("humaneval", "code", ("humaneval.json", "HumanEval.jsonl.gz"), 164, "HumanEval", "HumanEval",
                "humaneval", "humaneval"),
    DatasetSpec("mbpp", "code", ("mbpp.json",), 257, "MBPP", "MBPP (sanitized)", "mbpp", "mbpp"),
    DatasetSpec("livecodebench", "code", ("livecodebench.json",), 279, "LiveCodeBench", "LiveCodeBench v5",
                "livecodebench", "livecodebench", optional_files=(LCB_TESTS_FILE,)),
]}
KINDS = ("math", "gpqa", "code")


def names(kind: str | None = None) -> tuple[str, ...]:
    """Registered dataset names (of one ``kind``), in registry order. Read at call time: a benchmark registered
    later (``DATASETS[spec.name] = spec``) is included."""
    return tuple(n for n, s in DATASETS.items() if kind is None or s.kind == kind)


class RegistryField(Mapping):
    """Read-only ``{name: getattr(spec, attr)}`` over :data:`DATASETS`, read at each access (``paper.DATASET_LABELS``
    is ``RegistryField("label")``: a benchmark registered later has its label in every table and figure)."""

    def __init__(self, attr: str):
        self.attr = attr

    def __getitem__(self, name: str) -> Any:
        return getattr(DATASETS[name], self.attr)

    def __iter__(self):
        return iter(list(DATASETS))

    def __len__(self) -> int:
        return len(DATASETS)

    def __repr__(self) -> str:
        return f"RegistryField({self.attr!r}: {dict(self)!r})"


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``; a KeyError naming the known datasets otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


AIME2024_FIX_INDEX = 22
AIME2024_ORIGINAL_GOLD = "480"
AIME2024_FIXED_GOLD = "197"


class DataNotFound(FileNotFoundError):
    """The benchmark files are in none of the searched folders."""


@dataclass
class Item:
    """One benchmark problem. ``answer``: gold string (math/GPQA) or the ``final_answer`` dict (code)."""

    id: str
    index: int
    question: str
    answer: Any
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    """A loaded benchmark. ``files`` maps each file read to its actual sha256."""

    name: str
    kind: str
    items: list[Item]
    files: dict[str, str]
    path: Path
    warnings: list[str] = field(default_factory=list)
    sha_mismatch: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> dict[str, str]:  # name used in docs/architecture.md
        return self.files

    @property
    def sha_ok(self) -> bool:
        return not self.sha_mismatch

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


# ------------------------------------------------------------------------------------------------ folders

def candidate_dirs() -> list[Path]:
    """Folders searched for data, in order, without duplicates (see the module docstring)."""
    cands: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        cands.append(Path(env).expanduser())
    cwd = Path.cwd()
    root = repo_root()
    cands += [cwd / "data", root / "data", root.parent / "shared" / "datasets", cwd.parent / "shared" / "datasets"]
    out: list[Path] = []
    seen: set[str] = set()
    for c in cands:
        key = str(c.resolve()) if c.exists() else str(c.absolute())
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


def find_data_dir(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """First folder holding every required file of dataset ``name``; raises :class:`DataNotFound`."""
    spec = dataset_spec(name)
    dirs = [Path(data_dir)] if data_dir is not None else candidate_dirs()
    for d in dirs:
        if all((d / f).is_file() for f in spec.files):
            return d
    tried = "\n".join(f"  - {d}" for d in dirs)
    raise DataNotFound(
        f"dataset {name!r}: files {', '.join(spec.files)} not found. Looked in:\n{tried}\n"
        f"Set ${ENV_VAR} to a folder that holds them, or fetch them with: {FETCH_COMMAND}"
    )


def _find_optional(filename: str, first: Path) -> Path | None:
    for d in [first, *candidate_dirs()]:
        if (d / filename).is_file():
            return d / filename
    return None


# ------------------------------------------------------------------------------------------------ loading

def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None, aime2024_key: str = "fixed") -> Dataset:
    """Load benchmark ``name`` (see :data:`DATASETS`) into a :class:`Dataset`."""
    spec = dataset_spec(name)
    if aime2024_key not in ("fixed", "original"):
        raise ValueError(f"aime2024_key must be 'fixed' or 'original', not {aime2024_key!r}")
    folder = find_data_dir(name, data_dir)
    ds = Dataset(name=name, kind=spec.kind, items=[], files={}, path=folder)
    for f in spec.files:
        _hash_into(ds, folder / f)

    records = json.loads((folder / spec.files[0]).read_text(encoding="utf-8"))
    if not isinstance(records, list):
        raise ValueError(f"{folder / spec.files[0]}: expected a JSON list of records")
    ds.items = [_make_item(spec.grader, i, r) for i, r in enumerate(records)]

    if name == "aime2024":
        ds.options["aime2024_key"] = aime2024_key
        _apply_aime2024_key(ds, aime2024_key)
    elif name == "humaneval":
        _merge_humaneval(ds, folder / "HumanEval.jsonl.gz")
    elif name == "livecodebench":
        tests = _find_optional(LCB_TESTS_FILE, folder)
        if tests is not None:
            _hash_into(ds, tests, check=False)
            _merge_lcb_tests(ds, tests)
        ds.options["tests_loaded"] = tests is not None

    if len(ds.items) != spec.count:
        _warn(ds, f"{name}: {len(ds.items)} items, expected {spec.count}")
    return ds


def _hash_into(ds: Dataset, path: Path, check: bool = True) -> None:
    digest = sha256_file(path)
    ds.files[path.name] = digest
    expected = SHA256.get(path.name)
    if check and expected is not None and digest != expected:
        ds.sha_mismatch.append(path.name)
        _warn(ds, f"{path}: sha256 {digest} differs from the pinned {expected} (docs/design/evaluation.md §1); "
                  "results are not comparable with the shipped data")


def _warn(ds: Dataset, msg: str) -> None:
    ds.warnings.append(msg)
    warnings.warn(msg, stacklevel=3)


def _make_item(grader: str, index: int, rec: dict[str, Any]) -> Item:
    """One record as an Item; the fields a grader needs are taken by the spec's ``grader`` (record shape)."""
    question = rec["prompt"][0]["value"]
    answer = rec["final_answer"]
    meta: dict[str, Any] = {}
    item_id = str(index)
    if grader == "gpqa":
        meta["choices"] = dict(rec["choices"])
    elif grader == "humaneval":
        item_id = answer["task_id"]
        meta.update(task_id=answer["task_id"], entry_point=answer["entry_point"], test=answer["test"],
                    canonical_solution=answer["canonical_solution"], prompt=question)
    elif grader == "mbpp":
        item_id = str(answer["task_id"])
        meta.update(task_id=answer["task_id"], test_list=list(answer["test_list"]),
                    test_import=list(answer.get("test_import") or []), code=answer["code"])
    elif grader == "livecodebench":
        item_id = answer["question_id"]
        meta.update(answer)
        meta.update(_lcb_derived(answer))
    return Item(id=item_id, index=index, question=question, answer=answer, meta=meta)


def _lcb_derived(fa: dict[str, Any]) -> dict[str, Any]:
    """Fields the official file lacks but the grader needs: platform and test type (from ids and starter code)."""
    qid, contest = fa["question_id"], fa.get("contest_id", "")
    if qid.isdigit():
        platform = "leetcode"
    elif contest.startswith(("abc", "arc", "agc")):
        platform = "atcoder"
    else:
        platform = "codeforces"
    return {"platform": platform, "testtype": "functional" if fa.get("starter_code") else "stdin"}


def _apply_aime2024_key(ds: Dataset, key: str) -> None:
    item = ds.items[AIME2024_FIX_INDEX] if len(ds.items) > AIME2024_FIX_INDEX else None
    if item is None or str(item.answer) != AIME2024_FIXED_GOLD:
        _warn(ds, f"aime2024: index {AIME2024_FIX_INDEX} gold is {getattr(item, 'answer', None)!r}, expected the "
                  f"fixed {AIME2024_FIXED_GOLD!r}; aime2024_key={key!r} left the file's value unchanged")
        return
    if key == "original":
        item.answer = AIME2024_ORIGINAL_GOLD
        item.meta["aime2024_key"] = "original"


def _merge_humaneval(ds: Dataset, gz: Path) -> None:
    """Take prompt/test/entry_point/canonical_solution from the original release; warn where it differs."""
    with gzip.open(gz, "rt", encoding="utf-8") as f:
        rows = {r["task_id"]: r for r in map(json.loads, filter(str.strip, f))}
    for item in ds.items:
        row = rows.get(item.id)
        if row is None:
            _warn(ds, f"humaneval: {item.id} missing from {gz.name}")
            continue
        for k in ("prompt", "test", "entry_point", "canonical_solution"):
            if item.meta.get(k) != row[k]:
                _warn(ds, f"humaneval: {item.id} field {k!r} differs between humaneval.json and {gz.name}; "
                          f"using {gz.name}")
            item.meta[k] = row[k]


def _merge_lcb_tests(ds: Dataset, path: Path) -> None:
    tests = json.loads(path.read_text(encoding="utf-8"))
    missing = [it.id for it in ds.items if it.id not in tests]
    for item in ds.items:
        t = tests.get(item.id)
        if t is not None:
            item.meta["tests"] = t
            if t.get("func_name"):
                item.meta["func_name"] = t["func_name"]
    if missing:
        _warn(ds, f"livecodebench: {len(missing)} of {len(ds.items)} items have no tests in {path} "
                  f"(first: {missing[:3]})")


def select(items: Sequence[Item], start: int = 0, end: int | None = None, limit: int | None = None) -> list[Item]:
    """``items[start:end]``, then at most ``limit`` of them."""
    out = list(items[start:end])
    return out if limit is None else out[: max(0, limit)]


# ------------------------------------------------------------------------------------------------ CLI

def _cmd_list(args) -> int:
    rows = []
    for name, spec in DATASETS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = load_dataset(name, data_dir=args.data_dir)
            extra = ""
            if name == "livecodebench":
                extra = "tests: yes" if ds.options.get("tests_loaded") else "tests: not fetched"
            rows.append((name, spec.kind, str(len(ds)), str(ds.path), "ok" if ds.sha_ok else "MISMATCH", extra))
        except DataNotFound:
            rows.append((name, spec.kind, "-", "not found", "-", ""))
    header = ("dataset", "kind", "items", "found in", "sha256", "")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if any(r[2] == "-" for r in rows):
        print(f"\nmissing data: {FETCH_COMMAND}")
    return 0


def _cmd_fetch(args) -> int:
    from softthink import fetch

    return fetch.main(dest=args.dest, datasets=args.datasets or None, revision=args.revision, source=args.source,
                      tests=args.tests)


def add_commands(subparsers) -> None:
    """``python -m softthink data list|fetch``."""
    p = subparsers.add_parser("data", help="benchmark data: list what is found, fetch what is missing")
    sub = p.add_subparsers(dest="data_command", required=True)
    pl = sub.add_parser("list", help="datasets, item counts, folder found in, sha256 check")
    pl.add_argument("--data-dir", default=None, help="look only in this folder")
    pl.set_defaults(func=_cmd_list)
    pf = sub.add_parser("fetch", help="download the benchmarks (and LiveCodeBench tests) from the Hugging Face hub")
    pf.add_argument("--dest", default="./data", help="target folder (default ./data)")
    pf.add_argument("--datasets", nargs="*", default=None, help="subset (default: all)")
    pf.add_argument("--source", default="hf", choices=["hf", "github"],
                    help="hf: rebuild from the Hugging Face hub (default); github: byte copies of the official files")
    pf.add_argument("--revision", default=None, help="hub revision for livecodebench/code_generation_lite")
    pf.add_argument("--no-tests", dest="tests", action="store_false", help="skip the LiveCodeBench test download")
    pf.set_defaults(func=_cmd_fetch)

