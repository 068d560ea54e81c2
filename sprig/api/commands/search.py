"""`sprig search IDX "text"`: ranked passages, with why each one matched."""
from __future__ import annotations

import argparse
import json

from sprig.api.commands.common import add_config_args, config_from_args
from sprig.api.commands.search_args import (
    add_fusion_args,
    add_mode_arg,
    fusion_overrides,
)


def register(subparsers) -> None:
    p = subparsers.add_parser("search", help="search an index from the command line", description="Print the top-k passages for a query.")
    p.add_argument("index", metavar="IDX", help="index directory written by `sprig index`")
    p.add_argument("query", metavar="TEXT", help="the query")
    p.add_argument("-k", type=int, default=10, help="passages to print (default 10)")
    add_mode_arg(p)
    add_fusion_args(p)
    p.add_argument("--json", action="store_true", help="print hits as JSON lines, explanations included")
    add_config_args(p)
    p.set_defaults(func=run)


def _why(explain: dict) -> str:
    parts = []
    for name, r in explain.get("retrievers", {}).items():
        parts.append(f"{name} #{r['rank']} {r['score']:.3f}" if r["rank"] else f"{name} -")
    for name, terms in explain.get("terms", {}).items():
        if terms:
            parts.append(f"{name}: " + " ".join(f"{t['term']}({t['contribution']:.2f})" for t in terms))
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    from sprig.core.errors import SprigError
    from sprig.retriever.searcher import Searcher

    if args.k < 1:
        raise SprigError(f"-k must be at least 1 (got {args.k})")
    searcher = Searcher(args.index, config_from_args(args, fusion_overrides(args)))
    for hit in searcher.search(args.query, args.k, args.mode):
        if args.json:
            print(json.dumps({"rank": hit.rank, "id": hit.passage_id, "doc_id": hit.doc_id, "score": hit.score,
                              "title": hit.title, "text": hit.text, "explain": hit.explain}))
            continue
        title = f"{hit.title} — " if hit.title else ""
        text = " ".join(hit.text.split())
        print(f"{hit.rank:>3}  {hit.score:8.4f}  {hit.passage_id}  {title}{text[:160]}{'…' if len(text) > 160 else ''}")
        print(f"     {_why(hit.explain)}")
    return 0
