"""`sprig export DIR LOCATION`: a native index folder into a Milvus collection, without re-encoding."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="copy a native index into Milvus (no re-encoding)",
                              description="Copy the passages, stored sparse and dense vectors, encoder settings and encoder state of "
                              "the index folder DIR into a Milvus collection, replacing it. LOCATION is http://HOST:PORT/COLLECTION "
                              "(a server) or FILE.db[#COLLECTION] (milvus-lite).")
    p.add_argument("index", metavar="DIR", help="index folder written by `sprig index`")
    p.add_argument("location", metavar="LOCATION", help="Milvus location to write")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sprig.indexer.export import export_index

    passages = export_index(args.index, args.location, progress=not args.quiet)
    print(json.dumps({"index": args.location, "passages": passages}))
    return 0
