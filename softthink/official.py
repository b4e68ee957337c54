"""Coming from the official Soft Thinking code: its command lines (result files: :mod:`softthink.official_import`).

* :func:`translate` turns an official command line (``python run_sglang_softthinking.py --dataset aime2024 ...`` or
  ``run_sglang_nothinking.py``) into a softthink run spec. Every flag of both scripts is either mapped, accepted with
  a note (it changes nothing softthink does), or refused with a one-line reason; a flag the official code does not
  have is refused too (it would stop the official script). Where the official code differs from its flag names or
  from its README, the notes say so. Secrets given as flags (``--api_key``, ``--hf_token``) are held in memory only.

Command: ``python -m softthink from-official [--run] -- python run_sglang_softthinking.py ...`` (docs/official.md).
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softthink.config import ConfigError

SOFT_SCRIPT = "run_sglang_softthinking.py"
NOTHINKING_SCRIPT = "run_sglang_nothinking.py"
SCRIPTS = (SOFT_SCRIPT, NOTHINKING_SCRIPT)
OFFICIAL_REPO = "eric-ai-lab/Soft-Thinking"
#: the environment variables softthink reads secrets from (never a flag, never a file)
SECRET_FLAGS = {"api_key": "OPENAI_API_KEY", "hf_token": "HF_TOKEN"}
#: the official layout of downloaded models (models/download.py): ./models/<org>/<name>
MODELS_DIR_RE = re.compile(r"^(?:\./)?models/([^/]+/[^/]+?)/?$")

# flags of both scripts: name -> (type, default in run_sglang_softthinking.py, default in run_sglang_nothinking.py);
# `bool` = a switch (store_true); None in a default column = the script has no such flag
_FLAGS: dict[str, tuple[Any, Any, Any]] = {
    "dataset": (str, None, None),
    "sampling_backend": (str, "flashinfer", "flashinfer"),
    "model_name": (str, None, None),
    "num_gpus": (int, 8, 4),
    "cuda_graph_max_bs": (int, None, None),
    "max_running_requests": (int, None, None),
    "max_batch": (int, 1000000, 1000000),
    "mem_fraction_static": (float, 0.5, 0.5),
    "random_seed": (int, 0, 0),
    "output_dir": (str, "results", "results"),
    "start_idx": (int, 0, 0),
    "end_idx": (int, 500, 500),
    "num_samples": (int, 1, 1),
    "max_generated_tokens": (int, 32768, 32768),
    "temperature": (float, 0.6, 0.6),
    "top_p": (float, 0.95, 0.95),
    "top_k": (int, 30, 30),
    "min_p": (float, 0.0, 0.0),
    "after_thinking_temperature": (float, 0.6, 0.6),
    "after_thinking_top_p": (float, 0.95, 0.95),
    "after_thinking_top_k": (int, 30, 30),
    "after_thinking_min_p": (float, 0.0, 0.0),
    "early_stopping_entropy_threshold": (float, 0.0, 0.0),
    "early_stopping_length_threshold": (int, 256, 200),
    "repetition_penalty": (float, 1.0, 1.0),
    "dirichlet_alpha": (float, 1.0, 1.0),
    "gumbel_softmax_temperature": (float, 1.0, "absent"),
    "add_noise_dirichlet": (bool, False, "absent"),
    "add_noise_gumbel_softmax": (bool, False, "absent"),
    "reeval": (bool, False, False),
    "use_llm_judge": (bool, False, False),
    "api_base": (str, None, None),
    "deployment_name": (str, None, None),
    "api_version": (str, None, None),
    "api_key": (str, None, None),
    "judge_model_name": (str, "gpt-4.1-2025-04-14", "absent"),
    "push_results_to_hf": (bool, False, False),
    "hf_token": (str, None, None),
    "hf_repo_id": (str, None, None),
    "enable_soft_thinking": (bool, False, False),
    "think_end_str": (str, "</think>", "</think>"),
    "max_topk": (int, 15, 30),
    "nothinking": (bool, "absent", False),
}
#: flags that are not in the official code, with what to use instead
_NOT_OFFICIAL = {
    "dirichlet_temperature": "the official README names it, but the code has no such flag (the script stops with "
                             "'unrecognized arguments'); the Dirichlet flag is --dirichlet_alpha",
}
#: the README's recommended values where the code's defaults differ (noted when the flag is left out)
_README_VALUES = {"max_topk": 10, "min_p": 0.001, "early_stopping_entropy_threshold": 0.01, "mem_fraction_static": 0.8,
                  "gumbel_softmax_temperature": 0.5}


def official_defaults(script: str) -> dict[str, Any]:
    col = 1 if script == SOFT_SCRIPT else 2
    return {name: spec[col] for name, spec in _FLAGS.items() if spec[col] != "absent"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit 2; one line instead
        raise ConfigError(f"official command line: {message}")


def _parser(script: str) -> argparse.ArgumentParser:
    p = _Parser(prog=script, allow_abbrev=False, add_help=False)
    for name, default in official_defaults(script).items():
        typ = _FLAGS[name][0]
        if typ is bool:
            p.add_argument(f"--{name}", action="store_true")
        else:
            p.add_argument(f"--{name}", type=typ, default=default)
    return p


@dataclass
class Translation:
    """An official command line as softthink sees it."""

    script: str
    args: dict[str, Any]                      # every official setting (given or default), secrets removed
    spec: dict[str, Any]                      # the run spec (RunSpec keys)
    notes: list[str] = field(default_factory=list)       # '--flag: what softthink does with it'
    serving: dict[str, Any] = field(default_factory=dict)  # serving layout (tp_size, mem_fraction_static, ...)
    push: dict[str, Any] | None = None        # {repo_id, private} when --push_results_to_hf
    secrets: dict[str, str] = field(default_factory=dict)  # env name -> value, given as flags; never written
    refused: list[str] = field(default_factory=list)


def split_command(argv: list[str]) -> tuple[str, list[str]]:
    """``[python] [path/]run_sglang_*.py --flag value ...`` -> (script name, flags)."""
    argv = [a for a in argv if a != "\\"]  # a copied multi-line command keeps its backslashes
    if argv and Path(argv[0]).name.startswith("python"):
        argv = argv[1:]
    if not argv or Path(argv[0]).name not in SCRIPTS:
        got = argv[0] if argv else "nothing"
        raise ConfigError(f"official command line: expected {SOFT_SCRIPT} or {NOTHINKING_SCRIPT} first, got {got!r}")
    return Path(argv[0]).name, argv[1:]


def parse_flags(script: str, flags: list[str]) -> tuple[dict[str, Any], set[str]]:
    """The official argparse result (dict) and the names of the flags given on the command line."""
    for f in flags:
        name = f.split("=", 1)[0].lstrip("-")
        if f.startswith("--") and name in _NOT_OFFICIAL:
            raise ConfigError(f"--{name}: {_NOT_OFFICIAL[name]}")
        if f.startswith("--") and (name not in _FLAGS or _FLAGS[name][1 if script == SOFT_SCRIPT else 2] == "absent"):
            raise ConfigError(f"--{name}: not a flag of the official {script}")
    args = vars(_parser(script).parse_args(flags))
    given = {f.split("=", 1)[0].lstrip("-") for f in flags if f.startswith("--")}
    return args, given


def translate(argv: list[str], preset: str | None = None, strict: bool = True) -> Translation:
    """Map an official command line (script name first) onto a run spec; see the module docstring."""
    script, flags = split_command(argv)
    args, given = parse_flags(script, flags)
    return translate_args(script, args, given, preset=preset, strict=strict)


def translate_args(script: str, args: dict[str, Any], given: set[str], preset: str | None = None,
                   strict: bool = True) -> Translation:
    """The mapping itself, from the official settings ``args`` (given on the command line: ``given``).

    ``strict``: a flag softthink cannot honour raises a ConfigError; otherwise it is listed in ``refused`` (imports
    of finished runs record what was done even where softthink would not do it).
    """
    from softthink.data import DATASETS

    a = dict(official_defaults(script), **args)
    t = Translation(script=script, args={}, spec={})
    note = t.notes.append

    def refuse(msg: str) -> None:
        if strict:
            raise ConfigError(msg)
        t.refused.append(msg)
        note(f"{msg} (recorded, not reproduced)")

    for name, env in SECRET_FLAGS.items():
        if a.get(name):
            t.secrets[env] = a[name]
            note(f"--{name}: a secret on the command line (visible in ps and shell history); used from memory "
                 f"for this process only, never written; set {env} instead")
    t.args = {k: v for k, v in a.items() if k not in SECRET_FLAGS}

    if not a.get("dataset"):
        raise ConfigError("--dataset: required (the official script fails without it)")
    from softthink.data import names

    if a["dataset"] not in names():  # the official script's choices are exactly the registry's benchmarks
        raise ConfigError(f"--dataset: {a['dataset']!r} is not a choice of the official script")
    if not a.get("model_name"):
        raise ConfigError("--model_name: required")
    for name, readme in _README_VALUES.items():
        if name not in given and name in a and a[name] != readme and _used(name, a):
            note(f"--{name} not given: the official code's default {a[name]} applies (its README recommends {readme})")

    # model: ./models/<org>/<name> is where models/download.py puts a model
    model = a["model_name"]
    m = MODELS_DIR_RE.match(model)
    if m and not Path(model).exists():
        note(f"--model_name {model}: no such folder here; the Hub id {m.group(1)} is used (python -m softthink "
             f"model fetch {m.group(1)} puts it there)")
        model = m.group(1)
    spec: dict[str, Any] = {"model": model, "dataset": a["dataset"], "engine": "sglang", "device": "cuda",
                            "dtype": "bfloat16"}

    # items and samples
    size = DATASETS[a["dataset"]].count
    if a["start_idx"]:
        spec["start"] = a["start_idx"]
    if a["end_idx"] < size:
        spec["end"] = a["end_idx"]
        if "end_idx" not in given:
            note(f"--end_idx not given: the official default 500 keeps items 0-499 of {a['dataset']}'s {size}")
    elif "end_idx" in given:
        note(f"--end_idx {a['end_idx']}: past the last of {a['dataset']}'s {size} items, so all of them")
    spec["n"] = a["num_samples"]
    if a["output_dir"] != "results" or "output_dir" in given:
        spec["runs_dir"] = a["output_dir"]
        note(f"--output_dir {a['output_dir']}: softthink's run directories go there (not into results/{a['dataset']}/)")

    # the method and its switches
    gen: dict[str, Any] = {"max_new_tokens": a["max_generated_tokens"], "seed": a["random_seed"]}
    soft = bool(a["enable_soft_thinking"])
    if a.get("nothinking"):
        gen["method"] = "nothinking"
        if soft:
            refuse("--nothinking with --enable_soft_thinking: NoThinking skips the thinking phase, there is nothing "
                   "to make soft")
    elif soft:
        gen["method"] = "soft"
    elif a["temperature"] == 0.0:
        gen["method"] = "cot_greedy"
    else:
        gen["method"] = "cot_sample"
    method = gen["method"]
    if soft:
        gen["preset"] = preset or "as_published"
        if gen["preset"] == "as_published":
            note("preset as_published: the engine behaviour behind the published numbers (answers decoded greedily "
                 "after </think>, so the --after_thinking_* values have no effect); the current official code "
                 "behaves as preset official_head (answers sampled at the thinking --temperature; "
                 "--after_thinking_temperature only matters below 1e-6)")
        elif gen["preset"] == "official_head":
            note("preset official_head: answers are sampled at the thinking --temperature "
                 "(--after_thinking_temperature only matters below 1e-6), Cold Stop may abort the answer phase")
    elif preset:
        gen["preset"] = preset
    think: dict[str, Any] = {}
    if method != "cot_greedy":
        think = {"temperature": a["temperature"], "top_p": a["top_p"], "top_k": a["top_k"], "min_p": a["min_p"]}
    else:
        note("--temperature 0: greedy CoT (method cot_greedy); the sampling flags are unused")
    if soft:
        think["max_topk"] = a["max_topk"]
    elif "max_topk" in given:
        note(f"--max_topk {a['max_topk']}: unused without --enable_soft_thinking")
    if a["think_end_str"] != "</think>":
        think["end_str"] = a["think_end_str"]
    if think:
        gen["think"] = think
    gen["answer"] = {"temperature": a["after_thinking_temperature"], "top_p": a["after_thinking_top_p"],
                     "top_k": a["after_thinking_top_k"], "min_p": a["after_thinking_min_p"]}
    tau, length = a["early_stopping_entropy_threshold"], a["early_stopping_length_threshold"]
    if soft:
        gen["cold_stop"] = {"threshold": tau, "length": length}
        if tau == 0.0:
            note("--early_stopping_entropy_threshold 0.0: Cold Stop off")
    elif tau > 0.0:
        refuse(f"--early_stopping_entropy_threshold {tau}: Cold Stop needs --enable_soft_thinking (the official "
               "engine computes the concept entropy only in soft thinking mode)")
    else:
        if "early_stopping_length_threshold" in given or "early_stopping_entropy_threshold" in given:
            note("--early_stopping_*: unused without --enable_soft_thinking (Cold Stop is a soft-thinking switch)")

    # noise
    gumbel, dirichlet = a.get("add_noise_gumbel_softmax"), a.get("add_noise_dirichlet")
    if gumbel and dirichlet:
        refuse("--add_noise_gumbel_softmax with --add_noise_dirichlet: softthink applies one noise kind per run")
    elif (gumbel or dirichlet) and not soft:
        refuse("--add_noise_*: noise perturbs the concept tokens, it needs --enable_soft_thinking")
    elif gumbel:
        gen["noise"] = {"kind": "gumbel", "gumbel_tau": a["gumbel_softmax_temperature"]}
    elif dirichlet:
        gen["noise"] = {"kind": "dirichlet", "dirichlet_alpha": a["dirichlet_alpha"]}
        if gen.get("preset") == "official_head":
            gen["noise"]["dirichlet_support"] = "support"
            note("Dirichlet: drawn on the top-K support; the official full-vocabulary draw raises on zero "
                 "concentrations (docs/design/algorithm.md B3)")
    else:
        for name in ("gumbel_softmax_temperature", "dirichlet_alpha"):
            if name in given:
                note(f"--{name}: unused without its --add_noise_* switch")
    if a["repetition_penalty"] != 1.0:
        refuse(f"--repetition_penalty {a['repetition_penalty']}: softthink has no repetition penalty (every "
               "published run uses 1.0, which is off)")
    spec["generation"] = gen

    # grading
    grader: dict[str, Any] = {"mode": "suite", "aime2024_key": "fixed"}
    if a["use_llm_judge"]:
        judge: dict[str, Any] = {"model": a.get("judge_model_name") or "gpt-4.1-2025-04-14"}
        if a.get("api_base"):
            judge["base_url"] = a["api_base"]
        grader["judge"] = judge
        note("--use_llm_judge: softthink's judge asks one prompt for every sample and reports it as its own column "
             "(acc_judge) beside rule grading; the official one merges its verdict into pass@1")
    else:
        for name in ("api_base", "judge_model_name"):
            if name in given:
                note(f"--{name}: unused without --use_llm_judge")
    for name in ("deployment_name", "api_version"):
        if a.get(name):
            refuse(f"--{name}: an Azure OpenAI deployment; softthink's judge talks to an OpenAI-compatible endpoint "
                   "(--api_base) with the model id (--judge_model_name)")
    spec["grader"] = grader
    if a["reeval"]:
        note("--reeval: not needed; softthink grades in a process of its own after generation (the official "
             "re-run works around a multiprocessing bug); this is the same run, graded again")

    # serving layout and engine flags
    t.serving = {"tp_size": a["num_gpus"], "mem_fraction_static": a["mem_fraction_static"]}
    if a["max_running_requests"] is not None:
        t.serving["max_running_requests"] = a["max_running_requests"]
    if "num_gpus" not in given:
        note(f"--num_gpus not given: the official default {a['num_gpus']} GPUs (tensor parallelism) applies")
    if a["cuda_graph_max_bs"] is not None:
        note("--cuda_graph_max_bs: no effect in the official code (it always launches with CUDA graphs off)")
    if a["max_batch"] != 1000000:
        note(f"--max_batch {a['max_batch']}: the official code restarts its engine every {a['max_batch']} prompts "
             "(a memory workaround); softthink's server keeps running; bound the batch with --max_running_requests")
    if "sampling_backend" in given:
        note(f"--sampling_backend {a['sampling_backend']}: softthink filters and samples in its own code; no "
             "equivalent")
    note("the official engine runs with CUDA graphs and the overlap scheduler off; softthink's serving defaults apply")

    # upload
    if a["push_results_to_hf"]:
        if not a.get("hf_repo_id"):
            raise ConfigError("--push_results_to_hf: needs --hf_repo_id ORG/NAME")
        t.push = {"repo_id": a["hf_repo_id"], "private": False}
        note(f"--push_results_to_hf: the run goes to the dataset repository {a['hf_repo_id']} (samples, grades, "
             "settings, card; the official code uploads its statistics file only)")
    elif a.get("hf_repo_id"):
        note("--hf_repo_id: unused without --push_results_to_hf")
    t.spec = spec
    return t


def _used(name: str, a: dict[str, Any]) -> bool:
    """Whether a flag's value matters for this command line (README-default notes only where it does)."""
    if name in ("max_topk", "early_stopping_entropy_threshold"):
        return bool(a.get("enable_soft_thinking"))
    if name == "gumbel_softmax_temperature":
        return bool(a.get("add_noise_gumbel_softmax"))
    return True


def serving_supported() -> bool:
    from softthink.runspec import RunSpec

    return "serving" in RunSpec.KEYS


def full_spec(t: Translation) -> dict[str, Any]:
    """The run spec with the serving layout in it where the installed RunSpec has a ``serving`` section."""
    spec = copy.deepcopy(t.spec)
    if serving_supported():
        spec["serving"] = dict(t.serving)
    return spec


def to_yaml(t: Translation) -> str:
    """The run spec as YAML, the notes as comments above it (and the serving layout as comments without it)."""
    import yaml

    lines = [f"# run spec from the official {t.script} command line (python -m softthink run --config FILE)"]
    lines += [f"# {n}" for n in t.notes]
    if not serving_supported():
        lines.append("# serving layout (applied by the serving section of the run spec where softthink has one):")
        lines += [f"#   serving.{k}: {v}" for k, v in t.serving.items()]
    if t.push:
        lines.append(f"# upload after the run: python -m softthink push RUN_DIR --repo-id {t.push['repo_id']}")
    return "\n".join(lines) + "\n" + yaml.safe_dump(full_spec(t), sort_keys=False)


# ================================================================================================================
# commands


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "from-official", help="an official Soft Thinking command line as a softthink run spec (--run: run it)",
        description="python -m softthink from-official [--run] -- python run_sglang_softthinking.py --dataset ...")
    p.add_argument("--run", action="store_true", help="run the spec (generate, grade; push with --push_results_to_hf)")
    p.add_argument("--out", default=None, help="also write the spec YAML here")
    p.add_argument("--preset", default=None, choices=("as_published", "official_head", "corrected"),
                   help="soft-thinking engine behaviour (default as_published, the published numbers)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the spec after translation (engine=hf, model=...); repeatable")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("official", nargs=argparse.REMAINDER, help="-- then the official command line")
    p.set_defaults(func=_cmd_from_official)


def _cmd_from_official(args) -> int:
    from softthink.runspec import RunSpec, apply_overrides

    argv = list(args.official)
    if argv and argv[0] == "--":
        argv = argv[1:]
    t = translate(argv, preset=args.preset)
    for env in t.secrets:
        print(f"warning: a secret was given as a flag; it is used for this process only and never written. "
              f"Set {env} in the environment instead.", file=sys.stderr)
    spec = apply_overrides(full_spec(t), args.set)
    if spec.get("engine", "sglang") != "sglang":  # --set engine=hf: no server layout
        spec.pop("serving", None)
    RunSpec.from_dict(copy.deepcopy(spec))  # validated: a bad translation or --set is one error line
    t.spec = {k: v for k, v in spec.items() if k != "serving"}
    text = to_yaml(t)
    if args.out:
        Path(args.out).write_text(text)
    if not args.run:
        sys.stdout.write(text)
        return 0
    return _run_translation(t, spec, args.runs_dir)


def _run_translation(t: Translation, spec: dict[str, Any], runs_dir: str | None) -> int:
    from softthink.generate import generate_run
    from softthink.grade_runs import grade_run
    from softthink.runspec import RunSpec
    from softthink.summaries import format_table, summarize_runs

    for env, value in t.secrets.items():  # this process and its children only
        os.environ.setdefault(env, value)
    rs = RunSpec.from_dict(copy.deepcopy(spec))
    rd = generate_run(rs, progress=False, runs_dir=runs_dir)
    print(f"samples: {rd.samples_path}")
    grade_run(rd.path)
    print(format_table(summarize_runs([rd.path])))
    if t.push:
        from softthink.hub import push_runs

        push_runs([rd.path], t.push["repo_id"], private=t.push["private"])
    return 0

