"""`sprig train sparse --out DIR`: a SPLADE student trained on train qrels, selected on dev qrels (sprig/train/)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from sprig.api.commands.common import config_from_args, default
from sprig.core.config import DEVICES, FLOPS_KINDS, TRAIN_STUDENTS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sparse", help="train an inference-free, siamese or decoder (LoRA) SPLADE encoder",
        description="Train a SPLADE student on the train qrels of --train (BM25 hard negatives; InfoNCE, KL distillation from "
        "BM25 + MiniLM + SPLADE-tiny scores cached under --teachers, FLOPS or IDF-aware FLOPS), keep the step with the best "
        "nDCG@10 on --dev, and write DIR/model (a model folder, or a LoRA adapter for --student decoder) and DIR/training.json "
        "(learning curve). Test splits are refused. Defaults: SprigConfig.train.",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for model/ and training.json")
    p.add_argument("--student", choices=TRAIN_STUDENTS, help=f"what to train (default: {default('train.student')})")
    p.add_argument("--init", metavar="ID_OR_PATH", help="starting model (default: SPLADE-tiny; SmolLM2 GGUF for --student decoder)")
    p.add_argument("--gguf-file", metavar="NAME", help="GGUF file inside --init (decoder)")
    p.add_argument("--data", type=Path, metavar="DIR", help="folder of BEIR sets (default: the shared data folder, $SPRIG_DATA)")
    p.add_argument("--teachers", type=Path, metavar="DIR", help="teacher-score cache (default: $SPRIG_CACHE/teachers)")
    p.add_argument("--train", nargs="+", metavar="SET:SPLIT", help=f"training qrels (default: {' '.join(default('train.train_sets'))})")
    p.add_argument("--dev", metavar="SET:SPLIT", help=f"model-selection qrels (default: {default('train.dev_set')})")
    p.add_argument("--flops", choices=FLOPS_KINDS, help=f"sparsity regulariser (default: {default('train.flops')})")
    p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=None, help="KL distillation from the teachers (default: on)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, metavar="N", help="0: --epochs passes over the training queries")
    g.add_argument("--epochs", type=int, metavar="N")
    g.add_argument("--train-batch", type=int, metavar="N", help=f"queries per step (default: {default('train.batch_queries')})")
    g.add_argument("--lr", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument("--eval-every", type=int, metavar="N", help=f"steps between dev evaluations (default: {default('train.eval_every')})")
    g.add_argument("--dev-max-queries", type=int, metavar="N", help="evaluate on the first N dev queries (default: all)")
    g.add_argument("--dev-max-docs", type=int, metavar="N", help="dev corpus cut to the judged documents plus N (default: all)")
    p.add_argument("--config", metavar="FILE", help="JSON file with SprigConfig settings; its train section holds every trainer option")
    p.add_argument("--device", choices=DEVICES, help=f"where the student trains (default: {default('device')}); teachers run on CPU")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sprig.encoders.causal_lm import cache_dir
    from sprig.eval.datasets import SHARED
    from sprig.train.run import run_training

    train = {"student": args.student, "init": args.init, "gguf_file": args.gguf_file, "train_sets": args.train, "dev_set": args.dev,
             "flops": args.flops, "distill": args.distill, "steps": args.steps, "epochs": args.epochs, "batch_queries": args.train_batch,
             "lr": args.lr, "seed": args.seed, "eval_every": args.eval_every, "dev_max_queries": args.dev_max_queries,
             "dev_max_docs": args.dev_max_docs}
    config = config_from_args(args, {("train", name): value for name, value in train.items()})
    report = run_training(config, args.data or SHARED, args.teachers or cache_dir() / "teachers", args.out)
    print(json.dumps({k: report[k] for k in ("model", "load_with", "steps", "best_step", "best_dev_ndcg10", "seconds")}))
    return 0
