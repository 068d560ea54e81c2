"""Find the two halves of an inference-free sparse model: the masked LM that encodes documents and the
per-token weights that encode queries.

Two layouts are read:
- a sentence-transformers ``Router`` (modules.json + router_config.json): the "query" route is one
  ``SparseStaticEmbedding`` (its own tokenizer and a weight per token id), the "document" route a
  fill-mask ``MLMTransformer`` / ``Transformer`` followed by ``SpladePooling`` (max pooling);
- a plain masked-LM folder, optionally with OpenSearch's ``idf.json`` ({token: weight}) beside it.
A name that is not a local folder is a Hugging Face id, fetched whole with ``snapshot_download``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sprig.core.errors import SprigError
from sprig.core.models import default_splade, local_folder, resolve

ROUTER_TYPES = ("Router", "Asym")  # Asym: the name sentence-transformers 2-4 gave the Router
DOCUMENT_TYPES = ("MLMTransformer", "Transformer")
ACTIVATIONS = ("relu", "log1p_relu")


@dataclass(frozen=True)
class InferenceFreeModel:
    """Where each half lives. ``query_weights`` is float32 [vocab], or None when the model ships none;
    ``extra_log1p``: SpladePooling's "log1p_relu" activation, log(1 + log(1 + relu(x)))."""

    document_model: str
    query_tokenizer: str
    query_weights: np.ndarray | None
    extra_log1p: bool = False


def load_inference_free_model(name_or_path: str) -> InferenceFreeModel:
    folder = local_folder(resolve(name_or_path, default_splade), "inference-free model")
    router = _router_path(folder)
    if router is not None:
        return _from_router(router)
    idf = folder / "idf.json"
    return InferenceFreeModel(str(folder), str(folder), _idf_json(idf, folder) if idf.is_file() else None)


def _router_path(folder: Path) -> Path | None:
    modules = folder / "modules.json"
    if not modules.is_file():
        return None
    for module in json.loads(modules.read_text()):
        if module.get("type", "").rsplit(".", 1)[-1] in ROUTER_TYPES:
            return folder / module.get("path", "")
    return None


def _from_router(router: Path) -> InferenceFreeModel:
    config_file = router / "router_config.json"
    config = json.loads((config_file if config_file.is_file() else router / "config.json").read_text())
    kinds = {module_id: kind.rsplit(".", 1)[-1] for module_id, kind in config["types"].items()}
    query, document = config["structure"].get("query", []), config["structure"].get("document", [])
    shape = [kinds[m] for m in query], [kinds[m] for m in document]
    if shape[0] != ["SparseStaticEmbedding"] or len(document) != 2 or shape[1][0] not in DOCUMENT_TYPES or shape[1][1] != "SpladePooling":
        raise SprigError(f"{router}: Router routes query {shape[0]} / document {shape[1]}; inference-free search reads "
                         "query [SparseStaticEmbedding] / document [MLMTransformer or Transformer, SpladePooling]")
    pooling = json.loads((router / document[1] / "config.json").read_text())
    if pooling.get("pooling_strategy", "max") != "max" or pooling.get("activation_function", "relu") not in ACTIVATIONS:
        raise SprigError(f"{router / document[1]}: SpladePooling {pooling}; sprig reads max pooling with activation {' or '.join(ACTIVATIONS)}")
    query_dir = router / query[0]
    return InferenceFreeModel(str(router / document[0]), str(query_dir), _static_weights(query_dir),
                              pooling.get("activation_function") == "log1p_relu")


def _static_weights(module: Path) -> np.ndarray:
    """SparseStaticEmbedding's ``weight`` [vocab], from model.safetensors (or pytorch_model.bin, or idf.json)."""
    if (module / "model.safetensors").is_file():
        from safetensors.numpy import load_file

        return load_file(module / "model.safetensors")["weight"].astype(np.float32)
    if (module / "pytorch_model.bin").is_file():
        import torch

        return torch.load(module / "pytorch_model.bin", map_location="cpu", weights_only=True)["weight"].float().numpy()
    if (module / "idf.json").is_file():
        return _idf_json(module / "idf.json", module)
    raise SprigError(f"{module}: SparseStaticEmbedding without weights (expected model.safetensors, pytorch_model.bin or idf.json)")


def _idf_json(path: Path, tokenizer_folder: Path) -> np.ndarray:
    """{token: weight} -> float32 [vocab] through the tokenizer's ids, as SparseStaticEmbedding.from_json does."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    table = json.loads(path.read_text())
    weights = np.zeros(len(tokenizer.get_vocab()), np.float32)
    weights[tokenizer.convert_tokens_to_ids(list(table))] = np.fromiter(table.values(), np.float32, len(table))
    return weights
