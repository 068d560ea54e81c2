"""`sprig ask IDX "question" [--compress MODE]`: a cited answer from an index, streamed to stdout."""
from __future__ import annotations

import argparse
import json
import sys

from sprig.api.commands.common import add_config_args, config_from_args, default
from sprig.api.commands.rag_args import add_rag_args, rag_overrides, set_threads
from sprig.core.config import COMPRESS_MODES


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ask", help="answer a question from an index, with citations",
        description="Retrieve passages, compress them (RECOMP), and generate a cited answer. When no passage "
        "helps, the answer is closed-book and says so.",
    )
    p.add_argument("index", metavar="IDX", help="index directory written by `sprig index`")
    p.add_argument("question", help="the question")
    p.add_argument("--compress", metavar="MODE[@R]", help=f"context compression, one of {', '.join(COMPRESS_MODES)} (default: "
                   f"{default('compress.mode')}); @R sets its ratio: the fraction of retrieved tokens kept (recomp-extractive@0.25) "
                   "or expanded back to tokens (refrag@0.1)")
    p.add_argument("--json", action="store_true", help="print the whole answer record as JSON instead of streaming text")
    add_rag_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sprig.core.errors import SprigError
    from sprig.rag.answer import Answer, Answerer, parse_compress
    from sprig.retriever.searcher import Searcher

    if not args.question.strip():
        raise SprigError("the question is empty")
    mode = parse_compress(args.compress)[0] if args.compress else None  # a bad mode fails before any model loads
    set_threads(args)
    config = config_from_args(args, rag_overrides(args, mode))
    answerer = Answerer.from_config(config, Searcher(args.index, config), args.retrieval_mode)
    result = None
    for event in answerer.stream(args.question, mode=args.compress):
        if isinstance(event, Answer):
            result = event
        elif not args.json:
            sys.stdout.write(event)
            sys.stdout.flush()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print()
    if result.closed_book:
        print(f"(closed-book: {result.note})")
    for c in result.citations:
        how = "" if c.found_by == "marker" else " (attributed by overlap)"
        print(f"[{c.number}] {', '.join(c.passage_ids)}{how}")
    s = result.stats
    print(f"({result.mode}: {s['context_tokens']}/{s['retrieved_tokens']} context tokens, {s['prompt_tokens']} decoder input positions, "
          f"first token {s['ttft_ms']:.0f} ms = retrieval {s['retrieve_ms']:.0f} + compression {s['compress_ms']:.0f} "
          f"+ prefill {s['prefill_ms']:.0f}, total {s['latency_ms']:.0f} ms)", file=sys.stderr)
    return 0
