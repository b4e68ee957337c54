"""
Layout of `params/`:

* `params/<profile>/_profile.yaml`: `description`, `analysis` (notebooks run after grading, from
  `tables`, `figures`, `sweep_analysis`, `explore`), optional `include` (other profiles whose experiments are added),
  `runs_dir` (default `runs`), `figures_dir` (default `figures`), `report_dir` (default `build/report`),
  `budget_minutes` (documentation; the demo profile is measured against it), `notebook_timeout_s`, `slurm`
  (partition, account, ... of `reproduce --executor slurm`; :mod:`softthink.slurm_config`).
* every other `params/<profile>/*.yaml` is an experiment file: either **one run spec** (the keys of
  `softthink.runspec.RunSpec`, usable directly with `python -m softthink run --config FILE`), or a **group**:

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

The pipeline that runs a profile is :mod:`softthink.pipeline`; notebook plumbing is :mod:`softthink.notebooks`.
"""
from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from softthink.config import ConfigError
from softthink.files import repo_root
from softthink.notebooks import ANALYSIS_NOTEBOOKS, param_types

PROFILE_FILE = "_profile.yaml"
PROFILE_KEYS = ("description", "analysis", "include", "runs_dir", "figures_dir", "report_dir", "budget_minutes",
                "notebook_timeout_s", "report_notebooks", "notebook_params", "jobs", "push", "slurm")
GROUP_KEYS = ("name", "defaults", "matrix", "overrides", "exclude", "experiments", "description")


def params_dir() -> Path:
    return repo_root() / "params"


# ================================================================================================================
# profiles


@dataclass
class Experiment:
    name: str
    spec: dict[str, Any]
    source: str

    def run_spec(self):
        from softthink.runspec import RunSpec

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
    push: dict[str, Any] | None = None  # {repo_id, private}: upload the runs at the end (softthink.hub)
    slurm: dict[str, Any] = field(default_factory=dict)  # the Slurm executor's options (softthink.slurm_config)
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
    from softthink.hub import validate_push_section

    prof.push = validate_push_section(prof.push, f"profile {name!r}: push")
    bad = [a for a in prof.analysis if a not in ANALYSIS_NOTEBOOKS]
    if bad:
        raise ConfigError(f"profile {name!r}: analysis {bad} unknown; choose from {', '.join(ANALYSIS_NOTEBOOKS)}")
    for nb, vals in (prof.notebook_params or {}).items():
        if nb not in ANALYSIS_NOTEBOOKS or not isinstance(vals, dict):
            raise ConfigError(f"profile {name!r}: notebook_params.{nb}: unknown analysis notebook or not a mapping; "
                              f"notebooks: {', '.join(ANALYSIS_NOTEBOOKS)}")
        extra = set(vals) - set(param_types(nb))
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
    from softthink.runspec import RunSpec

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
    try:
        from softthink.slurm_config import slurm_options

        slurm_options(prof.slurm)
    except ConfigError as err:
        problems.append(f"profile {prof.name!r}: {err}")
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


# the previous release kept notebook plumbing here (the notebooks call softthink.notebooks now)
from softthink.notebooks import notebook_params  # noqa: E402,F401
