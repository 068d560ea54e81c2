"""`sprig index CORPUS --out IDX`: passages, sparse and dense indexes in one resumable pass."""
from __future__ import annotations

import argparse
import json

from sprig.api.commands.common import add_config_args, config_from_args, default
from sprig.core.config import CORPUS_FORMATS, FAISS_KINDS, SparseChoice, choices


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "index", help="build an index directory from a corpus",
        description="Read a corpus (BEIR folder, .jsonl, or folder of .txt/.md), encode it, and write IDX: "
        "docs.sqlite, sparse/<splade|bm25>/, dense/ (FAISS), manifest.json. The build happens in IDX.partial "
        "and is renamed into place when complete.",
    )
    p.add_argument("corpus", metavar="CORPUS", help="BEIR folder, .jsonl file, or folder of .txt/.md files")
    p.add_argument("--out", required=True, metavar="IDX", help="index directory to write (replaced atomically if it exists), or a Milvus "
                   "location: http://HOST:PORT/COLLECTION or FILE.db[#COLLECTION] (milvus-lite), built as a folder and exported")
    p.add_argument("--format", default="auto", choices=CORPUS_FORMATS, help="corpus format (default: %(default)s)")
    p.add_argument("--sparse", choices=choices(SparseChoice), help=f"sparse indexes to build (default: {default('index.sparse')})")
    p.add_argument("--dense", metavar="MODEL|none", help="dense model id/path, 'default' (all-MiniLM-L6-v2), 'promptreps' (PromptReps' dense half, with --sparse promptreps), or 'none'")
    p.add_argument("--faiss", choices=FAISS_KINDS, help=f"FAISS index kind; hnsw and ivfpq report recall against flat (default: {default('index.faiss')})")
    p.add_argument("--sentence-vectors", action=argparse.BooleanOptionalAction,
                   help=f"with a dense model, store each passage's sentence embeddings so recomp-extractive encodes only the query (default: {'on' if default('index.sentence_vectors') else 'off'})")
    p.add_argument("--chunk-vectors", type=_sizes, metavar="K[,K]",
                   help="with a dense model, store REFRAG chunk embeddings of K tokens of the generator's tokenizer "
                   "(generator.model; e.g. 16 or 8,16,32) for `--compress refrag` (default: none)")
    p.add_argument("--shard-size", type=int, metavar="N", help=f"passages per resumable shard (default {default('index.shard_size')})")
    p.add_argument("--chunk-tokens", type=int, metavar="N", help=f"split documents into passages of N tokens; 0 = no chunking (default {default('chunk.max_tokens')})")
    p.add_argument("--chunk-overlap", type=int, metavar="N", help=f"token overlap between passages (default {default('chunk.overlap')})")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build from its last finished shard")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="encode passages as a Ray Data pipeline, one model replica per Ray worker (a GPU each when the cluster has them), "
                   "writing the same resumable shards: on the cluster at ADDRESS (HOST:PORT, ray://HOST:PORT or auto), or without one "
                   "on a local runtime ($RAY_ADDRESS when set); needs `pip install 'sprig[ray]'`")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sprig.indexer.build import build_index

    dense = args.dense
    extra = {
        ("index", "sparse"): args.sparse, ("index", "faiss"): args.faiss, ("index", "shard_size"): args.shard_size,
        ("index", "sentence_vectors"): args.sentence_vectors, ("index", "chunk_vectors"): args.chunk_vectors,
        ("index", "dense"): None if dense is None else dense.lower() != "none",
        ("dense", "model"): dense if dense and dense.lower() != "none" else None,
        ("chunk", "max_tokens"): args.chunk_tokens, ("chunk", "overlap"): args.chunk_overlap,
        ("ray", "address"): args.ray,
    }
    config = config_from_args(args, extra)
    report = build_index(args.corpus, args.out, config, fmt=args.format, resume=args.resume, progress=not args.quiet)
    summary = {"index": str(report.index_dir), "passages": report.passages, "seconds": round(report.seconds, 1),
               "docs_per_s": round(report.passages / max(report.seconds, 1e-9), 1)}
    if report.resumed_shards:
        summary["resumed_shards"] = report.resumed_shards
    if report.dense_recall:
        summary["faiss_recall_vs_flat"] = report.dense_recall
    print(json.dumps(summary))
    return 0


def _sizes(text: str) -> list[int]:
    """``16`` or ``8,16,32`` -> chunk sizes (range checks happen in the config)."""
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected chunk sizes like 16 or 8,16,32, got '{text}'") from None
