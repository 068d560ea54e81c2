"""`sprig eval beir DATA_DIR --retriever ... --out OUT_DIR`."""
from __future__ import annotations

import argparse
import json

from sprig.api.commands.common import add_config_args, config_from_args
from sprig.api.commands.search_args import add_fusion_args, fusion_overrides
from sprig.core.config import RETRIEVAL_MODES

NAME = "beir"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        NAME, help="nDCG@10, R@100, R@1000, MRR@10 on a BEIR folder",
        description="Index a BEIR dataset, run its judged queries, write OUT/run.trec and OUT/metrics.json.",
    )
    p.add_argument("data_dir", metavar="DATA_DIR", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv")
    p.add_argument("--retriever", required=True, choices=RETRIEVAL_MODES, help="what ranks the documents")
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="folder for run.trec and metrics.json")
    p.add_argument("--split", default="test", help="qrels split (default: test)")
    p.add_argument("--hits", type=int, default=1000, help="hits per query in the run (default: 1000)")
    p.add_argument("--index", metavar="IDX", help="search this index (built by `sprig index` from DATA_DIR) instead of brute force over a fresh encoding")
    add_fusion_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sprig.eval.beir import run_beir

    config = config_from_args(args, fusion_overrides(args))
    report = run_beir(args.data_dir, args.retriever, args.out, config, args.split, args.hits, index=args.index)
    print(json.dumps({k: round(report[k], 4) for k in ("nDCG@10", "R@100", "R@1000", "MRR@10")} | {"out": args.out}))
    return 0
