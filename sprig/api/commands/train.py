"""`sprig train sparse|projector`: the training subcommands, each defined in its own module."""
from __future__ import annotations

from sprig.api.commands import train_projector, train_sparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a sparse encoder or a REFRAG projector", description="Training runs.")
    sub = parser.add_subparsers(dest="train_command", required=True)
    for module in (train_sparse, train_projector):
        module.register(sub)
    sub.metavar = "{" + ",".join(sub.choices) + "}"
