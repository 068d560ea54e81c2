"""Retrieval flags shared by `sprig search`, `sprig serve` and `sprig eval beir --retriever hybrid`."""
from __future__ import annotations

import argparse

from sprig.api.commands.common import default
from sprig.core.config import ENCODER_KINDS, FUSION_METHODS, RETRIEVAL_MODES
from sprig.core.errors import SprigError


def add_fusion_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("hybrid fusion")
    g.add_argument("--fusion", choices=FUSION_METHODS, help=f"convex: weighted min-max scores; rrf: reciprocal rank (default: {default('fusion.method')})")
    g.add_argument("--weights", metavar="NAME=W,...", help=f"per-retriever weights (default {','.join(f'{k}={w}' for k, w in default('fusion.weights').items())})")
    g.add_argument("--depth", type=int, metavar="N", help=f"candidates per retriever before fusing (default {default('fusion.depth')})")


def add_mode_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=RETRIEVAL_MODES, help="retriever (default: hybrid when the index has several)")


def parse_weights(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    weights = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in ENCODER_KINDS:
            raise SprigError(f"--weights item '{item}': expected NAME=WEIGHT with NAME one of {', '.join(ENCODER_KINDS)}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise SprigError(f"--weights item '{item}': '{value}' is not a number") from None
        if weights[name] < 0:
            raise SprigError(f"--weights item '{item}': weights must be >= 0")
    return weights


def fusion_overrides(args: argparse.Namespace) -> dict[tuple[str, ...], object]:
    """--fusion/--weights/--depth as config overrides (weights replace the configured ones)."""
    return {("fusion", "method"): args.fusion, ("fusion", "weights"): parse_weights(args.weights), ("fusion", "depth"): args.depth}
