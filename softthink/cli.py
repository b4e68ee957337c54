"""Command line: `python -m softthink <command>`.

Each command lives next to the code it drives; this file only wires argparse. A module that adds commands
exposes `add_commands(subparsers)`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# modules that contribute sub-commands (each defines add_commands(subparsers))
COMMAND_MODULES = ["softthink.engine", "softthink.runs", "softthink.data", "softthink.profiles", "softthink.sglang_glue.launch"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m softthink", description="Soft Thinking reproduction suite")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a module not written yet, or an optional extra missing
            if e.name and (e.name == name or name.startswith(e.name)):
                continue
            raise
        add = getattr(mod, "add_commands", None)
        if add is not None:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
