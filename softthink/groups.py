"""Server groups: a profile's unfinished experiments grouped by what must share one process, and the group runner.

A **group** holds the experiments that share a model in memory: same engine, model, device, dtype and (SGLang)
serving layout. The group runner generates them all with that model loaded once:

* **SGLang**: one server (`ServerProcess`, 127.0.0.1 and a free port; or the attached `serving.url`), the group's
  generate notebooks run as its clients *at the same time*, each sending every missing sample at once; the server
  is stopped in a `finally` (failure, Ctrl-C, timeout, SIGTERM) and recorded in `reproduce.json`'s `servers`.
* **transformers**: `shards` workers (the profile's `jobs` on a CPU, one per GPU), each one generate notebook
  that loads the model once and generates its share of the runs one after another, each in its own fixed batches
  (so run keys and cached runs are unchanged).

The local executor packs groups onto disjoint GPU sets of this node, largest first (`--gpus N`); the Slurm
executor runs one group per job through ``python -m softthink run-group``. Both call :func:`run_group`.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from softthink.runspec import RunSpec


@dataclass
class Group:
    """Experiments that share one loaded model (see the module docstring)."""

    key: str  # stable and filename-safe: engine-model-hash of the grouping fields
    engine: str
    model: str
    device: str
    gpus: int  # GPUs per node the group needs (0: CPU)
    nnodes: int
    experiments: list[str]
    layout: dict[str, Any] = field(default_factory=dict)  # the serving section (SGLang)


def group_fields(spec: RunSpec) -> tuple:
    """What experiments must share to share a process."""
    base = (spec.engine, spec.model, spec.device, spec.dtype)
    return base + (spec.serving.group_key() if spec.engine == "sglang" else ())


def group_experiments(names: Sequence[str], specs: dict[str, RunSpec]) -> list[Group]:
    """Group experiments (in the given order; a group's order is its first member's)."""
    from softthink.runkey import resolve_device

    groups: dict[tuple, Group] = {}
    for name in names:
        spec = specs[name]
        f = group_fields(spec)
        if f not in groups:
            h = hashlib.sha256(json.dumps(f, default=str).encode()).hexdigest()[:8]
            slug = "".join(c if c.isalnum() else "-" for c in spec.model.split("/")[-1].lower()).strip("-")
            on_gpu = resolve_device(spec.device).startswith("cuda")
            if spec.engine == "sglang":
                gpus = spec.serving.gpus_per_node if on_gpu and not spec.serving.url else 0
                groups[f] = Group(f"sglang-{slug}-{h}", "sglang", spec.model, spec.device, gpus,
                                  spec.serving.nnodes, [], spec.serving.to_dict())
            else:
                groups[f] = Group(f"hf-{slug}-{h}", "hf", spec.model, spec.device, 1 if on_gpu else 0, 1, [])
        groups[f].experiments.append(name)
    return list(groups.values())


def plan_groups(profile: str, runs_dir: str | None = None, params_root: str | None = None, only: Sequence[str] = (),
                build_root: str | os.PathLike | None = None, include_cached: bool = False) -> list[Group]:
    """The groups of a profile's unfinished experiments (all of them with `include_cached`). An experiment that
    is the same run as an earlier one (a sweep's centre point) is generated once, with the earlier one."""
    from softthink.pipeline import run_status
    from softthink.profiles import load_profile, write_experiment_specs

    prof = load_profile(profile, Path(params_root) if params_root else None)
    paths = write_experiment_specs(prof, Path(build_root or prof.build_dir) / "params")
    rdir = runs_dir or prof.runs_dir
    names, seen = [], set()
    for e in prof.experiments:
        if only and e.name not in only:
            continue
        status, rd, _ = run_status(paths[e.name], rdir)
        if (include_cached or status != "cached") and (rd is None or rd not in seen):
            names.append(e.name)
        seen.add(rd)
    return group_experiments(names, {n: RunSpec.from_yaml(paths[n]) for n in names})


# ================================================================================================================
# the group runner


def _shards(names: list[str], k: int) -> list[list[str]]:
    """`k` interleaved shards (experiments of similar size are neighbours in a profile)."""
    k = max(1, min(k, len(names)))
    return [names[i::k] for i in range(k)]


def run_group(run: Any, group: Group, specs: dict[str, Path], gpu_ids: Sequence[int] = (),
              execute: Callable | None = None) -> tuple[list[Any], dict[str, Any] | None]:
    """Generate every experiment of `group` (see the module docstring). `run` is the pipeline's `Run` (build
    folders, notebooks, timeout, jobs); `specs` maps experiment name -> run-spec YAML. Returns the step results
    (one per experiment) and the server record (SGLang) or None."""
    from softthink.notebooks import attach_papermill, execute_notebook
    from softthink.pipeline import StepResult, _fmt_s

    execute = execute or execute_notebook
    env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpu_ids))} if gpu_ids else {}

    def notebook(tag: str, names: list[str], extra_env: dict[str, str], params: dict[str, Any]) -> list[Any]:
        out = run.executed / f"generate-{tag}.ipynb"
        sides = {n: run.sidecars / f"generate-{n}.json" for n in names}
        for p in sides.values():  # a stale sidecar must not pass for this execution's
            p.unlink(missing_ok=True)
        s0 = time.time()
        ok, err = execute(run.notebooks["generate"], out, {
            "spec_files": [str(specs[n]) for n in names], "sidecars": [str(sides[n]) for n in names],
            "runs_dir": run.runs_dir, "progress": False, **params}, run.timeout_s, {**env, **extra_env})
        results = []
        for n in names:
            side_ok = sides[n].exists() and json.loads(sides[n].read_text()).get("status") == "ok"
            if sides[n].exists():
                attach_papermill(sides[n], out)
            e = None if side_ok else (_sidecar_error(sides[n]) or err or "no sidecar written")
            r = StepResult("generate", n, "ok" if side_ok else "failed", time.time() - s0, str(out), str(sides[n]),
                           None, e)
            run.say(f"  generate {n:40s} {r.status:7s} {_fmt_s(r.seconds)} {'' if side_ok else e + '  -> ' + str(out)}")
            results.append(r)
        return results

    if group.engine != "sglang":
        shards = _shards(group.experiments, 1 if gpu_ids else run.jobs)
        threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // len(shards)))} if not gpu_ids else {}
        tags = [s[0] if len(s) == 1 else f"{group.key}-{i}" for i, s in enumerate(shards)]
        with ThreadPoolExecutor(max_workers=len(shards)) as pool:
            futs = [pool.submit(notebook, t, s, threads, {}) for t, s in zip(tags, shards)]
            return [r for f in futs for r in f.result()], None

    spec0 = RunSpec.from_yaml(specs[group.experiments[0]])
    record: dict[str, Any] = {"group": group.key, "model": group.model, "layout": group.layout,
                              "gpus": list(gpu_ids), "runs": list(group.experiments)}
    if spec0.serving.url:  # attached: the clients check it before their first sample
        record.update(url=spec0.serving.url, started=False, start_seconds=0.0, ended="attached")
        return _clients(notebook, group, spec0.serving.url, run.jobs), record
    from softthink.serving import check_layout, launch_options
    from softthink.sglang_glue.server import ServerProcess, free_port

    log = run.build / "servers" / f"{group.key}.log"
    opts = launch_options(spec0, check_layout(spec0), port=free_port())
    node_rank, command = 0, None
    if group.nnodes > 1 and int(os.environ.get("SLURM_JOB_NUM_NODES") or 1) > 1:  # a multi-node Slurm job
        from softthink.slurm import node_launch

        command, node_env = node_launch(opts)
        env = {**env, **node_env}
        node_rank = int(os.environ.get("SLURM_NODEID", "0"))
        log = log.with_name(f"{group.key}-node{node_rank}.log")
    server = ServerProcess(opts, log, env, command)
    if node_rank > 0:  # this node only joins rank 0's server; the job ends it when rank 0 is done
        try:
            server.start(wait=False)
            server.proc.wait()
        finally:
            server.stop()
        return [], None
    record.update(url=server.url, log=str(log), started=True)
    run.say(f"  server   {group.key:40s} starting ({group.model}, tp {spec0.serving.tp_size} x dp "
            f"{spec0.serving.dp_size}, driver {spec0.serving.driver}), log {log}")
    results: list[Any] = []
    try:
        server.start(timeout_s=min(run.timeout_s, 3600))
        record["start_seconds"] = round(server.start_seconds, 1)
        run.say(f"  server   {group.key:40s} healthy after {_fmt_s(server.start_seconds)} at {server.url}")
        results = _clients(notebook, group, server.url, len(group.experiments))
        if not server.alive():
            server.ended = f"died (exit {server.proc.returncode}) during the run; log {log}"
    except BaseException as e:
        record["error"] = f"{type(e).__name__}: {e}"
        if not results:
            results = [StepResult("generate", n, "failed", 0.0, None, None, None, f"{record['error']} (server log "
                                  f"{log})") for n in group.experiments]
        if not isinstance(e, Exception):
            raise
    finally:
        server.stop()
        record["ended"] = server.ended
        run.say(f"  server   {group.key:40s} {server.ended}")
    return results, record


def _clients(notebook: Callable, group: Group, url: str, at_once: int) -> list[Any]:
    """The group's generate notebooks as clients of `url`, up to `at_once` at the same time."""
    with ThreadPoolExecutor(max_workers=max(1, at_once)) as pool:
        futs = [pool.submit(notebook, n, [n], {}, {"server_url": url}) for n in group.experiments]
        return [r for f in futs for r in f.result()]


def _sidecar_error(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("error")
    except (OSError, ValueError):
        return None


def pack_groups(groups: list[Group], gpus: int, run_one: Callable[[Group, list[int]], Any],
                cpu_at_once: int = 1) -> list[Any]:
    """Run `groups` on this node: GPU groups on disjoint sets of `gpus` GPUs, largest first, as many at once as
    fit; CPU groups (`gpus == 0`) `cpu_at_once` at a time. Returns `run_one`'s results in `groups` order. A group
    that needs more GPUs than the node has fails alone (ValueError as its result)."""
    order = sorted(range(len(groups)), key=lambda i: -groups[i].gpus)
    free = list(range(gpus))
    cond = threading.Condition()
    cpu_slots = [max(1, cpu_at_once)]
    results: dict[int, Any] = {}

    def worker(i: int) -> None:
        g = groups[i]
        if g.gpus > gpus:
            results[i] = ValueError(f"group {g.key} needs {g.gpus} GPUs per node, this node has {gpus} (--gpus)")
            return
        with cond:
            if g.gpus:
                cond.wait_for(lambda: len(free) >= g.gpus)
                mine = [free.pop(0) for _ in range(g.gpus)]
            else:
                cond.wait_for(lambda: cpu_slots[0] > 0)
                cpu_slots[0] -= 1
                mine = []
        try:
            results[i] = run_one(g, mine)
        finally:
            with cond:
                free.extend(mine)
                free.sort()
                if not g.gpus:
                    cpu_slots[0] += 1
                cond.notify_all()

    threads = []
    for i in order:  # started largest first: a waiting large group is not overtaken by a later small one
        t = threading.Thread(target=worker, args=(i,), name=f"group-{groups[i].key}")
        t.start()
        threads.append(t)
        time.sleep(0.01)
    for t in threads:
        t.join()
    return [results[i] for i in range(len(groups))]


# ================================================================================================================
# inside the generate notebook


def generate_specs(spec_files: Sequence[str], runs_dir: str, server_url: str = "", progress: bool = True,
                   overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The generate notebook's work: every spec in turn with one engine (the transformers model loaded once, or a
    client of `server_url`); a failing run is reported and the others go on. Returns one row per run: spec file,
    status, error or run directory, run hash, spec and metrics (the notebook writes them as sidecars)."""
    from softthink import store
    from softthink.generate import _build_engine, generate_run

    rows, engine, engine_for = [], None, None
    for spec_file in spec_files:
        t0 = time.time()
        try:
            spec = RunSpec.from_yaml(spec_file, overrides)
            if server_url and spec.engine == "sglang" and not spec.serving.url:
                spec.serving.url = server_url
            # one model load per group of specs; a server is checked against the spec before anything is written
            if spec.engine == "sglang" and not spec.serving.url:  # an in-process engine, built only if needed
                engine, engine_for = None, None
            elif engine_for != group_fields(spec) or spec.engine == "sglang":
                engine, engine_for = _build_engine(spec), group_fields(spec)
            rd = generate_run(spec, engine=engine, progress=progress, runs_dir=runs_dir)
        except Exception as e:  # noqa: BLE001 - reported per run; the notebook fails at its end
            rows.append({"spec_file": spec_file, "status": "failed", "error": f"{type(e).__name__}: {e}"})
            continue
        samples = rd.samples()
        lengths = [s.get("num_tokens") or 0 for s in samples]
        rows.append({"spec_file": spec_file, "status": "ok", "run_dir": str(rd.path), "run_hash": rd.hash,
                     "spec": spec.to_dict(),
                     "metrics": {"samples": len(samples), "expected": store.expected_samples(rd),
                                 "seconds": round(time.time() - t0, 2),
                                 "mean_tokens": sum(lengths) / max(1, len(lengths)),
                                 "in_flight_mean": getattr(engine, "in_flight_mean", None)}})
    return rows
