"""Command line: `python -m softthink <command>`.

The run commands (generate, run, grade, grade-runs, summarize) are wired here; the data, pipeline and SGLang modules
add theirs through `add_commands(subparsers)`. Every module listed here imports without torch, so `python -m
softthink grade` runs in a process that never imported torch or CUDA (docs/design/evaluation.md principle 1).

`--set KEY=VALUE` means the same for every command: KEY is a dotted path from the config file's root
(`generation.think.max_topk=5`, `n=2`, `model=tiny-random-qwen2`).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from softthink.config import ConfigError

# modules that contribute sub-commands (each defines add_commands(subparsers))
COMMAND_MODULES = ["softthink.data", "softthink.pipeline", "softthink.sglang_glue.launch", "softthink.official",
                   "softthink.official_import", "softthink.hub"]
GENERATE_FILE_KEYS = ("model", "prompts", "device", "dtype", "generation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m softthink", description="Soft Thinking reproduction suite")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_run_commands(sub)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


#: errors that mean "bad input" (a config problem, a missing or misplaced file): every command answers them with one
#: line on stderr and exit status 2; anything else is a bug and keeps its traceback
USER_ERRORS = (ConfigError, FileNotFoundError, NotADirectoryError, IsADirectoryError)
#: set to 1 to get the traceback of a user error too (debugging)
TRACEBACK_ENV = "SOFTTHINK_TRACEBACK"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        print(f"error: {user_error_message(e)}", file=sys.stderr)
        return 2


def user_error_message(e: BaseException) -> str:
    """One line naming the problem: the exception's message with its line breaks folded."""
    return " ".join(str(e).split()) or type(e).__name__


# ---------------------------------------------------------------------------------------------------------------
# python -m softthink generate --config FILE [--set key=value ...] [--pretty]


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate completions for a few questions with one config (JSONL out)")
    p.add_argument("--config", required=True, help="YAML with `generation` keys, and optionally model and prompts")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the file, dotted from its root (generation.think.max_topk=5); repeatable")
    p.add_argument("--model", default=None, help="model spec (default: the config's `model`, else smollm2-135m)")
    p.add_argument("--prompt", action="append", default=[], help="a user question (repeatable); chat-rendered")
    p.add_argument("--out", default="-", help="JSONL output path ('-' = stdout)")
    p.add_argument("--pretty", action="store_true", help="print thinking and answer readably instead of JSONL")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args) -> int:
    from softthink.config import GenerationConfig, load_yaml
    from softthink.runspec import apply_overrides

    data = load_yaml(args.config)  # its errors name the file
    try:  # validated before the model loads; main() reports a ConfigError as one line
        apply_overrides(data, args.set)
        unknown = [k for k in data if k not in GENERATE_FILE_KEYS]
        if unknown:
            raise ConfigError(f"unknown top-level key {unknown[0]!r}; allowed: {', '.join(GENERATE_FILE_KEYS)}"
                              " (generation settings go under `generation:`, e.g. --set generation.think.max_topk=5)")
        cfg = GenerationConfig.from_dict(data.get("generation") or {})
    except ConfigError as e:
        raise ConfigError(f"{args.config}: {e}") from None
    questions = args.prompt or data.get("prompts") or []
    if not questions or not all(isinstance(q, str) for q in questions):
        raise ConfigError("prompts: give --prompt TEXT or a `prompts:` list of strings in the config file")

    from softthink.chat import render_chat
    from softthink.engine import HFEngine
    from softthink.models import load_model
    from softthink.methods import METHODS
    from softthink.prompts import NOTHINKING_SUFFIX

    model, tok = load_model(args.model or data.get("model", "smollm2-135m"), device=args.device,
                            dtype=args.dtype or data.get("dtype"))
    engine = HFEngine(model, tok)
    suffix = NOTHINKING_SUFFIX if METHODS[cfg.method].nothinking else ""
    rendered = [render_chat(tok, q, suffix=suffix) for q in questions]
    stream = sys.stdout if args.out == "-" else open(args.out, "w")
    try:
        for i, g in engine.generate_iter(rendered, cfg):
            if args.pretty:
                stream.write(_pretty(questions[i], g, cfg, tok))
            else:
                stream.write(json.dumps({"index": i, "question": questions[i], **g.to_dict()}) + "\n")
            stream.flush()
    finally:
        if stream is not sys.stdout:
            stream.close()
    return 0


def _pretty(question: str, g, cfg, tok) -> str:
    end = cfg.think.end_str
    thinking, sep, answer = g.text.partition(end)
    if not sep:
        thinking, answer = g.text, ""
    rule = "-" * 78
    return (f"{rule}\nQ: {question}\n{rule}\n[thinking, {g.num_thinking_tokens} tokens, method {cfg.method}, "
            f"ended by {g.think_end_reason or 'nothing (still thinking)'}]\n{thinking.strip()}\n{rule}\n"
            f"[answer, {g.num_answer_tokens} tokens, finish: {g.finish_reason}, {g.wall_time:.1f} s]\n"
            f"{answer.strip()}\n{rule}\n")


# ---------------------------------------------------------------------------------------------------------------
# run (generate + grade), grade, grade-runs, summarize


def _add_run_commands(subparsers) -> None:
    from softthink.runspec import GRADER_MODES, RunSpec
    from softthink.store import RUNS_ENV

    p = subparsers.add_parser("run", help="generate a run (resumable), then grade it in a separate process")
    p.add_argument("--config", required=True, help="run spec YAML (keys: " + ", ".join(RunSpec.KEYS) + ")")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a key of the file, dotted from its root (generation.think.max_topk=5); repeatable")
    p.add_argument("--runs-dir", default=None, help=f"root of run directories (default ${RUNS_ENV} or ./runs)")
    p.add_argument("--no-grade", action="store_true", help="generate only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    g = subparsers.add_parser("grade", help="grade a run directory (CPU; run as its own process)")
    g.add_argument("run_dir")
    _grading_flags(g, GRADER_MODES)
    g.set_defaults(func=_cmd_grade)

    r = subparsers.add_parser("grade-runs", help="grade several run directories in this one process (CPU); a run "
                                                 "that fails is reported and the others go on")
    r.add_argument("run_dirs", nargs="+")
    _grading_flags(r, GRADER_MODES)
    r.add_argument("--status", default=None, help="write per-run status JSON here")
    r.set_defaults(func=_cmd_grade_runs)

    s = subparsers.add_parser("summarize", help="table of pass@1, lengths, rates and CIs for run directories")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument("--csv", default=None, help="also write the full table as CSV")
    s.add_argument("--baseline", default=None, help="run directory the token-change columns compare against")
    s.set_defaults(func=_cmd_summarize)


def _grading_flags(p, modes) -> None:
    p.add_argument("--mode", choices=modes, default=None, help="grader mode (default: the spec's)")
    p.add_argument("--judge", dest="judge", action="store_true", default=None, help="also run the LLM judge")
    p.add_argument("--no-judge", dest="judge", action="store_false", help="rule grading only")
    p.add_argument("--regrade", action="store_true", help="grade every sample again (default: reuse unchanged ones)")


def _cmd_run(args) -> int:
    from softthink.generate import generate_run
    from softthink.grade_runs import grade_run
    from softthink.runspec import RunSpec
    from softthink.summaries import format_table, summarize_runs

    try:
        spec = RunSpec.from_yaml(args.config, args.set or [])
    except ConfigError as e:  # reported before anything loads, as one line with exit 2
        raise ConfigError(f"{args.config}: {e}") from None
    rd = generate_run(spec, progress=not args.quiet, runs_dir=args.runs_dir)
    print(f"samples: {rd.samples_path}")
    if args.no_grade:
        return 0
    grade_run(rd.path)
    print(format_table(summarize_runs([rd.path])))
    return 0


def _cmd_grade(args) -> int:
    from softthink.grade_runs import grade_in_process

    path = grade_in_process(args.run_dir, mode=args.mode, judge=args.judge, regrade=args.regrade)
    print(f"grades: {path}")
    return 0


def _cmd_grade_runs(args) -> int:
    from pathlib import Path

    from softthink.grade_runs import grade_many_in_process

    status = grade_many_in_process(args.run_dirs, mode=args.mode, judge=args.judge, regrade=args.regrade)
    if args.status:
        Path(args.status).write_text(json.dumps(status, indent=1))
    return 1 if any(s["status"] == "failed" for s in status) else 0


def _cmd_summarize(args) -> int:
    from softthink.summaries import format_table, summarize_runs

    df = summarize_runs(args.run_dirs, baseline=args.baseline)
    if args.csv:
        df.to_csv(args.csv, index=False)
    print(format_table(df))
    return 0


if __name__ == "__main__":
    sys.exit(main())
