"""`sprig eval beir|qa`: the evaluation subcommands, each defined in its own module."""
from __future__ import annotations

from sprig.api.commands import eval_beir, eval_qa

SUBCOMMANDS = [eval_beir, eval_qa]


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate retrieval (BEIR) or answers (QA)", description="Evaluation runs.")
    sub = parser.add_subparsers(dest="eval_command", metavar="{" + ",".join(m.NAME for m in SUBCOMMANDS) + "}", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
