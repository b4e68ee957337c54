"""Stand-in server groups and group command for the Slurm tests, until `softthink.groups.plan_groups` and
`python -m softthink run-group` exist: a profile's unfinished experiments grouped by (engine, model, dataset), and a
job command that generates each of the group's runs in one process (`standin_group.py`, resumable like
`run-group`). The executor does not care how the command is made: the switch is `command_for`."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass
class Group:  # the fields of softthink.groups.Group that the executor reads
    key: str
    engine: str
    model: str
    gpus: int
    nnodes: int
    experiments: list[str]
    layout: dict[str, Any] = field(default_factory=dict)
    specs: list[str] = field(default_factory=list)  # stand-in only: the expanded spec files


def plan_groups(profile: str, runs_dir: str, specs_dir: Path, only=()) -> list[Group]:
    from softthink.pipeline import run_status
    from softthink.profiles import load_profile, write_experiment_specs

    prof = load_profile(profile)
    specs = write_experiment_specs(prof, specs_dir)
    groups: dict[tuple, Group] = {}
    seen_runs: set[str] = set()
    for e in prof.experiments:
        if only and e.name not in only:
            continue
        status, rd, _err = run_status(specs[e.name], runs_dir)
        if status == "cached" or (rd and rd in seen_runs):
            continue
        seen_runs.add(rd)
        s = e.spec
        gk = (s.get("engine", "hf"), s["model"], s["dataset"])
        g = groups.setdefault(gk, Group(key=f"{gk[0]}-{gk[1]}-{gk[2]}", engine=gk[0], model=gk[1], gpus=0,
                                        nnodes=1, experiments=[]))
        g.experiments.append(e.name)
        g.specs.append(str(specs[e.name]))
    return list(groups.values())


def command_for(group: Group, runs_dir: str) -> list[str]:
    return [sys.executable, str(HERE / "standin_group.py"), "--runs-dir", runs_dir, *group.specs]
