"""The ``reproduce`` pipeline: every experiment of a profile through papermill, grading, analysis, report.

Pipeline (`python -m softthink reproduce --profile demo [--gpus N]`):

1. validate the profile; convert `notebooks/*.py` (jupytext, the single source of truth) to
   `build/notebooks/*.ipynb` with the `softthink` kernel;
2. per experiment: if its run directory is complete, skip it ("cached"); the others are grouped by what shares a
   loaded model (`softthink.groups`: engine, model, device, dtype, SGLang serving layout) and each group runs
   the *generate* notebook (papermill, `-k softthink`; partial runs resume): a transformers group in `jobs`
   workers that load the model once, an SGLang group as clients of one server started for it (or attached by
   `serving.url`). With `--gpus N`, groups are packed onto disjoint GPU sets (`CUDA_VISIBLE_DEVICES`);
3. execute the *grade* notebook (a fresh kernel; it grades each run in its own `python -m softthink grade`
   process) for runs without up-to-date grades;
4. execute the analysis notebooks (tables, figures, sweep analysis) and build the HTML report;
5. print and write (`build/<profile>/reproduce.json`) a summary; a failing step is reported with its executed
   notebook and does not stop the others; the exit status is 1 when anything failed.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from softthink.config import ConfigError
from softthink.grade_runs import grade_in_subprocess, grades_current  # noqa: F401 (the grade notebook's names)
from softthink.notebooks import (NOTEBOOKS, attach_papermill, build_notebooks, check_notebook_source, ensure_kernel,
                                 execute_notebook, notebooks_dir, paired_out_of_sync)
from softthink.store import CONFIG_FILE, DEFAULT_RUNS_DIR, SAMPLES_FILE, SUMMARY_FILE, run_dirs_under
from softthink.profiles import load_profile, validate_all, validate_profile, write_experiment_specs


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


# ================================================================================================================
# cache status


_TOKENIZERS: dict[str, Any] = {}
_DATASETS: dict[str, Any] = {}


def run_status(spec_path: Path, runs_dir: str) -> tuple[str, str | None, str | None]:
    """("cached" | "partial" | "new" | "error", run_dir, error). Needs the tokenizer (for the chat-template hash)
    and the dataset (file hashes), each loaded once per process."""
    from softthink import runkey, runspec, store
    from softthink.data import load_dataset

    try:
        spec = runspec.RunSpec.from_yaml(spec_path)
        if spec.model not in _TOKENIZERS:
            _TOKENIZERS[spec.model] = runkey.load_tokenizer(spec.model)
        if spec.dataset not in _DATASETS:
            _DATASETS[spec.dataset] = load_dataset(spec.dataset)
        rd = runkey.plan_run(spec, tokenizer=_TOKENIZERS[spec.model], dataset=_DATASETS[spec.dataset],
                             runs_dir=runs_dir)
    except Exception as e:  # noqa: BLE001 - reported per experiment, others continue
        return "error", None, f"{type(e).__name__}: {e}"
    if not rd.samples_path.exists():
        return "new", str(rd.path), None
    n = len(store.read_jsonl(rd.samples_path))
    exp = store.expected_samples(rd)
    return ("cached" if exp is not None and n >= exp else "partial"), str(rd.path), None


def manifest_runs(manifest: str | Path | None, runs_dir: str | Path | None = None) -> list[str]:
    """Run directories named by a manifest (`build/<profile>/manifest.json`), else every run under `runs_dir`."""
    if manifest and Path(manifest).is_file():
        body = json.loads(Path(manifest).read_text())
        return [r for r in dict.fromkeys(body.get("runs", {}).values()) if r and Path(r, CONFIG_FILE).exists()]
    return run_dirs_under(runs_dir or DEFAULT_RUNS_DIR)


def graded_runs(dirs: Iterable[str]) -> list[str]:
    return [d for d in dirs if Path(d, SUMMARY_FILE).exists()]


# ================================================================================================================
# the pipeline


def fingerprint(files: Iterable[Path], params: dict[str, Any]) -> str:
    """Hash of (path, size, mtime) of `files`, the parameters, and the softthink sources: a step whose fingerprint
    is unchanged since its last successful run is skipped."""
    import hashlib

    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    code = sorted(Path(__file__).parent.rglob("*.py"))
    for f in list(files) + code:
        try:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}|missing\n".encode())
    return h.hexdigest()


def _fmt_s(s: float) -> str:
    return f"{s:6.1f}s" if s < 120 else f"{s / 60:5.1f}min"


@dataclass
class Run:
    """One `reproduce` invocation: where things go, and the step results so far."""

    profile: str
    runs_dir: str
    build: Path
    figures_dir: str
    report_dir: str
    timeout_s: int
    gpus: int
    jobs: int
    quiet: bool
    notebooks: dict[str, Path]
    t0: float = 0.0
    results: list[StepResult] = None  # type: ignore[assignment]
    servers: list[dict[str, Any]] = None  # type: ignore[assignment]  # one record per SGLang server group
    slurm_jobs: list[dict[str, Any]] = None  # type: ignore[assignment]  # Slurm executor: one record per group
    executor: str = "local"
    slurm: Any = None
    wait: bool = True
    params_root: str | Path | None = None

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, flush=True)

    @property
    def executed(self) -> Path:
        return self.build / "executed"

    @property
    def sidecars(self) -> Path:
        return self.build / "sidecars"


def make_run(profile: str, gpus: int = 1, jobs: int | None = None, runs_dir: str | None = None,
             build_root: str | None = None, figures_dir: str | None = None, report_dir: str | None = None,
             timeout_s: int | None = None, quiet: bool = False, params_root: str | Path | None = None):
    """The validated profile and the `Run` of one invocation (`reproduce` or `run-group`)."""
    prof = load_profile(profile, Path(params_root) if params_root else None)
    problems = validate_profile(prof)
    if problems:
        raise ConfigError(f"profile {profile!r} is not valid:\n  " + "\n  ".join(problems))
    ensure_kernel()
    build = Path(build_root) if build_root else prof.build_dir
    run = Run(profile=profile, runs_dir=runs_dir or prof.runs_dir, build=build,
              figures_dir=figures_dir or prof.figures_dir, report_dir=report_dir or prof.report_dir,
              timeout_s=timeout_s or prof.notebook_timeout_s, gpus=gpus, jobs=jobs or prof.jobs, quiet=quiet,
              notebooks=build_notebooks(build / "notebooks"), t0=time.time(), results=[], servers=[], slurm_jobs=[])
    return prof, run


def reproduce(profile: str, gpus: int = 1, jobs: int | None = None, only: Sequence[str] = (), skip_report: bool = False,
              runs_dir: str | None = None, build_root: str | None = None, figures_dir: str | None = None,
              report_dir: str | None = None, timeout_s: int | None = None, quiet: bool = False,
              params_root: str | Path | None = None, executor: str = "local", slurm: Any = None,
              wait: bool = True) -> dict[str, Any]:
    """Run a whole profile (see the module docstring); returns the summary dict (also written to JSON).
    `executor="slurm"` (with `slurm`, validated `SlurmOptions`) runs the generation as one Slurm job per group
    (`softthink.slurm`); grading and analysis then run only once every run is complete."""
    prof, run = make_run(profile, gpus=gpus, jobs=jobs, runs_dir=runs_dir, build_root=build_root,
                         figures_dir=figures_dir, report_dir=report_dir, timeout_s=timeout_s, quiet=quiet,
                         params_root=params_root)
    run.executor, run.slurm, run.wait, run.params_root = executor, slurm, wait, params_root
    build = run.build
    exps = [e for e in prof.experiments if not only or e.name in only]
    specs = write_experiment_specs(prof, build / "params")
    run.say(f"[reproduce] profile {profile}: {len(exps)} experiments, runs in {run.runs_dir}, build in {build}")
    manifest = generate_step(run, exps, specs)
    mpath = build / "manifest.json"
    mpath.write_text(json.dumps({"profile": profile, "runs_dir": run.runs_dir, "runs": manifest}, indent=1))
    unfinished = [n for n, rd in manifest.items() if run_status(specs[n], run.runs_dir)[0] != "cached"]
    if executor == "slurm" and unfinished:  # never grade an incomplete run: the next reproduce finishes
        run.say(f"[reproduce] {profile}: {len(unfinished)} run(s) not complete yet (jobs pending, running or "
                f"failed: {run.build / 'slurm'}); grading and analysis wait for them. Run reproduce again.")
        summary = write_pipeline_summary(run)
        summary["incomplete"] = unfinished
        return summary
    grade_step(run, manifest)
    run_list = [rd for rd in dict.fromkeys(manifest.values()) if rd]
    run_files = [Path(rd, f) for rd in run_list for f in (SUMMARY_FILE, SAMPLES_FILE)]
    analysis_step(run, prof, mpath, run_files)
    write_pipeline_summary(run)  # the report shows the pipeline table
    if not skip_report:
        report_step(run, prof, run_list, run_files)
    if prof.push and not any(r.status == "failed" for r in run.results):  # the profile's Hub upload, if any
        from softthink.hub import push_profile_runs

        s0 = time.time()
        try:
            url = push_profile_runs(prof.push, graded_runs(run_list))
            run.results.append(StepResult("push", str(url), "ok", time.time() - s0))
        except Exception as e:  # noqa: BLE001 - reported like any step
            run.results.append(StepResult("push", prof.push.get("repo_id", "?"), "failed", time.time() - s0,
                                          error=f"{type(e).__name__}: {e}"))
        run.say(f"  push     {run.results[-1].name:40s} {run.results[-1].status:7s} {run.results[-1].error or ''}")
    summary = write_pipeline_summary(run)
    run.say(f"[reproduce] {profile}: {summary['counts']} in {_fmt_s(summary['seconds'])}")
    for r in run.results:
        if r.status == "failed":
            run.say(f"  FAILED {r.step} {r.name}: {r.error}\n         notebook: {r.notebook}")
    return summary


def generate_step(run: Run, exps: list, specs: dict[str, Path]) -> dict[str, str | None]:
    """Each experiment's run: skipped when complete ("cached"), else the generate notebook (which resumes a partial
    run); `--gpus N` / `jobs` run several at once. Returns the manifest: experiment name -> run directory."""
    todo = []
    manifest: dict[str, str | None] = {}
    first_of: dict[str, str] = {}
    for e in exps:
        status, rd, err = run_status(specs[e.name], run.runs_dir)
        manifest[e.name] = rd
        if rd and rd in first_of:  # the same run as an earlier experiment (e.g. a sweep's centre point)
            run.results.append(StepResult("generate", e.name, "cached", run_dir=rd, error=None))
            run.say(f"  generate {e.name:40s} same run as {first_of[rd]}")
            continue
        if rd:
            first_of[rd] = e.name
        if status == "cached":
            run.results.append(StepResult("generate", e.name, "cached", run_dir=rd))
            run.say(f"  generate {e.name:40s} cached  {rd}")
        else:  # new, partial, or not even plannable (the notebook then fails and shows why)
            todo.append((e, rd, status))

    if todo and run.executor == "slurm":
        run.results.extend(run_groups_on_slurm(run, [e.name for e, _rd, _st in todo], specs))
    elif todo:
        run.results.extend(run_groups_local(run, [e.name for e, _rd, _st in todo], specs))
        for e, _rd, _st in todo:  # a fresh run dir may only now exist
            _st, rd, _err = run_status(specs[e.name], run.runs_dir)
            manifest[e.name] = rd
    run.build.mkdir(parents=True, exist_ok=True)
    return manifest


def run_groups_local(run: Run, names: list[str], specs: dict[str, Path]) -> list[StepResult]:
    """The experiments `names`, grouped by model and serving layout (`softthink.groups`), each group generated by
    the group runner: GPU groups packed onto disjoint GPU sets of this node (`--gpus`), CPU groups one at a time
    (a transformers group splits into `jobs` workers itself). Server records go to `run.servers`."""
    from softthink.groups import group_experiments, pack_groups, run_group
    from softthink.runspec import RunSpec

    groups = group_experiments(names, {n: RunSpec.from_yaml(specs[n]) for n in names})
    run.say(f"  {len(names)} experiments to generate in {len(groups)} group(s): "
            + ", ".join(f"{g.key} ({len(g.experiments)})" for g in groups))

    def one(g, gpu_ids):
        res, server = run_group(run, g, specs, gpu_ids)
        if server is not None:
            run.servers.append(server)
        return res

    gpus = run.gpus
    if gpus <= 0 and any(g.gpus for g in groups):  # GPU groups without --gpus: every GPU of this node
        import torch

        gpus = torch.cuda.device_count()
    out = []
    for g, res in zip(groups, pack_groups(groups, gpus, one)):
        if isinstance(res, BaseException):
            res = [StepResult("generate", n, "failed", error=f"{type(res).__name__}: {res}") for n in g.experiments]
            run.say(f"  generate {g.key:40s} failed  {res[0].error}")
        out.extend(res)
    return out


def run_groups_on_slurm(run: Run, names: list[str], specs: dict[str, Path]) -> list[StepResult]:
    """The experiments `names` as one Slurm job per group (`softthink.slurm`), each job running
    `python -m softthink run-group`; a group already queued or running is followed, not submitted again. Job
    records go to `run.slurm_jobs`."""
    from softthink.groups import group_experiments
    from softthink.runspec import RunSpec
    from softthink.slurm import run_groups_slurm

    groups = group_experiments(names, {n: RunSpec.from_yaml(specs[n]) for n in names})

    def command_for(g) -> list[str]:
        return ([sys.executable, "-m", "softthink", "run-group", "--profile", run.profile, "--group", g.key,
                 "--runs-dir", str(Path(run.runs_dir).resolve()), "--build-dir", str(run.build.resolve()),
                 "--timeout", str(run.timeout_s)]
                + (["--params-root", str(Path(run.params_root).resolve())] if run.params_root else []))

    run.slurm_jobs = run_groups_slurm(groups, command_for, run.slurm, run.build / "slurm", wait=run.wait,
                                      say=run.say)
    status = {"done": "ok", "failed": "failed"}
    out = []
    for job in run.slurm_jobs:
        for n in job["experiments"]:
            out.append(StepResult("generate", n, status.get(job["state"], job["state"]), notebook=job.get("log"),
                                  error=job.get("error") if job["state"] == "failed" else None))
    return out


def grade_step(run: Run, manifest: dict[str, str | None]) -> None:
    """The grade notebook (a fresh kernel; the runs graded in one process of their own, softthink.grade_runs) for
    the runs whose grades are older than their samples."""
    have = [rd for rd in dict.fromkeys(manifest.values()) if rd and Path(rd, SAMPLES_FILE).exists()]
    stale = [rd for rd in have if not grades_current(rd)]
    if not stale:
        run.results.append(StepResult("grade", "all runs", "cached"))
        run.say(f"  grade    {'all runs':40s} cached")
        return
    out, side = run.executed / "grade.ipynb", run.sidecars / "grade.json"
    s0 = time.time()
    ok, err = execute_notebook(run.notebooks["grade"], out, {"run_dirs": stale, "runs_dir": run.runs_dir,
                                                             "manifest": "", "sidecar": str(side)}, run.timeout_s)
    attach_papermill(side, out)
    run.results.append(StepResult("grade", f"{len(stale)} runs", "ok" if ok else "failed", time.time() - s0,
                                  str(out), str(side), error=None if ok else err))
    run.say(f"  grade    {len(stale)} runs{'':33s} {run.results[-1].status:7s} {_fmt_s(run.results[-1].seconds)} "
            f"{'' if ok else err}")


def analysis_step(run: Run, prof, mpath: Path, run_files: list[Path]) -> None:
    """The profile's analysis notebooks, each skipped when its inputs, parameters and code are unchanged."""
    for name in prof.analysis:
        out, side = run.executed / f"{name}.ipynb", run.sidecars / f"{name}.json"
        params = {"runs_dir": run.runs_dir, "manifest": str(mpath), "out_dir": run.figures_dir, "sidecar": str(side)}
        if name == "explore":
            params = {"sidecar": str(side), "interactive": False}
        params.update(prof.notebook_params.get(name, {}))
        fp = fingerprint(([] if name == "explore" else run_files) + [notebooks_dir() / f"{name}.py"], params)
        fp_file = run.build / "cache" / f"{name}.fingerprint"
        if fp_file.exists() and fp_file.read_text() == fp and out.exists() and side.exists():
            run.results.append(StepResult(name, name, "cached", notebook=str(out), sidecar=str(side)))
            run.say(f"  {name:8s} {'':40s} cached")
            continue
        s0 = time.time()
        ok, err = execute_notebook(run.notebooks[name], out, params, run.timeout_s)
        attach_papermill(side, out)
        if ok:
            fp_file.parent.mkdir(parents=True, exist_ok=True)
            fp_file.write_text(fp)
        elif fp_file.exists():
            fp_file.unlink()
        run.results.append(StepResult(name, name, "ok" if ok else "failed", time.time() - s0, str(out), str(side),
                                      error=None if ok else err))
        run.say(f"  {name:8s} {'':40s} {run.results[-1].status:7s} {_fmt_s(run.results[-1].seconds)} "
                f"{'' if ok else err + '  -> ' + str(out)}")


def report_step(run: Run, prof, run_list: list[str], run_files: list[Path]) -> None:
    """The HTML report, skipped when nothing it shows changed."""
    from softthink import report

    s0 = time.time()
    index = Path(run.report_dir) / "index.html"
    inputs = (sorted(run.executed.glob("*.ipynb")) + sorted(Path(run.figures_dir).glob("*")) + run_files
              + [Path(report.__file__)])
    fp = fingerprint(inputs, {"profile": run.profile, "report_dir": str(run.report_dir)})
    fp_file = run.build / "cache" / "report.fingerprint"
    failed_now = any(r.status == "failed" for r in run.results)
    if not failed_now and fp_file.exists() and fp_file.read_text() == fp and index.exists():
        run.results.append(StepResult("report", str(index), "cached"))
    else:
        try:
            path = report.build_report(profile=run.profile, build_dir=run.build, figures_dir=run.figures_dir,
                                       out_dir=run.report_dir, runs=run_list, render_notebooks=prof.report_notebooks)
            run.results.append(StepResult("report", str(path), "ok", time.time() - s0))
            fp_file.parent.mkdir(parents=True, exist_ok=True)
            fp_file.write_text(fp)
        except Exception as e:  # noqa: BLE001
            run.results.append(StepResult("report", run.report_dir, "failed", time.time() - s0,
                                          error=f"{type(e).__name__}: {e}"))
    last = run.results[-1]
    run.say(f"  report   {last.name:40s} {last.status:7s} {_fmt_s(last.seconds)} {last.error or ''}")


def write_pipeline_summary(run: Run) -> dict[str, Any]:
    """`build/<profile>/reproduce.json`: every step's result and the counts."""
    body = {"profile": run.profile, "seconds": time.time() - run.t0, "gpus": run.gpus, "jobs": run.jobs,
            "runs_dir": run.runs_dir, "failed": sum(r.status == "failed" for r in run.results),
            "steps": [r.__dict__ for r in run.results], "servers": run.servers, "jobs": run.slurm_jobs,
            "counts": {s: sum(r.status == s for r in run.results) for s in ("cached", "ok", "failed")}}
    run.build.mkdir(parents=True, exist_ok=True)
    (run.build / "reproduce.json").write_text(json.dumps(body, indent=1))
    return body


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


def _interruptible(fn):
    """Run `fn()` so that Ctrl-C or SIGTERM (a scheduler's kill, a timeout) stops every server this process
    started before the process ends; runs stay resumable."""
    import signal

    from softthink.sglang_glue import server

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        return fn()
    except BaseException as e:
        server.stop_all(f"stopped by {type(e).__name__}")
        raise
    finally:
        signal.signal(signal.SIGTERM, old)


def _cmd_reproduce(args) -> int:
    from softthink.slurm_config import options_from_args

    try:
        slurm = options_from_args(args, load_profile(args.profile).slurm)  # validated before anything is submitted
        s = _interruptible(lambda: reproduce(
            args.profile, gpus=args.gpus, jobs=args.jobs, only=args.only or (), skip_report=args.no_report,
            runs_dir=args.runs_dir, build_root=args.build_dir, figures_dir=args.figures_dir,
            report_dir=args.report_dir, timeout_s=args.timeout, executor=args.executor, slurm=slurm,
            wait=not args.no_wait))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if s.get("incomplete"):
        return 0 if args.no_wait else 1
    return 1 if s["failed"] else 0


def run_one_group(profile: str, key: str, runs_dir: str | None = None, build_root: str | None = None,
                  params_root: str | None = None, timeout_s: int | None = None) -> dict[str, Any]:
    """`run-group`: generate one group of a profile (as a Slurm job does): its server (or model) started once,
    its runs' clients, the server stopped. Writes `build/<profile>/groups/<key>.json`; returns it."""
    from softthink.groups import plan_groups, run_group

    prof, run = make_run(profile, runs_dir=runs_dir, build_root=build_root, params_root=params_root,
                         timeout_s=timeout_s)
    groups = {g.key: g for g in plan_groups(profile, run.runs_dir, params_root, build_root=run.build)}
    out = run.build / "groups" / f"{key}.json"
    if key not in groups:  # nothing left to do, or an unknown key (then say which exist)
        known = {g.key for g in plan_groups(profile, run.runs_dir, params_root, build_root=run.build,
                                            include_cached=True)}
        body = {"group": key, "status": "cached" if key in known else "unknown", "known": sorted(known)}
    else:
        specs = write_experiment_specs(prof, run.build / "params")
        cuda = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        gpu_ids = [int(x) for x in cuda.split(",") if x.strip().isdigit()] if groups[key].gpus else []
        results, server = run_group(run, groups[key], specs, gpu_ids)
        body = {"group": key, "status": "ok" if all(r.status == "ok" for r in results) else "failed",
                "steps": [r.__dict__ for r in results], "server": server, "seconds": time.time() - run.t0}
    if body["status"] != "unknown":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(body, indent=1))
    return body


def _cmd_run_group(args) -> int:
    try:
        body = _interruptible(lambda: run_one_group(args.profile, args.group, args.runs_dir, args.build_dir,
                                                    args.params_root, args.timeout))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if body["status"] == "unknown":
        print(f"error: no unfinished group {args.group!r} in profile {args.profile!r}; unfinished groups: "
              f"{', '.join(body['known']) or 'none'}", file=sys.stderr)
        return 2
    return 0 if body["status"] in ("ok", "cached") else 1


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
    p.add_argument("--gpus", type=int, default=1, help="GPUs of this node: model/server groups are packed onto "
                                                       "disjoint GPU sets, largest first")
    p.add_argument("--jobs", type=int, default=None, help="CPU: workers of a transformers model group, each loading "
                                                          "the model once (default: the profile's)")
    p.add_argument("--only", nargs="*", help="experiment names to run (default: all)")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--build-dir", default=None, help="default build/<profile>")
    p.add_argument("--figures-dir", default=None)
    p.add_argument("--report-dir", default=None)
    p.add_argument("--timeout", type=int, default=None, help="per-notebook execution timeout (s)")
    from softthink.slurm_config import add_slurm_flags

    add_slurm_flags(p)  # --executor local|slurm, --no-wait, --slurm-partition/-account/-qos/-time/-extra
    p.set_defaults(func=_cmd_reproduce)

    g = subparsers.add_parser("run-group", help="generate one server group of a profile (what a Slurm job runs): "
                                                "its server started once, its runs as clients, the server stopped")
    g.add_argument("--profile", required=True)
    g.add_argument("--group", required=True, help="a group key (reproduce prints them; softthink.groups)")
    g.add_argument("--runs-dir", default=None)
    g.add_argument("--build-dir", default=None, help="default build/<profile>")
    g.add_argument("--params-root", default=None, help="default params/")
    g.add_argument("--timeout", type=int, default=None, help="per-notebook execution timeout (s)")
    g.set_defaults(func=_cmd_run_group)

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

    n = subparsers.add_parser("notebooks", help="convert notebooks/*.py (jupytext) to ipynb and check conventions")
    n.add_argument("--out", default="build/notebooks")
    n.set_defaults(func=_cmd_notebooks)
