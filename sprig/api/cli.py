"""The `sprig` command. Each subcommand lives in sprig/api/commands/<name>.py and exposes
``register(subparsers)``; heavy imports happen inside the command, so `--help` stays instant."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from sprig.api.commands import ask, bench, export, index, search, serve, train
from sprig.api.commands import eval as evaluate
from sprig.core.errors import SprigError

COMMANDS = [index, export, search, serve, ask, evaluate, bench, train]  # the order shown in --help


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sprig", description="Learned-sparse retrieval and RAG.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    sub.metavar = "{" + ",".join(sub.choices) + "}"  # names the missing command in argparse's error
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:  # transformers' load reports and warnings are noise for CLI users
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except SprigError as exc:
        print(f"sprig {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sprig {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
