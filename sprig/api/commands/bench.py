"""`sprig bench sparse`: the one-run sparse-engine benchmark (sprig/eval/bench/sparse.py)."""
from __future__ import annotations

import shlex
import sys


def register(subparsers) -> None:
    from sprig.eval.bench.sparse import add_arguments

    parser = subparsers.add_parser("bench", help="benchmarks", description="Benchmarks; reports go to docs/benchmarks/.")
    sub = parser.add_subparsers(dest="bench_command", metavar="{sparse}", required=True)
    sparse = sub.add_parser("sparse", help="sprig's sparse index vs Lucene, Seismic, BMP and brute force",
                            description="Real SPLADE vectors and a co-occurrence-preserving synthetic corpus; see docs/benchmarks/sparse.md.")
    add_arguments(sparse)
    sparse.set_defaults(func=run)


def run(args) -> int:
    from sprig.eval.bench import sparse

    args.command = "sprig " + shlex.join(sys.argv[1:])
    return sparse.run(args)
