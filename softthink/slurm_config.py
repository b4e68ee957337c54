"""The `slurm` section of a profile (`params/<profile>/_profile.yaml`) and the matching `reproduce` flags.

    slurm:
      partition: gpu            # sbatch --partition
      account: my-project       # --account
      qos: normal               # --qos
      time: "1-00:00:00"        # --time, any Slurm format (minutes, H:MM:SS, D-HH, D-HH:MM:SS, ...)
      cpus_per_task: 16         # --cpus-per-task (one task per node); CPU-only jobs default to 1
      mem: 0                    # --mem ("0": all of the node's memory)
      max_timeouts: 3           # requeues after reaching the time limit (preemptions are always requeued)
      setup: ["module load cuda/12.8"]           # shell lines run in the job before the command
      extra: ["--constraint=h100", "--exclusive"]  # more #SBATCH lines ("#SBATCH" prefix optional)

Everything is checked before anything is submitted; a bad entry gives one `ConfigError` naming the key. This module
imports nothing beyond the standard library (the CLI parses flags without submitit installed).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from softthink.config import ConfigError

KEYS = ("partition", "account", "qos", "time", "cpus_per_task", "mem", "max_timeouts", "setup", "extra")
#: sbatch options the executor sets itself (from the group's layout, or for following and requeueing the job)
MANAGED = ("job-name", "output", "error", "open-mode", "signal", "nodes", "ntasks", "ntasks-per-node",
           "gpus-per-node", "gpus", "gres", "array", "wrap", "requeue", "no-requeue", "time", "partition",
           "account", "qos", "cpus-per-task", "mem")
_NAME = re.compile(r"^[A-Za-z0-9_.,:@+-]+$")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_MEM = re.compile(r"^\d+[KMGT]?$")


@dataclass
class SlurmOptions:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str = "24:00:00"
    cpus_per_task: int | None = None
    mem: str | None = None
    max_timeouts: int = 3
    setup: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # sbatch long option -> value (True for a bare flag)

    @property
    def minutes(self) -> int:
        return time_minutes(self.time)


def time_minutes(value: Any) -> int:
    """Minutes of a Slurm time limit: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S` (seconds rounded up)."""
    s = str(value).strip()
    m = _TIME.match(s)
    if not m:
        raise ConfigError(f"slurm.time: {value!r} is not a Slurm time (minutes, H:MM:SS, D-HH:MM:SS)")
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is not None:  # D-H, D-H:M, D-H:M:S
        secs = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        secs = a * 3600 + b * 60 + c
    elif b is not None:  # M:S
        secs = a * 60 + b
    else:  # M
        secs = a * 60
    if secs <= 0:
        raise ConfigError(f"slurm.time: {value!r} is no time at all")
    return math.ceil(secs / 60)


def parse_extra_line(line: Any) -> tuple[str, Any]:
    """`#SBATCH --constraint=h100` / `--constraint h100` / `--exclusive` -> (name, value or True)."""
    if not isinstance(line, str) or not line.strip():
        raise ConfigError(f"slurm.extra: {line!r} is not an sbatch option line")
    s = line.strip()
    if s.startswith("#SBATCH"):
        s = s[len("#SBATCH"):].strip()
    if not s.startswith("--"):
        raise ConfigError(f"slurm.extra: {line!r}: give the long form of the option (--constraint=h100, not -C)")
    name, sep, value = s[2:].replace(" ", "=", 1).partition("=")
    if not name or not re.match(r"^[a-z][a-z0-9-]*$", name):
        raise ConfigError(f"slurm.extra: {line!r}: {name!r} is not an sbatch option name")
    if name in MANAGED:
        raise ConfigError(f"slurm.extra: --{name} is set by softthink (from the group's layout, the slurm keys "
                          f"{', '.join(KEYS[:6])}, or for requeueing); remove it from extra")
    if any(c in value for c in "\n;`$"):
        raise ConfigError(f"slurm.extra: {line!r}: the value holds shell characters")
    return name, (value.strip() if sep else True)


def slurm_options(section: dict[str, Any] | None, **overrides: Any) -> SlurmOptions:
    """The profile's `slurm` section with command-line overrides (None = not given) applied, validated."""
    section = dict(section or {})
    if not isinstance(section, dict):
        raise ConfigError("slurm: expected a mapping (partition, account, qos, time, ...)")
    for k in section:
        if k not in KEYS:
            raise ConfigError(f"slurm.{k}: unknown key; allowed: {', '.join(KEYS)}")
    extra_lines = list(section.pop("extra", None) or [])
    extra_lines += list(overrides.pop("extra", None) or [])
    section.update({k: v for k, v in overrides.items() if v is not None})
    for k in ("partition", "account", "qos"):
        v = section.get(k)
        if v is not None and (not isinstance(v, str) or not _NAME.match(v)):
            raise ConfigError(f"slurm.{k}: {v!r} is not a Slurm name")
    opts = SlurmOptions(**{k: v for k, v in section.items() if k not in ("setup",)})
    opts.time = str(opts.time)
    time_minutes(opts.time)
    for k in ("cpus_per_task", "max_timeouts"):
        v = getattr(opts, k)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "max_timeouts" else 1)):
            raise ConfigError(f"slurm.{k}: {v!r} is not a {'non-negative' if k == 'max_timeouts' else 'positive'} "
                              "integer")
    if opts.mem is not None:
        opts.mem = str(opts.mem)
        if not _MEM.match(opts.mem):
            raise ConfigError(f"slurm.mem: {opts.mem!r} is not a Slurm memory size (e.g. 64G, 0 for all)")
    setup = section.get("setup") or []
    if not isinstance(setup, list) or not all(isinstance(s, str) for s in setup):
        raise ConfigError("slurm.setup: expected a list of shell lines")
    opts.setup = list(setup)
    opts.extra = dict(parse_extra_line(line) for line in extra_lines)
    return opts


def add_slurm_flags(p) -> None:
    """The `reproduce` flags of the Slurm executor (argparse)."""
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local: this machine (--gpus, --jobs); slurm: one Slurm job per server group")
    p.add_argument("--no-wait", action="store_true",
                   help="slurm: submit and return (run reproduce again to follow the jobs and finish)")
    p.add_argument("--slurm-partition", default=None, help="sbatch --partition (over the profile's slurm.partition)")
    p.add_argument("--slurm-account", default=None, help="sbatch --account")
    p.add_argument("--slurm-qos", default=None, help="sbatch --qos")
    p.add_argument("--slurm-time", default=None, help="sbatch --time, per job (e.g. 12:00:00)")
    p.add_argument("--slurm-extra", action="append", default=None, metavar="OPTION",
                   help="an extra sbatch option, e.g. --slurm-extra=--constraint=h100 (repeatable)")


def options_from_args(args, profile_section: dict[str, Any] | None) -> SlurmOptions | None:
    """SlurmOptions from the profile's section and the flags, or None for the local executor."""
    if getattr(args, "executor", "local") != "slurm":
        return None
    return slurm_options(profile_section, partition=args.slurm_partition, account=args.slurm_account,
                         qos=args.slurm_qos, time=args.slurm_time, extra=args.slurm_extra)
