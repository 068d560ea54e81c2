"""`sprig ask IDX "question" [--compress MODE]`: a cited answer from an index, streamed to stdout."""
from __future__ import annotations

import argparse
import json
import sys

from api.commands.common import add_config_args, config_from_args
from api.commands.rag_args import COMPRESS_CHOICES, add_rag_args, rag_overrides, set_threads


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ask", help="answer a question from an index, with citations",
        description="Retrieve passages, compress them (RECOMP), and generate a cited answer. When no passage "
        "helps, the answer is closed-book and says so.",
    )
    p.add_argument("index", metavar="IDX", help="index directory written by `sprig index`")
    p.add_argument("question", help="the question")
    p.add_argument("--compress", choices=COMPRESS_CHOICES, help="context compression (default: none)")
    p.add_argument("--json", action="store_true", help="print the whole answer record as JSON instead of streaming text")
    add_rag_args(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rag.answer import Answer, Answerer
    from retriever.searcher import Searcher
    from sprig.errors import SprigError

    if not args.question.strip():
        raise SprigError("the question is empty")
    set_threads(args)
    config = config_from_args(args, rag_overrides(args, args.compress))
    answerer = Answerer.from_config(config, Searcher(args.index, config), args.retrieval_mode)
    result = None
    for event in answerer.stream(args.question):
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
    print(f"({result.mode}: {s['context_tokens']}/{s['retrieved_tokens']} context tokens, "
          f"first token {s['ttft_ms']:.0f} ms, total {s['latency_ms']:.0f} ms)", file=sys.stderr)
    return 0
