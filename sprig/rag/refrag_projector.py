"""REFRAG's projection layer (Lin et al. 2025, "REFRAG: Rethinking RAG based Decoding", §2): a 2-layer MLP
that maps a chunk encoder's vector to one input embedding of the decoder.

A projector is only meaningful for the decoder, encoder and chunk size it was trained with, so its folder
holds the weights (``projector.safetensors``) beside a JSON of exactly those (``projector.json``), and
loading one for another combination is a one-line error. Projectors trained on a GPU for the default pair
(SmolLM2-135M-Instruct + all-MiniLM-L6-v2) ship inside the package under ``projectors/<name>/``;
``shipped_projector`` finds the one trained for exactly the setup asked for.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from sprig.core.errors import SprigError
from sprig.core.files import write_text_atomic

WEIGHTS, META = "projector.safetensors", "projector.json"
FORMAT, VERSION = "sprig-refrag-projector", 1
SHIPPED = Path(__file__).parent / "projectors"  # package data (pyproject.toml)


@dataclass(frozen=True)
class ProjectorSpec:
    """What a projector was trained for; all of it must match the answer path that uses it."""

    decoder: str  # sprig.encoders.chunk_vectors.decoder_label of the generator
    hidden: int  # the decoder's token-embedding width (the projector's output)
    encoder: str  # encoder_label of the chunk encoder
    encoder_dim: int  # the chunk vectors' width (the projector's input)
    chunk_tokens: int  # k: decoder tokens per chunk


class ChunkProjector(torch.nn.Module):
    """encoder_dim -> hidden -> hidden, GELU between (the paper's φ; width as the decoder's)."""

    def __init__(self, spec: ProjectorSpec, trained: dict | None = None):
        super().__init__()
        self.spec = spec
        self.trained = dict(trained or {})  # how it was trained (stage, data, steps): recorded, never interpreted
        self.net = torch.nn.Sequential(torch.nn.Linear(spec.encoder_dim, spec.hidden), torch.nn.GELU(),
                                       torch.nn.Linear(spec.hidden, spec.hidden))

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """[chunks, encoder_dim] -> [chunks, hidden] decoder input embeddings."""
        return self.net(vectors)

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(folder / WEIGHTS))
        meta = {"format": FORMAT, "version": VERSION, **asdict(self.spec), "trained": self.trained}
        write_text_atomic(folder / META, json.dumps(meta, indent=2, sort_keys=True))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "ChunkProjector":
        """A saved projector, or a one-line SprigError naming what is wrong with the folder."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
            raise SprigError(f"{folder}: not a REFRAG projector (expected {META} and {WEIGHTS} in it)")
        try:
            meta = json.loads((folder / META).read_text())
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise SprigError(f"{folder / META}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                                 f"this sprig reads {FORMAT!r} version {VERSION}")
            projector = cls(ProjectorSpec(**{f.name: meta[f.name] for f in fields(ProjectorSpec)}), meta.get("trained"))
            projector.load_state_dict(load_file(str(folder / WEIGHTS)))
        except (json.JSONDecodeError, KeyError, TypeError, RuntimeError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SprigError(f"{folder}: unreadable REFRAG projector ({first})") from None
        return projector.eval()

    def check(self, wanted: ProjectorSpec, folder: str | Path) -> None:
        """Refuse, in one line, a projector trained for another decoder, encoder or chunk size."""
        differ = [f"{f.name} {getattr(self.spec, f.name)!r} (here {getattr(wanted, f.name)!r})"
                  for f in fields(ProjectorSpec) if getattr(self.spec, f.name) != getattr(wanted, f.name)]
        if differ:
            fix = f" or use --chunk-size {self.spec.chunk_tokens}" if differ[0].startswith("chunk_tokens") else ""
            raise SprigError(f"projector {folder} was trained for another setup, {', '.join(differ)}: pass a projector "
                             f"trained for this one (--projector DIR, compress.refrag.projector){fix}")


def shipped_projector(wanted: ProjectorSpec, root: Path | None = None) -> Path | None:
    """The folder under ``root`` (default: the package's SHIPPED) holding the projector trained for exactly ``wanted``, or None."""
    for meta in sorted((root or SHIPPED).glob(f"*/{META}")):
        recorded = json.loads(meta.read_text())
        if all(recorded.get(f.name) == getattr(wanted, f.name) for f in fields(ProjectorSpec)):
            return meta.parent
    return None
