"""Command line: `python -m softthink <command>`.

Each command lives next to the code it drives; this file only wires argparse. A module that adds commands
exposes `add_commands(subparsers)`; every module listed here imports without torch, so `python -m softthink grade`
runs in a process that never imported torch or CUDA (docs/design/evaluation.md principle 1).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from softthink.config import ConfigError

# modules that contribute sub-commands (each defines add_commands(subparsers))
COMMAND_MODULES = ["softthink.runs", "softthink.data", "softthink.profiles", "softthink.sglang_glue.launch"]
GENERATE_FILE_KEYS = ("model", "prompts", "device", "dtype", "generation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m softthink", description="Soft Thinking reproduction suite")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
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
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a generation key")
    p.add_argument("--model", default=None, help="model spec (default: the config's `model`, else smollm2-135m)")
    p.add_argument("--prompt", action="append", default=[], help="a user question (repeatable); chat-rendered")
    p.add_argument("--out", default="-", help="JSONL output path ('-' = stdout)")
    p.add_argument("--pretty", action="store_true", help="print thinking and answer readably instead of JSONL")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.set_defaults(func=_cmd_generate)


def _cmd_generate(args) -> int:
    from softthink.config import GenerationConfig, _set_dotted, load_yaml, parse_override

    data = load_yaml(args.config)  # its errors name the file
    try:  # validated before the model loads; main() reports a ConfigError as one line
        unknown = [k for k in data if k not in GENERATE_FILE_KEYS]
        if unknown:
            raise ConfigError(f"unknown top-level key {unknown[0]!r}; allowed: {', '.join(GENERATE_FILE_KEYS)}"
                              " (generation settings go under `generation:`)")
        gen_data = data.get("generation") or {}
        for item in args.set:
            key, value = parse_override(item)
            _set_dotted(gen_data, key, value)
        cfg = GenerationConfig.from_dict(gen_data)
    except ConfigError as e:
        raise ConfigError(f"{args.config}: {e}") from None
    questions = args.prompt or data.get("prompts") or []
    if not questions or not all(isinstance(q, str) for q in questions):
        raise ConfigError("prompts: give --prompt TEXT or a `prompts:` list of strings in the config file")

    from softthink.chat import render_chat
    from softthink.engine import HFEngine
    from softthink.models import load_model
    from softthink.prompts import NOTHINKING_SUFFIX

    model, tok = load_model(args.model or data.get("model", "smollm2-135m"), device=args.device,
                            dtype=args.dtype or data.get("dtype"))
    engine = HFEngine(model, tok)
    suffix = NOTHINKING_SUFFIX if cfg.method == "nothinking" else ""
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


if __name__ == "__main__":
    sys.exit(main())
