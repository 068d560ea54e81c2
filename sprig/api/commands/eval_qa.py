"""`sprig eval qa --squad FILE --index IDX --out OUT_DIR`: EM/F1, compression and latency per compression mode."""
from __future__ import annotations

import argparse
import json

from sprig.api.commands.common import add_config_args, config_from_args
from sprig.api.commands.rag_args import add_rag_args, rag_overrides, set_threads

NAME = "qa"


def register(subparsers) -> None:
    from sprig.eval.qa import DEFAULT_ROWS, ROWS

    p = subparsers.add_parser(
        NAME, help="EM/F1, compression rate and time to first token on a SQuAD file",
        description="Answer a sample of SQuAD questions from an index with each compression mode, plus closed-book "
        "and oracle-paragraph rows; write OUT/metrics.json, run.json, predictions.jsonl, f1_vs_compression.png "
        "and ttft_vs_prompt_tokens.png.",
    )
    p.add_argument("--squad", required=True, metavar="FILE", help="SQuAD v1.1-format json")
    p.add_argument("--index", required=True, metavar="IDX", help="index of the SQuAD paragraphs (`sprig index`)")
    p.add_argument("--out", metavar="OUT_DIR", help="folder for metrics.json, run.json, predictions.jsonl and the plot")
    p.add_argument("--modes", default=",".join(DEFAULT_ROWS), metavar="ROW,...",
                   help=f"rows to run, from {', '.join(ROWS)} (default: all but refrag, which needs --projector); MODE@R runs "
                   "a compression mode at budget ratio R, e.g. recomp-extractive@0.1,recomp-extractive@0.5, and refrag@P "
                   "expands the chunks closest to the question back to tokens, up to a fraction P of the retrieved tokens")
    p.add_argument("--sample", type=int, default=24, metavar="N", help="questions drawn at random; 0 = all (default 24)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    add_rag_args(p)
    add_config_args(p)
    p.set_defaults(func=run, max_new_tokens=32)  # SQuAD answers are short spans


def run(args: argparse.Namespace) -> int:
    from sprig.eval.qa import parse_row, run_qa
    from sprig.rag.answer import Answerer
    from sprig.retriever.searcher import Searcher

    rows = tuple(r.strip() for r in args.modes.split(",") if r.strip())
    for row in rows:  # a bad row fails before any model loads
        parse_row(row)
    set_threads(args)
    args.stop = args.stop or ["\n"]  # a span answer ends at the first line break
    config = config_from_args(args, rag_overrides(args))
    searcher = Searcher(args.index, config)
    answerer = Answerer.from_config(config, searcher, args.retrieval_mode)
    settings = {"config": config.model_dump(mode="json"), "retrieval_mode": args.retrieval_mode or searcher.default_mode(),
                "index": str(args.index), "generator": answerer.generator.name}
    metrics = run_qa(args.squad, answerer, answerer.retrieve, args.out, args.sample, args.seed, rows,
                     config.compress.k, settings)
    keys = ("EM", "F1", "compression_rate", "prompt_tokens", "ttft_ms", "ttft_cpu_ms", "n")
    print(json.dumps({row: {k: round(m[k], 4) for k in keys} for row, m in metrics.items()}, indent=1))
    return 0
