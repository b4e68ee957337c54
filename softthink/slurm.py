"""The Slurm executor of `reproduce`: one Slurm job per server group, followed, resumable, requeued.

    run_groups_slurm(groups, command_for, opts, state_dir, wait=True, say=print, poll_s=10.0) -> list[dict]

* `groups`: objects with `key` (stable, filename-safe), `engine`, `model`, `gpus` (GPUs per node; 0 = CPU only),
  `nnodes` and `experiments` (softthink.groups.Group);
* `command_for(group) -> list[str]`: the argv the job runs (`python -m softthink run-group --profile P --group KEY
  ...`); it must be resumable, exit 0 when all the group's runs are complete, and end its server on SIGTERM;
* `opts`: `softthink.slurm_config.SlurmOptions` (validated before this is called);
* `state_dir`: `build/<profile>/slurm/`: the job ledger `jobs.json` and the jobs' logs and submitit files `logs/`;
  on a filesystem that the compute nodes see;
* returns one dict per group: `group`, `job_id`, `state` (pending | running | done | failed), `log`, `error`,
  `requeues`, `previous_jobs`, `experiments`, `submitted` (True when this call submitted the job).

A group whose ledger entry names a job that Slurm still has (pending or running) gets no second job: that job is
followed. Otherwise a new job is submitted with submitit: `--nodes nnodes --ntasks-per-node 1 --gpus-per-node gpus`,
`--requeue`, `--signal USR2@90`. The job runs `command_for(group)` once per node. A time limit (submitit's USR2 before
the end) or a preemption requeues the job, `scontrol requeue` too; the restarted job runs the same command, which
resumes the runs (the results store appends whole samples only). With `nnodes > 1` rank 0 runs the clients; the
job on the other nodes ends when rank 0's command has ended. `node_launch` gives each node's SGLang command and
environment from the Slurm variables.

Job states come from `scontrol show job` (pending, running, requeue count) and, once the job has ended, from its
submitit result (done: the command exited 0; failed: it did not, or the job was cancelled or killed; the log says
why). No sacct (accounting database) is needed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from softthink.config import ConfigError
from softthink.slurm_config import SlurmOptions

LEDGER = "jobs.json"
PENDING_STATES = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SUSPENDED",
                  "RESIZING"}
RUNNING_STATES = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"}
#: the port rank 0 opens for the other nodes' SGLang schedulers (+ job id % 1000, so two jobs on a node differ)
DIST_PORT_BASE = 29500


# ================================================================================================================
# the job: the group's command, once per node


def _ignore_usr2() -> None:  # the command ignores submitit's USR2 (its parent requeues; Slurm then sends SIGTERM)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


try:  # submitit requeues a Checkpointable job after a time limit or a preemption (checkpoint() = submit it again)
    from submitit.helpers import Checkpointable as _JobBase
except ImportError:  # pragma: no cover - submitit is a dependency; the CLI still parses without it
    _JobBase = object


class GroupJob(_JobBase):
    """What a Slurm job runs: `argv` in `cwd` (with `env` added), on every node of the allocation.

    Rank 0's exit status is the job's; the other nodes' commands are ended once rank 0 is done (their servers only
    serve rank 0). On SIGTERM (scancel, requeue, time limit) Slurm signals the whole process tree; the command ends
    its server and exits, and its runs stay resumable."""

    def __init__(self, argv: Sequence[str], cwd: str, env: dict[str, str], flag_dir: str):
        self.argv, self.cwd, self.env, self.flag_dir = list(argv), cwd, dict(env), flag_dir

    def __call__(self) -> int:
        node = int(os.environ.get("SLURM_NODEID", "0"))
        flag = Path(self.flag_dir, f"{os.environ.get('SLURM_JOB_ID', 'local')}-"
                                   f"{os.environ.get('SLURM_RESTART_COUNT', '0')}.rank0-done")
        print(f"[softthink] node {node} of {os.environ.get('SLURM_JOB_NUM_NODES', '1')} "
              f"({os.environ.get('SLURMD_NODENAME', '?')}): {shlex.join(self.argv)}", flush=True)
        proc = subprocess.Popen(self.argv, cwd=self.cwd, env={**os.environ, **self.env}, start_new_session=True,
                                preexec_fn=_ignore_usr2)
        try:
            if node == 0:
                rc = proc.wait()
            else:
                while proc.poll() is None and not flag.exists():
                    time.sleep(2)
                rc = 0 if proc.poll() is None else proc.returncode
        finally:
            if node == 0:
                flag.parent.mkdir(parents=True, exist_ok=True)
                flag.touch()
            _stop(proc)
        if node == 0 and rc != 0:
            how = f"was ended by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}"
            raise RuntimeError(f"the group's command {how} (its output is above)")
        return rc


def _stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM to the command's process group, SIGKILL after `grace_s`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ================================================================================================================
# multi-node SGLang: each node's command and environment


def slurm_hostnames(nodelist: str) -> list[str]:
    """`scontrol show hostnames node[01-02]` (Slurm's own expansion of a node list)."""
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def node_launch(opts, environ: dict[str, str] | None = None,
                hostnames: Callable[[str], list[str]] = slurm_hostnames) -> tuple[list[str], dict[str, str]]:
    """This node's SGLang server command and environment inside a Slurm allocation.

    `opts` is a `softthink.sglang_glue.launch.LaunchOptions` for the whole server (tp_size over all nodes);
    from `SLURM_JOB_NUM_NODES`, `SLURM_NODEID`, `SLURM_JOB_NODELIST` and `SLURM_JOB_ID` it gets `nnodes`,
    `node_rank` and `dist_init_addr` (the first node of the allocation, port 29500 + job id % 1000, or
    `$SOFTTHINK_DIST_INIT_ADDR`). The environment is the plugin's (`opts.env()`: SGLANG_EXTERNAL_MODEL_PACKAGE,
    SOFTTHINK_SGLANG_*), the same on every node. Rank 0 serves HTTP on `opts.host:opts.port`; the others only
    join the model's process group."""
    env = os.environ if environ is None else environ
    nnodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    if nnodes != opts.nnodes and opts.nnodes > 1:
        raise ConfigError(f"the server layout wants {opts.nnodes} nodes but the Slurm job has {nnodes}")
    rank = int(env.get("SLURM_NODEID", "0"))
    addr = env.get("SOFTTHINK_DIST_INIT_ADDR")
    if not addr and nnodes > 1:
        nodes = hostnames(env["SLURM_JOB_NODELIST"])
        addr = f"{nodes[0]}:{DIST_PORT_BASE + int(env.get('SLURM_JOB_ID', '0')) % 1000}"
    node_opts = dataclasses.replace(opts, nnodes=nnodes, node_rank=rank,
                                    dist_init_addr=addr if nnodes > 1 else opts.dist_init_addr)
    if nnodes > 1 and rank > 0:
        node_opts.host = "0.0.0.0"  # SGLang's non-zero ranks start no HTTP server; the flag is still required
    return node_opts.server_command(), node_opts.env()


# ================================================================================================================
# Slurm's view of the jobs


def check_slurm() -> None:
    """One clear error when Slurm's tools or its controller are not there (before anything is submitted)."""
    import shutil

    for tool in ("sbatch", "squeue", "scontrol"):
        if not shutil.which(tool):
            raise ConfigError(f"--executor slurm needs Slurm's {tool} on PATH (run reproduce on a login node of the "
                              "cluster)")
    r = subprocess.run(["squeue", "--me", "-h", "-o", "%i"], capture_output=True, text=True, timeout=60)
    if r.returncode:
        raise ConfigError(f"squeue failed (is the Slurm controller reachable?): {' '.join(r.stderr.split())}")


def job_info(job_id: str) -> dict[str, str] | None:
    """`scontrol show job -o ID` as a dict (JobState, Restarts, ExitCode, ...); None once Slurm forgot the job."""
    for attempt in range(4):  # a busy controller sometimes fails a query without a message: ask again
        r = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            return dict(part.split("=", 1) for part in r.stdout.split() if "=" in part)
        if "Invalid job id" in r.stderr:
            return None
        time.sleep(2 * (attempt + 1))
    raise RuntimeError(f"scontrol show job {job_id} failed (is the Slurm controller reachable?): "
                       f"{' '.join(r.stderr.split()) or f'exit {r.returncode}'}")


def finished_state(job: dict[str, Any], slurm_state: str | None = None) -> tuple[str, str | None]:
    """(done | failed, error) of a job that has ended, from its submitit result file."""
    result = Path(job["result"])
    if result.exists():
        with open(result, "rb") as f:
            outcome, value = pickle.load(f)
        if outcome == "success" and value == 0:
            return "done", None
        text = str(value).strip()
        why = text.splitlines()[-1] if text else outcome
        prefix = f"{slurm_state}: " if slurm_state not in (None, "COMPLETED") else ""
        return "failed", f"{prefix}{why}; see {job['log']}"
    return "failed", f"{slurm_state or 'ended'} without a result (cancelled or killed); see {job['log']}"


# ================================================================================================================
# the ledger: build/<profile>/slurm/jobs.json


@contextlib.contextmanager
def _locked(state_dir: Path):
    """One `reproduce` at a time submits for a profile (an flock on jobs.lock)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "jobs.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def read_ledger(state_dir: Path) -> dict[str, Any]:
    p = Path(state_dir) / LEDGER
    return json.loads(p.read_text()) if p.exists() else {"jobs": {}}


def _write_ledger(state_dir: Path, ledger: dict[str, Any]) -> None:
    from softthink.store import write_json_atomic

    write_json_atomic(Path(state_dir) / LEDGER, ledger)


def _set_state(job: dict[str, Any], state: str, error: str | None = None) -> bool:
    """Record a state change (with its time). True when it changed."""
    if job.get("state") == state:
        return False
    job["state"], job["error"] = state, error
    job.setdefault("history", []).append([round(time.time(), 1), state])
    return True


def refresh(ledger: dict[str, Any], keys: Iterable[str]) -> list[str]:
    """Update the pending and running jobs of `keys` from Slurm; returns the keys whose state changed."""
    changed = []
    for k in keys:
        j = ledger["jobs"].get(k)
        if not j or j["state"] not in ("pending", "running"):
            continue
        info = job_info(j["job_id"])
        state = (info or {}).get("JobState")
        if info and info.get("Restarts", "0").isdigit():
            j["requeues"] = int(info["Restarts"])
        if state in PENDING_STATES:
            new, err = "pending", None
        elif state in RUNNING_STATES:
            new, err = "running", None
        else:
            new, err = finished_state(j, state)
        if _set_state(j, new, err):
            changed.append(k)
    return changed


# ================================================================================================================
# submit and follow


def _executor(opts: SlurmOptions, group, folder: Path):
    import submitit

    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=opts.max_timeouts)
    params: dict[str, Any] = dict(job_name=f"softthink-{group.key}", nodes=max(1, group.nnodes), ntasks_per_node=1,
                                  time=opts.minutes, stderr_to_stdout=True,
                                  additional_parameters={"requeue": True, **opts.extra})
    if group.gpus:
        params["gpus_per_node"] = group.gpus
    cpus = opts.cpus_per_task or (None if group.gpus else 1)
    for name, value in (("partition", opts.partition), ("account", opts.account), ("qos", opts.qos),
                        ("cpus_per_task", cpus), ("mem", opts.mem), ("setup", opts.setup or None)):
        if value is not None:
            params[name] = value
    ex.update_parameters(**params)
    return ex, cpus


def submit_group(group, argv: list[str], opts: SlurmOptions, state_dir: Path) -> dict[str, Any]:
    """Submit one group's job; returns its ledger entry."""
    logs = state_dir / "logs"
    ex, cpus = _executor(opts, group, logs)
    env = {"OMP_NUM_THREADS": str(cpus)} if not group.gpus and cpus else {}
    job = ex.submit(GroupJob(argv, os.getcwd(), env, str(logs)))
    entry = {"group": group.key, "engine": getattr(group, "engine", ""), "model": getattr(group, "model", ""),
             "experiments": list(group.experiments), "gpus": group.gpus, "nnodes": group.nnodes,
             "job_id": str(job.job_id), "command": list(argv), "log": str(job.paths.stdout),
             "result": str(job.paths.result_pickle), "submitted_at": round(time.time(), 1), "requeues": 0,
             "state": None, "error": None, "history": []}
    _set_state(entry, "pending")
    return entry


def _line(job: dict[str, Any]) -> str:
    extra = f" requeued {job['requeues']}x" if job.get("requeues") else ""
    err = f"  {job['error']}" if job.get("error") else ""
    return (f"  slurm    {job['group']:40s} job {job['job_id']:>8s} {job['state']:8s}{extra} "
            f"({len(job['experiments'])} runs) log {job['log']}{err}")


def _record(job: dict[str, Any], submitted: bool) -> dict[str, Any]:
    keep = ("group", "job_id", "state", "log", "error", "requeues", "experiments", "history")
    return {**{k: job.get(k) for k in keep}, "previous_jobs": [p["job_id"] for p in job.get("previous", [])],
            "submitted": submitted}


def run_groups_slurm(groups: Sequence[Any], command_for: Callable[[Any], list[str]], opts: SlurmOptions,
                     state_dir: str | Path, wait: bool = True, say: Callable[[str], None] = print,
                     poll_s: float = 10.0) -> list[dict[str, Any]]:
    """Submit (or follow) one job per group; with `wait`, follow them until none is pending or running.
    See the module docstring. Ctrl-C stops following; the jobs keep running and the next call follows them."""
    state_dir = Path(state_dir)
    check_slurm()
    submitted: set[str] = set()
    with _locked(state_dir):
        ledger = read_ledger(state_dir)
        refresh(ledger, list(ledger["jobs"]))
        for g in groups:
            old = ledger["jobs"].get(g.key)
            if old and old["state"] in ("pending", "running"):
                say(_line(old) + "  (already queued: not submitted again)")
                continue
            try:
                new = submit_group(g, command_for(g), opts, state_dir)
            except Exception as e:  # noqa: BLE001 - reported with the group, the others are submitted
                new = {"group": g.key, "experiments": list(g.experiments), "job_id": "-", "log": "-",
                       "state": None, "history": []}
                _set_state(new, "failed", f"not submitted: {type(e).__name__}: {' '.join(str(e).split())}")
            if old:
                new["previous"] = old.pop("previous", []) + [old]
            ledger["jobs"][g.key] = new
            submitted.add(g.key)
            say(_line(new) + ("  submitted" if new["job_id"] != "-" else ""))
        _write_ledger(state_dir, ledger)
    keys = [g.key for g in groups]
    last_summary = time.time()
    while wait:
        jobs = [ledger["jobs"][k] for k in keys]
        if not any(j["state"] in ("pending", "running") for j in jobs):
            break
        time.sleep(poll_s)
        with _locked(state_dir):
            ledger = read_ledger(state_dir)
            for k in refresh(ledger, list(ledger["jobs"])):
                say(_line(ledger["jobs"][k]))
            _write_ledger(state_dir, ledger)
        if time.time() - last_summary >= 60:
            counts = {s: sum(ledger["jobs"][k]["state"] == s for k in keys)
                      for s in ("pending", "running", "done", "failed")}
            say(f"  slurm    {', '.join(f'{n} {s}' for s, n in counts.items())}")
            last_summary = time.time()
    return [_record(ledger["jobs"][k], k in submitted) for k in keys]


def cancel_jobs(state_dir: str | Path) -> list[str]:
    """scancel every pending or running job of the ledger (`reproduce` itself never cancels: jobs outlive it)."""
    ledger = read_ledger(Path(state_dir))
    ids = [j["job_id"] for j in ledger["jobs"].values() if j.get("state") in ("pending", "running")]
    if ids:
        subprocess.run(["scancel", *ids], check=False)
    return ids


def job_table(state_dir: str | Path) -> str:
    """The ledger as lines (what `reproduce` prints while it waits)."""
    return "\n".join(_line(j) for j in read_ledger(Path(state_dir))["jobs"].values())


if __name__ == "__main__":  # python -m softthink.slurm STATE_DIR: the jobs of a ledger as Slurm sees them now
    d = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    with _locked(d):
        led = read_ledger(d)
        refresh(led, list(led["jobs"]))
        _write_ledger(d, led)
    print(job_table(d))
