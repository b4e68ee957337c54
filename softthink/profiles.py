"""Experiment profiles (`params/<profile>/`) and the `reproduce` pipeline runner.

Layout of `params/`:

* `params/<profile>/_profile.yaml`: `description`, `analysis` (notebooks run after grading, from
  `tables`, `figures`, `sweep_analysis`, `explore`), optional `include` (other profiles whose experiments are added),
  `runs_dir` (default `runs`), `figures_dir` (default `figures`), `report_dir` (default `build/report`),
  `budget_minutes` (documentation; the demo profile is measured against it), `notebook_timeout_s`.
* every other `params/<profile>/*.yaml` is an experiment file: either **one run spec** (the keys of
  `softthink.runs.RunSpec`, usable directly with `python -m softthink run --config FILE`), or a **group**:

      name: "{model}-{dataset}-{method}"      # template over the matrix axes
      defaults: {...run spec keys...}
      matrix:                                  # cartesian product; each value is merged into the spec
        model: {qwq32b: {model: Qwen/QwQ-32B}, ...}
        dataset: {aime2024: {dataset: aime2024}, ...}
      overrides:                               # optional: extra keys for some combinations
        - when: {model: qwq32b, method: soft}
          set: {generation: {think: {max_topk: 15}}}
      exclude: [{model: dsllama70b, dataset: livecodebench}]   # optional
      experiments: [{name: ..., spec: {...}}]  # optional explicit extra entries (merged over defaults)

  `python -m softthink params expand --profile P --out DIR` writes every expanded experiment as its own run-spec
  YAML. Profiles and files are validated (every spec through `RunSpec.from_dict`, unique names, known analysis
  notebooks) before anything runs: `python -m softthink validate-params`.

Pipeline (`python -m softthink reproduce --profile demo [--gpus N]`):

1. validate the profile; convert `notebooks/*.py` (jupytext, the single source of truth) to
   `build/notebooks/*.ipynb` with the `softthink` kernel;
2. per experiment: if its run directory is complete, skip it ("cached"); otherwise execute the *generate* notebook
   with papermill (`-k softthink`), which resumes a partial run. With `--gpus N`, N experiments run at once, each
   with its own `CUDA_VISIBLE_DEVICES`;
3. execute the *grade* notebook (a fresh kernel; it grades each run in its own `python -m softthink grade`
   process) for runs without up-to-date grades;
4. execute the analysis notebooks (tables, figures, sweep analysis) and build the HTML report;
5. print and write (`build/<profile>/reproduce.json`) a summary; a failing step is reported with its executed
   notebook and does not stop the others; the exit status is 1 when anything failed.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from softthink.config import ConfigError

KERNEL_NAME = "softthink"
NOTEBOOKS = ("generate", "grade", "tables", "figures", "explore", "sweep_analysis")
ANALYSIS_NOTEBOOKS = ("tables", "figures", "sweep_analysis", "explore")
PROFILE_FILE = "_profile.yaml"
PROFILE_KEYS = ("description", "analysis", "include", "runs_dir", "figures_dir", "report_dir", "budget_minutes",
                "notebook_timeout_s", "report_notebooks", "notebook_params", "jobs")
GROUP_KEYS = ("name", "defaults", "matrix", "overrides", "exclude", "experiments", "description")


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def params_dir() -> Path:
    return repo_root() / "params"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


# ================================================================================================================
# profiles


@dataclass
class Experiment:
    name: str
    spec: dict[str, Any]
    source: str

    def run_spec(self):
        from softthink.runs import RunSpec

        return RunSpec.from_dict(copy.deepcopy(self.spec))


@dataclass
class Profile:
    name: str
    description: str = ""
    analysis: list[str] = field(default_factory=lambda: ["tables", "figures"])
    include: list[str] = field(default_factory=list)
    runs_dir: str = "runs"
    figures_dir: str = "figures"
    report_dir: str = "build/report"
    budget_minutes: float | None = None
    notebook_timeout_s: int = 3600
    report_notebooks: bool = True
    notebook_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: int = 1  # CPU: experiments generated at once (each with OMP_NUM_THREADS = cores // jobs)
    experiments: list[Experiment] = field(default_factory=list)

    @property
    def build_dir(self) -> Path:
        return Path("build") / self.name


def list_profiles(root: Path | None = None) -> list[str]:
    root = root or params_dir()
    return sorted(p.name for p in root.iterdir() if (p / PROFILE_FILE).is_file()) if root.is_dir() else []


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def deep_merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in (new or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def expand_file(path: Path) -> list[Experiment]:
    """Experiments of one params file (a run spec, or a group with defaults / matrix / overrides / exclude)."""
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if not any(k in data for k in ("defaults", "matrix", "experiments")):
        return [Experiment(path.stem, data, str(path))]
    for k in data:
        if k not in GROUP_KEYS:
            raise ConfigError(f"{path}: unknown key {k!r} in a group file; allowed: {', '.join(GROUP_KEYS)}")
    defaults = data.get("defaults") or {}
    matrix = data.get("matrix") or {}
    if not isinstance(matrix, dict) or not all(isinstance(v, dict) and v for v in matrix.values()):
        raise ConfigError(f"{path}: matrix: expected axis -> {{label: spec fragment}} mappings")
    template = data.get("name") or "-".join("{" + a + "}" for a in matrix) or path.stem
    overrides = data.get("overrides") or []
    excludes = data.get("exclude") or []
    out: list[Experiment] = []
    axes = list(matrix)
    for combo in itertools.product(*[list(matrix[a].items()) for a in axes]) if axes else []:
        labels = {a: str(lab) for a, (lab, _frag) in zip(axes, combo)}
        if any(all(labels.get(k) == str(v) for k, v in ex.items()) for ex in excludes):
            continue
        spec = copy.deepcopy(defaults)
        for _a, (_lab, frag) in zip(axes, combo):
            spec = deep_merge(spec, frag or {})
        for ov in overrides:
            when = ov.get("when") or {}
            unknown = set(when) - set(axes)
            if unknown:
                raise ConfigError(f"{path}: overrides.when names unknown axes {sorted(unknown)}")
            if all(labels.get(k) == str(v) or (isinstance(v, list) and labels.get(k) in map(str, v))
                   for k, v in when.items()):
                spec = deep_merge(spec, ov.get("set") or {})
        try:
            name = template.format(**labels)
        except KeyError as e:
            raise ConfigError(f"{path}: name template {template!r} uses unknown axis {e}") from None
        out.append(Experiment(name, spec, str(path)))
    for i, e in enumerate(data.get("experiments") or []):
        if not isinstance(e, dict) or "name" not in e:
            raise ConfigError(f"{path}: experiments[{i}]: expected {{name, spec}}")
        out.append(Experiment(str(e["name"]), deep_merge(defaults, e.get("spec") or {}), str(path)))
    return out


def load_profile(name: str, root: Path | None = None, _seen: tuple[str, ...] = ()) -> Profile:
    root = root or params_dir()
    pdir = root / name
    if not (pdir / PROFILE_FILE).is_file():
        raise ConfigError(f"profile {name!r}: {pdir / PROFILE_FILE} not found; profiles: {', '.join(list_profiles(root))}")
    meta = _load_yaml(pdir / PROFILE_FILE) or {}
    if not isinstance(meta, dict):
        raise ConfigError(f"{pdir / PROFILE_FILE}: expected a mapping")
    for k in meta:
        if k not in PROFILE_KEYS:
            raise ConfigError(f"{pdir / PROFILE_FILE}: unknown key {k!r}; allowed: {', '.join(PROFILE_KEYS)}")
    prof = Profile(name=name, **{k: v for k, v in meta.items()})
    bad = [a for a in prof.analysis if a not in ANALYSIS_NOTEBOOKS]
    if bad:
        raise ConfigError(f"profile {name!r}: analysis {bad} unknown; choose from {', '.join(ANALYSIS_NOTEBOOKS)}")
    for nb, vals in (prof.notebook_params or {}).items():
        if nb not in PARAM_TYPES or not isinstance(vals, dict):
            raise ConfigError(f"profile {name!r}: notebook_params.{nb}: unknown notebook or not a mapping")
        extra = set(vals) - set(PARAM_TYPES[nb])
        if extra:
            raise ConfigError(f"profile {name!r}: notebook_params.{nb}: unknown parameter(s) {sorted(extra)}")
    for f in sorted(pdir.glob("*.yaml")):
        if f.name != PROFILE_FILE:
            prof.experiments += expand_file(f)
    for inc in prof.include:
        if inc in _seen + (name,):
            raise ConfigError(f"profile {name!r}: include cycle through {inc!r}")
        prof.experiments += load_profile(inc, root, _seen + (name,)).experiments
    return prof


def validate_profile(prof: Profile) -> list[str]:
    """Every problem of a profile (empty list = valid). Specs go through `RunSpec.from_dict` (no model loaded)."""
    from softthink.runs import RunSpec

    problems = []
    seen: dict[str, str] = {}
    for e in prof.experiments:
        if not _NAME_RE.match(e.name):
            problems.append(f"{e.source}: experiment name {e.name!r} is not a plain file name")
        if e.name in seen:
            problems.append(f"{e.source}: duplicate experiment name {e.name!r} (also in {seen[e.name]})")
        seen[e.name] = e.source
        try:
            RunSpec.from_dict(copy.deepcopy(e.spec))
        except (ConfigError, TypeError, ValueError) as err:
            problems.append(f"{e.source} [{e.name}]: {err}")
    if not prof.experiments and prof.name != "methods":
        problems.append(f"profile {prof.name!r} has no experiments")
    return problems


def validate_all(names: Sequence[str] | None = None) -> dict[str, list[str]]:
    out = {}
    for n in names or list_profiles():
        try:
            out[n] = validate_profile(load_profile(n))
        except ConfigError as e:
            out[n] = [str(e)]
    return out


def write_experiment_specs(prof: Profile, out_dir: Path) -> dict[str, Path]:
    import yaml

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for e in prof.experiments:
        p = out_dir / f"{e.name}.yaml"
        text = yaml.safe_dump(e.spec, sort_keys=False)
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
        paths[e.name] = p
    return paths


# ================================================================================================================
# notebooks: jupytext sources -> ipynb, papermill execution, sidecars


def build_notebooks(out_dir: Path | str = "build/notebooks", names: Iterable[str] = NOTEBOOKS) -> dict[str, Path]:
    """Convert `notebooks/<name>.py` (py:percent, the source of truth) to ipynb with the softthink kernelspec."""
    import jupytext

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        src = notebooks_dir() / f"{name}.py"
        nb = jupytext.read(src)
        nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python (softthink)", "language": "python"}
        nb.metadata.pop("jupytext", None)
        dst = out_dir / f"{name}.ipynb"
        jupytext.write(nb, dst, fmt="ipynb")
        out[name] = dst
    return out


def check_notebook_source(name: str) -> list[str]:
    """Conventions of docs/design/evaluation.md §8: exactly one `parameters` cell, every parameter typed and commented,
    a params-validation call right after it, a sidecar written through the library."""
    import jupytext

    src = notebooks_dir() / f"{name}.py"
    nb = jupytext.read(src)
    problems = []
    pcells = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if len(pcells) != 1:
        return [f"{name}: expected exactly one cell tagged 'parameters', found {len(pcells)}"]
    cell = nb.cells[pcells[0]]
    for line in cell.source.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not re.match(r"^[A-Za-z_]\w*\s*:\s*[^=]+=\s*.+#\s*\S", s):
            problems.append(f"{name}: parameter line without type hint or comment: {s!r}")
    from papermill.translators import PythonTranslator

    declared = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    parsed = PythonTranslator.inspect({"source": cell.source})
    if len(parsed) != len(declared):
        names = {p.name for p in parsed}
        problems.append(f"{name}: papermill cannot parse parameter line(s) "
                        f"{[ln for ln in declared if ln.split(':')[0].strip() not in names]} (no '=' or quotes in comments)")
    nxt = nb.cells[pcells[0] + 1].source if pcells[0] + 1 < len(nb.cells) else ""
    if "notebook_params(" not in nxt:
        problems.append(f"{name}: the cell after 'parameters' must validate them with softthink.profiles.notebook_params")
    if "write_sidecar(" not in "".join(c.source for c in nb.cells):
        problems.append(f"{name}: no sidecar written (softthink.report.write_sidecar)")
    return problems


def paired_out_of_sync() -> list[str]:
    """notebooks/*.ipynb written by jupytext pairing in JupyterLab (gitignored copies) whose code/markdown differ
    from the `.py` source of truth. The `.py` files are what the pipeline runs."""
    import jupytext

    bad = []
    for ipynb in sorted(notebooks_dir().glob("*.ipynb")):
        src = ipynb.with_suffix(".py")
        if not src.exists():
            bad.append(f"{ipynb.name}: no {src.name} (the .py file is the source of truth)")
            continue
        a = [(c.cell_type, c.source.strip()) for c in jupytext.read(src).cells]
        b = [(c.cell_type, c.source.strip()) for c in jupytext.read(ipynb).cells]
        if a != b:
            bad.append(f"{ipynb.name}: differs from {src.name}; run `jupytext --sync notebooks/{src.name}`")
    return bad


_NB_IGNORE = {"In", "Out", "get_ipython", "exit", "quit", "open"}


@dataclass
class NotebookParams:
    """Validated parameters of one notebook run (attribute access)."""

    notebook: str
    values: dict[str, Any]

    def __getattr__(self, k: str) -> Any:
        try:
            return self.__dict__["values"][k]
        except KeyError:
            raise AttributeError(k) from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)


PARAM_TYPES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "generate": {"spec_file": str, "runs_dir": str, "sidecar": str, "n_preview": int, "progress": bool,
                 "overrides": list},
    "grade": {"run_dirs": list, "runs_dir": str, "manifest": str, "sidecar": str, "mode": str, "force": bool},
    "tables": {"runs_dir": str, "manifest": str, "out_dir": str, "sidecar": str, "grader": str},
    "figures": {"runs_dir": str, "manifest": str, "out_dir": str, "sidecar": str, "grader": str, "trace_run": str,
                "max_trace_steps": int, "top_k_shown": int},
    "explore": {"model": str, "question": str, "max_new_tokens": int, "max_topk": int, "threshold": float,
                "length": int, "sidecar": str, "interactive": bool, "device": str},
    "sweep_analysis": {"runs_dir": str, "manifest": str, "out_dir": str, "sidecar": str, "grader": str},
}


def notebook_params(notebook: str, namespace: dict[str, Any]) -> NotebookParams:
    """Coerce and validate a notebook's parameters (the globals after the parameters + injected cells).

    Unknown names (a misspelt `-p`) raise: papermill only warns about them."""
    types = PARAM_TYPES[notebook]
    values = {}
    unknown = [k for k, v in namespace.items() if not k.startswith("_") and k not in _NB_IGNORE and k not in types
               and not callable(v) and type(v).__name__ != "module"]
    if unknown:
        raise ConfigError(f"{notebook}: unknown parameter(s) {sorted(unknown)}; allowed: {', '.join(types)}")
    for k, t in types.items():
        if k not in namespace:
            raise ConfigError(f"{notebook}: parameter {k!r} missing")
        v = namespace[k]
        if t is float and isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
        elif t is float and isinstance(v, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                v = float(v)
            except ValueError:
                pass
        if t is list and isinstance(v, (tuple, str)):
            v = [v] if isinstance(v, str) and v else list(v) if not isinstance(v, str) else []
        if not isinstance(v, t) or (t is int and isinstance(v, bool)):
            raise ConfigError(f"{notebook}: parameter {k!r} must be {getattr(t, '__name__', t)}, got {v!r}")
        values[k] = v
    return NotebookParams(notebook, values)


def kernel_installed(name: str = KERNEL_NAME) -> bool:
    from jupyter_client.kernelspec import KernelSpecManager

    return name in KernelSpecManager().find_kernel_specs()


def ensure_kernel(name: str = KERNEL_NAME) -> None:
    if not kernel_installed(name):
        raise RuntimeError(f"Jupyter kernel {name!r} is not installed; run: "
                           f"{sys.executable} -m ipykernel install --sys-prefix --name {name}  (make kernel)")


@dataclass
class StepResult:
    step: str
    name: str
    status: str  # cached | ok | failed | skipped
    seconds: float = 0.0
    notebook: str | None = None
    sidecar: str | None = None
    run_dir: str | None = None
    error: str | None = None


def execute_notebook(ipynb: Path, out: Path, parameters: dict[str, Any], timeout_s: int | None = None,
                     env: dict[str, str] | None = None, cwd: Path | None = None, log: Path | None = None) -> tuple[bool, str]:
    """papermill in a child process (`-k softthink`); returns (ok, error text). The executed notebook is always
    written (with papermill's error banner on failure)."""
    import yaml

    out.parent.mkdir(parents=True, exist_ok=True)
    pfile = out.with_suffix(".params.yaml")
    pfile.write_text(yaml.safe_dump(parameters, sort_keys=False))
    cmd = [sys.executable, "-m", "papermill", str(ipynb), str(out), "-k", KERNEL_NAME, "-f", str(pfile),
           "--cwd", str(cwd or repo_root()), "--no-progress-bar"]
    if timeout_s:
        cmd += ["--execution-timeout", str(int(timeout_s))]
    full_env = dict(os.environ)
    full_env.setdefault("MPLBACKEND", "Agg")
    full_env["PYTHONPATH"] = str(repo_root()) + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
    full_env.update(env or {})
    log = log or out.with_suffix(".log")
    with open(log, "w") as fh:
        res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env)
    if res.returncode != 0:
        tail = log.read_text()[-3000:]
        m = re.findall(r"^(\w+(?:Error|Exception)[^\n]*)", tail, flags=re.M)
        return False, (m[-1] if m else tail.strip().splitlines()[-1] if tail.strip() else f"exit {res.returncode}")
    return True, ""


def attach_papermill(sidecar: Path, executed: Path) -> None:
    """Copy `metadata.papermill` of an executed notebook into its sidecar (docs/design/evaluation.md §8)."""
    if not executed.exists():
        return
    try:
        nb = json.loads(executed.read_text())
    except (OSError, json.JSONDecodeError):
        return
    pm = nb.get("metadata", {}).get("papermill", {})
    body = json.loads(sidecar.read_text()) if sidecar.exists() else {"notebook": executed.stem, "status": "failed"}
    body["papermill"] = {k: pm.get(k) for k in ("parameters", "start_time", "end_time", "duration", "exception",
                                                "input_path", "output_path", "version")}
    body["executed_notebook"] = str(executed)
    tmp = sidecar.with_suffix(".json.tmp")
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(body, indent=1, default=str))
    os.replace(tmp, sidecar)


# ================================================================================================================
# cache status


_TOKENIZERS: dict[str, Any] = {}
_DATASETS: dict[str, Any] = {}


def run_status(spec_path: Path, runs_dir: str) -> tuple[str, str | None, str | None]:
    """("cached" | "partial" | "new" | "error", run_dir, error). Needs the tokenizer (for the chat-template hash)
    and the dataset (file hashes), each loaded once per process."""
    from softthink import runs
    from softthink.data import load_dataset

    try:
        spec = runs.RunSpec.from_yaml(spec_path)
        if spec.model not in _TOKENIZERS:
            _TOKENIZERS[spec.model] = runs.load_tokenizer(spec.model)
        if spec.dataset not in _DATASETS:
            _DATASETS[spec.dataset] = load_dataset(spec.dataset)
        rd = runs.plan_run(spec, tokenizer=_TOKENIZERS[spec.model], dataset=_DATASETS[spec.dataset],
                           runs_dir=runs_dir)
    except Exception as e:  # noqa: BLE001 - reported per experiment, others continue
        return "error", None, f"{type(e).__name__}: {e}"
    if not rd.samples_path.exists():
        return "new", str(rd.path), None
    n = len(runs.read_jsonl(rd.samples_path))
    exp = runs.expected_samples(rd)
    return ("cached" if exp is not None and n >= exp else "partial"), str(rd.path), None


def grades_current(run_dir: str, mode: str | None = None) -> bool:
    from softthink import runs

    rd = runs.RunDir.open(run_dir)
    mode = mode or (rd.spec.grader.mode if rd.spec else "suite")
    g = rd.grades_path(runs.grader_version(), mode)
    return (g.exists() and rd.summary_path.exists() and rd.samples_path.exists()
            and g.stat().st_mtime >= rd.samples_path.stat().st_mtime)


def grade_in_subprocess(run_dirs: Sequence[str], mode: str | None = None, timeout_s: float | None = None
                        ) -> list[dict[str, Any]]:
    """Grade several runs in ONE fresh `python -m softthink grade-runs` process (never the generating one; one
    math-verify / sandbox start-up for all). Returns one status dict per run; a run that fails does not stop the rest."""
    import tempfile

    if not run_dirs:
        return []
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "status.json"
        cmd = [sys.executable, "-m", "softthink", "grade-runs", "--status", str(out), *map(str, run_dirs)]
        if mode:
            cmd[4:4] = ["--mode", mode]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(repo_root()) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            res = subprocess.run(cmd, env=env, timeout=timeout_s, capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return [{"run": d, "status": "failed", "seconds": None, "error": "grading process timed out"} for d in run_dirs]
        if out.exists():
            return json.loads(out.read_text())
        err = (res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.returncode}"]
        return [{"run": d, "status": "failed", "seconds": None, "error": err[0]} for d in run_dirs]


def _cmd_grade_runs(args) -> int:
    from softthink import runs

    status = []
    for d in args.run_dirs:
        t0 = time.time()
        try:
            runs.grade_in_process(d, mode=args.mode)
            status.append({"run": d, "status": "ok", "seconds": round(time.time() - t0, 2), "error": ""})
        except Exception as e:  # noqa: BLE001 - reported; the other runs continue
            status.append({"run": d, "status": "failed", "seconds": round(time.time() - t0, 2),
                           "error": f"{type(e).__name__}: {e}"})
        print(f"{status[-1]['status']:6s} {d} {status[-1]['error']}", flush=True)
    if args.status:
        Path(args.status).write_text(json.dumps(status, indent=1))
    return 1 if any(s["status"] == "failed" for s in status) else 0


def manifest_runs(manifest: str | Path | None, runs_dir: str | Path | None = None) -> list[str]:
    """Run directories named by a manifest (`build/<profile>/manifest.json`), else every run under `runs_dir`."""
    if manifest and Path(manifest).is_file():
        body = json.loads(Path(manifest).read_text())
        return [r for r in dict.fromkeys(body.get("runs", {}).values()) if r and Path(r, "config.json").exists()]
    root = Path(runs_dir or "runs")
    return sorted(str(p.parent) for p in root.glob("*/config.json"))


def graded_runs(dirs: Iterable[str]) -> list[str]:
    return [d for d in dirs if Path(d, "summary.json").exists()]


# ================================================================================================================
# the pipeline


def fingerprint(files: Iterable[Path], params: dict[str, Any]) -> str:
    """Hash of (path, size, mtime) of `files`, the parameters, and the softthink sources: a step whose fingerprint
    is unchanged since its last successful run is skipped."""
    import hashlib

    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    code = sorted(Path(__file__).parent.glob("*.py"))
    for f in list(files) + code:
        try:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}|missing\n".encode())
    return h.hexdigest()


def _fmt_s(s: float) -> str:
    return f"{s:6.1f}s" if s < 120 else f"{s / 60:5.1f}min"


def reproduce(profile: str, gpus: int = 1, jobs: int | None = None, only: Sequence[str] = (), skip_report: bool = False,
              runs_dir: str | None = None, build_root: str | None = None, figures_dir: str | None = None,
              report_dir: str | None = None, timeout_s: int | None = None, quiet: bool = False,
              params_root: str | Path | None = None) -> dict[str, Any]:
    """Run a whole profile (see the module docstring); returns the summary dict (also written to JSON)."""
    t0 = time.time()
    prof = load_profile(profile, Path(params_root) if params_root else None)
    problems = validate_profile(prof)
    if problems:
        raise ConfigError(f"profile {profile!r} is not valid:\n  " + "\n  ".join(problems))
    ensure_kernel()
    runs_dir = runs_dir or prof.runs_dir
    build = Path(build_root) if build_root else prof.build_dir
    figures_dir = figures_dir or prof.figures_dir
    report_dir = report_dir or prof.report_dir
    timeout_s = timeout_s or prof.notebook_timeout_s
    jobs = jobs or prof.jobs
    exps = [e for e in prof.experiments if not only or e.name in only]
    nbs = build_notebooks(build / "notebooks")
    specs = write_experiment_specs(prof, build / "params")
    executed, sidecars = build / "executed", build / "sidecars"
    results: list[StepResult] = []

    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    say(f"[reproduce] profile {profile}: {len(exps)} experiments, runs in {runs_dir}, build in {build}")
    # ---- generation
    todo = []
    manifest: dict[str, str | None] = {}
    first_of: dict[str, str] = {}
    for e in exps:
        status, rd, err = run_status(specs[e.name], runs_dir)
        manifest[e.name] = rd
        if rd and rd in first_of:  # the same run as an earlier experiment (e.g. a sweep's centre point)
            results.append(StepResult("generate", e.name, "cached", run_dir=rd, error=None))
            say(f"  generate {e.name:40s} same run as {first_of[rd]}")
            continue
        if rd:
            first_of[rd] = e.name
        if status == "cached":
            results.append(StepResult("generate", e.name, "cached", run_dir=rd))
            say(f"  generate {e.name:40s} cached  {rd}")
        else:  # new, partial, or not even plannable (the notebook then fails and shows why)
            todo.append((e, rd, status))

    def gen_one(job, slot: int) -> StepResult:
        e, rd, status = job
        out = executed / f"generate-{e.name}.ipynb"
        side = sidecars / f"generate-{e.name}.json"
        env = {"CUDA_VISIBLE_DEVICES": str(slot)} if gpus > 1 else {}
        if jobs > 1 and gpus <= 1:  # CPU workers share the cores
            env.update({"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // jobs))})
        s0 = time.time()
        ok, err = execute_notebook(nbs["generate"], out, {"spec_file": str(specs[e.name]), "runs_dir": runs_dir,
                                                          "sidecar": str(side), "progress": False}, timeout_s, env)
        attach_papermill(side, out)
        r = StepResult("generate", e.name, "ok" if ok else "failed", time.time() - s0, str(out), str(side), rd,
                       None if ok else err)
        say(f"  generate {e.name:40s} {r.status:7s} {_fmt_s(r.seconds)} ({status}) {'' if ok else err + '  -> ' + str(out)}")
        return r

    if todo:
        workers = max(gpus, jobs, 1)
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futs = [pool.submit(gen_one, job, i % max(gpus, 1)) for i, job in enumerate(todo)]
                results += [f.result() for f in futs]
        else:
            results += [gen_one(job, 0) for job in todo]
        for e, _rd, _st in todo:  # a fresh run dir may only now exist
            st, rd, _err = run_status(specs[e.name], runs_dir)
            manifest[e.name] = rd
    build.mkdir(parents=True, exist_ok=True)
    mpath = build / "manifest.json"
    mpath.write_text(json.dumps({"profile": profile, "runs_dir": runs_dir, "runs": manifest}, indent=1))
    # ---- grading (fresh kernel; each run graded in its own process by runs.grade_run)
    have = [rd for rd in dict.fromkeys(manifest.values()) if rd and Path(rd, "samples.jsonl").exists()]
    stale = [rd for rd in have if not grades_current(rd)]
    if stale:
        out, side = executed / "grade.ipynb", sidecars / "grade.json"
        s0 = time.time()
        ok, err = execute_notebook(nbs["grade"], out, {"run_dirs": stale, "runs_dir": runs_dir, "manifest": "",
                                                       "sidecar": str(side)}, timeout_s)
        attach_papermill(side, out)
        results.append(StepResult("grade", f"{len(stale)} runs", "ok" if ok else "failed", time.time() - s0, str(out),
                                  str(side), error=None if ok else err))
        say(f"  grade    {len(stale)} runs{'':33s} {results[-1].status:7s} {_fmt_s(results[-1].seconds)} {'' if ok else err}")
    else:
        results.append(StepResult("grade", "all runs", "cached"))
        say(f"  grade    {'all runs':40s} cached")
    # ---- analysis notebooks (skipped when their inputs, parameters and code are unchanged)
    run_list = [rd for rd in dict.fromkeys(manifest.values()) if rd]
    run_files = [Path(rd, f) for rd in run_list for f in ("summary.json", "samples.jsonl")]
    for name in prof.analysis:
        out, side = executed / f"{name}.ipynb", sidecars / f"{name}.json"
        params = {"runs_dir": runs_dir, "manifest": str(mpath), "out_dir": figures_dir, "sidecar": str(side)}
        if name == "explore":
            params = {"sidecar": str(side), "interactive": False}
        params.update(prof.notebook_params.get(name, {}))
        fp = fingerprint(([] if name == "explore" else run_files) + [notebooks_dir() / f"{name}.py"], params)
        fp_file = build / "cache" / f"{name}.fingerprint"
        if fp_file.exists() and fp_file.read_text() == fp and out.exists() and side.exists():
            results.append(StepResult(name, name, "cached", notebook=str(out), sidecar=str(side)))
            say(f"  {name:8s} {'':40s} cached")
            continue
        s0 = time.time()
        ok, err = execute_notebook(nbs[name], out, params, timeout_s)
        attach_papermill(side, out)
        if ok:
            fp_file.parent.mkdir(parents=True, exist_ok=True)
            fp_file.write_text(fp)
        elif fp_file.exists():
            fp_file.unlink()
        results.append(StepResult(name, name, "ok" if ok else "failed", time.time() - s0, str(out), str(side),
                                  error=None if ok else err))
        say(f"  {name:8s} {'':40s} {results[-1].status:7s} {_fmt_s(results[-1].seconds)} {'' if ok else err + '  -> ' + str(out)}")
    # ---- report (skipped when nothing it shows changed)
    def write_summary() -> dict[str, Any]:
        body = {"profile": profile, "seconds": time.time() - t0, "gpus": gpus, "jobs": jobs, "runs_dir": runs_dir,
                "failed": sum(r.status == "failed" for r in results), "steps": [r.__dict__ for r in results],
                "counts": {s: sum(r.status == s for r in results) for s in ("cached", "ok", "failed")}}
        (build / "reproduce.json").write_text(json.dumps(body, indent=1))
        return body

    write_summary()  # the report shows the pipeline table
    if not skip_report:
        from softthink import report

        s0 = time.time()
        index = Path(report_dir) / "index.html"
        inputs = (sorted(executed.glob("*.ipynb")) + sorted(Path(figures_dir).glob("*")) + run_files
                  + [Path(__file__).with_name("report.py")])
        fp = fingerprint(inputs, {"profile": profile, "report_dir": str(report_dir)})
        fp_file = build / "cache" / "report.fingerprint"
        failed_now = any(r.status == "failed" for r in results)
        if not failed_now and fp_file.exists() and fp_file.read_text() == fp and index.exists():
            results.append(StepResult("report", str(index), "cached"))
        else:
            try:
                path = report.build_report(profile=profile, build_dir=build, figures_dir=figures_dir,
                                           out_dir=report_dir, runs=run_list, render_notebooks=prof.report_notebooks)
                results.append(StepResult("report", str(path), "ok", time.time() - s0))
                fp_file.parent.mkdir(parents=True, exist_ok=True)
                fp_file.write_text(fp)
            except Exception as e:  # noqa: BLE001
                results.append(StepResult("report", report_dir, "failed", time.time() - s0,
                                          error=f"{type(e).__name__}: {e}"))
        say(f"  report   {results[-1].name:40s} {results[-1].status:7s} {_fmt_s(results[-1].seconds)} {results[-1].error or ''}")
    failed = [r for r in results if r.status == "failed"]
    summary = write_summary()
    say(f"[reproduce] {profile}: {summary['counts']} in {_fmt_s(summary['seconds'])}")
    for r in failed:
        say(f"  FAILED {r.step} {r.name}: {r.error}\n         notebook: {r.notebook}")
    return summary


def run_analysis(names: Sequence[str], runs_dir: str = "runs", figures_dir: str = "figures",
                 build: str = "build/figures", manifest: str = "", quiet: bool = False) -> list[StepResult]:
    """`make figures`: the tables and figures notebooks over cached results only (no model)."""
    ensure_kernel()
    b = Path(build)
    nbs = build_notebooks(b / "notebooks", names)
    out = []
    for name in names:
        ex, side = b / "executed" / f"{name}.ipynb", b / "sidecars" / f"{name}.json"
        s0 = time.time()
        ok, err = execute_notebook(nbs[name], ex, {"runs_dir": runs_dir, "manifest": manifest, "out_dir": figures_dir,
                                                   "sidecar": str(side)}, 600)
        attach_papermill(side, ex)
        out.append(StepResult(name, name, "ok" if ok else "failed", time.time() - s0, str(ex), str(side),
                              error=None if ok else err))
        if not quiet:
            print(f"  {name:14s} {out[-1].status:6s} {_fmt_s(out[-1].seconds)} {err}", flush=True)
    return out


# ================================================================================================================
# CLI


def _cmd_reproduce(args) -> int:
    try:
        s = reproduce(args.profile, gpus=args.gpus, jobs=args.jobs, only=args.only or (), skip_report=args.no_report,
                      runs_dir=args.runs_dir, build_root=args.build_dir, figures_dir=args.figures_dir,
                      report_dir=args.report_dir, timeout_s=args.timeout)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if s["failed"] else 0


def _cmd_figures(args) -> int:
    res = run_analysis(["tables", "figures"], runs_dir=args.runs_dir, figures_dir=args.out, manifest=args.manifest or "")
    return 1 if any(r.status == "failed" for r in res) else 0


def _cmd_report(args) -> int:
    from softthink import report

    prof = load_profile(args.profile)
    build = Path(args.build_dir) if args.build_dir else prof.build_dir
    mpath = build / "manifest.json"
    runs = manifest_runs(mpath if mpath.exists() else None, args.runs_dir or prof.runs_dir)
    path = report.build_report(profile=args.profile, build_dir=build, figures_dir=args.figures_dir or prof.figures_dir,
                               out_dir=args.out or prof.report_dir, runs=runs, render_notebooks=True)
    print(path)
    return 0


def _cmd_validate(args) -> int:
    res = validate_all(args.profile or None)
    bad = 0
    for name, problems in res.items():
        prof_n = len(load_profile(name).experiments) if not problems else "?"
        print(f"{name:10s} {'ok' if not problems else 'INVALID'}  ({prof_n} experiments)")
        for p in problems:
            print(f"    {p}")
        bad += bool(problems)
    for nb in NOTEBOOKS:
        for p in check_notebook_source(nb):
            print(f"notebook   {p}")
            bad += 1
    for p in paired_out_of_sync():
        print(f"notebook   {p}")
        bad += 1
    return 1 if bad else 0


def _cmd_params_expand(args) -> int:
    prof = load_profile(args.profile)
    paths = write_experiment_specs(prof, Path(args.out or f"build/{args.profile}/params"))
    for name, p in paths.items():
        print(p)
    return 0


def _cmd_notebooks(args) -> int:
    paths = build_notebooks(args.out)
    bad = [p for nb in NOTEBOOKS for p in check_notebook_source(nb)]
    for p in bad:
        print(p, file=sys.stderr)
    for p in paths.values():
        print(p)
    return 1 if bad else 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="run every experiment of a profile through papermill, grade, "
                                                "build tables, figures and the HTML report (cached steps skipped)")
    p.add_argument("--profile", default="demo", help="params/<profile>/ (demo, paper, sweep, methods, ci)")
    p.add_argument("--gpus", type=int, default=1, help="experiments run at once, one GPU each")
    p.add_argument("--jobs", type=int, default=None, help="CPU: experiments generated at once (default: the profile's)")
    p.add_argument("--only", nargs="*", help="experiment names to run (default: all)")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--build-dir", default=None, help="default build/<profile>")
    p.add_argument("--figures-dir", default=None)
    p.add_argument("--report-dir", default=None)
    p.add_argument("--timeout", type=int, default=None, help="per-notebook execution timeout (s)")
    p.set_defaults(func=_cmd_reproduce)

    f = subparsers.add_parser("figures", help="rebuild tables and figures from cached results (no model)")
    f.add_argument("--runs-dir", default="runs")
    f.add_argument("--out", default="figures")
    f.add_argument("--manifest", default=None, help="build/<profile>/manifest.json to restrict the runs")
    f.set_defaults(func=_cmd_figures)

    r = subparsers.add_parser("report", help="build the HTML report (build/report/index.html) from built outputs")
    r.add_argument("--profile", default="demo")
    r.add_argument("--runs-dir", default=None)
    r.add_argument("--build-dir", default=None)
    r.add_argument("--figures-dir", default=None)
    r.add_argument("--out", default=None)
    r.set_defaults(func=_cmd_report)

    v = subparsers.add_parser("validate-params", help="validate params/ profiles and notebook conventions")
    v.add_argument("--profile", action="append", help="profile(s) to validate (default: all)")
    v.set_defaults(func=_cmd_validate)

    e = subparsers.add_parser("params-expand", help="write every experiment of a profile as a run-spec YAML")
    e.add_argument("--profile", required=True)
    e.add_argument("--out", default=None)
    e.set_defaults(func=_cmd_params_expand)

    g = subparsers.add_parser("grade-runs", help="grade several run directories in this one process (CPU)")
    g.add_argument("run_dirs", nargs="+")
    g.add_argument("--mode", default=None)
    g.add_argument("--status", default=None, help="write per-run status JSON here")
    g.set_defaults(func=_cmd_grade_runs)

    n = subparsers.add_parser("notebooks", help="convert notebooks/*.py (jupytext) to ipynb and check conventions")
    n.add_argument("--out", default="build/notebooks")
    n.set_defaults(func=_cmd_notebooks)
