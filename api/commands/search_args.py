"""Retrieval flags shared by `sprig search`, `sprig serve` and `sprig eval beir --retriever hybrid`."""
from __future__ import annotations

import argparse

from retriever.fusion import FUSION_METHODS
from retriever.searcher import MODES
from sprig.errors import SprigError

RETRIEVER_NAMES = ("bm25", "splade", "dense")


def add_fusion_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("hybrid fusion")
    g.add_argument("--fusion", choices=FUSION_METHODS, help="convex: weighted min-max scores (default); rrf: reciprocal rank")
    g.add_argument("--weights", metavar="NAME=W,...", help="per-retriever weights, e.g. bm25=0.3,splade=0.3,dense=0.4")
    g.add_argument("--depth", type=int, metavar="N", help="candidates per retriever before fusing (default 1000)")


def add_mode_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=MODES, help="retriever (default: hybrid when the index has several)")


def parse_weights(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    weights = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in RETRIEVER_NAMES:
            raise SprigError(f"--weights item '{item}': expected NAME=WEIGHT with NAME one of {', '.join(RETRIEVER_NAMES)}")
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
