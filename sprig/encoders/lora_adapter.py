"""LoRA adapters over a causal LM, for the decoder SPLADE encoder: the folder `sprig train sparse` writes, read back.

A whole SmolLM2 or Gemma checkpoint is too large to move between machines for each trained model; a LoRA adapter
(peft, on the transformer's projections, the tied LM head frozen) is a few MB. The folder holds peft's
``adapter_config.json`` + ``adapter_model.safetensors`` and ``sprig_base.json``: the base model as the trainer named
it, its shape (architecture, layers, width, vocabulary) and which ids the vectors weigh (``splade.expansion``); and
``head_bias.safetensors`` when the head was trained with a bias of its own (a centred head,
``train.head_centring_docs``), which then replaces the base's. A base named at search time must have that shape; its
path may differ (paths change between machines, shapes do not).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from sprig.core.errors import SprigError
from sprig.core.models import is_default
from sprig.encoders.causal_lm import CausalLM, load_causal_lm

BASE_FILE = "sprig_base.json"
HEAD_BIAS_FILE = "head_bias.safetensors"  # the head bias the adapter was trained with, when not the base's own


def base_shape(lm: CausalLM) -> dict:
    """What an adapter needs of its base: the module layout and sizes its LoRA matrices were trained against."""
    config = lm.model.config
    return {"model_type": config.model_type, "layers": config.num_hidden_layers, "hidden_size": config.hidden_size,
            "vocab_size": int(lm.weight.shape[0])}


def write_base(folder: str | Path, lm: CausalLM, expansion: bool = True) -> None:
    """The base and, as ``expansion``, whether the adapter was trained on every id or on each text's own ids only."""
    Path(folder, BASE_FILE).write_text(json.dumps(lm.recorded() | {"shape": base_shape(lm), "expansion": expansion}, indent=1))


def write_head_bias(folder: str | Path, bias: torch.Tensor) -> None:
    from safetensors.torch import save_file

    save_file({"bias": bias.detach().float().cpu().contiguous()}, str(Path(folder, HEAD_BIAS_FILE)))


def read_head_bias(folder: str | Path, device: str) -> torch.Tensor | None:
    path = Path(folder, HEAD_BIAS_FILE)
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    return load_file(str(path), device=device)["bias"]


def read_base(folder: str | Path) -> dict:
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file() or not (folder / BASE_FILE).is_file():
        raise SprigError(f"adapter '{folder}' is not a LoRA adapter folder from `sprig train sparse` "
                         f"(expected adapter_config.json and {BASE_FILE}); train one with `sprig train sparse --student decoder`")
    return json.loads((folder / BASE_FILE).read_text())


def require_peft(option: str):
    """The peft module, or a one-line error naming the option that needs it and the extra that installs it."""
    try:
        import peft
    except ImportError:
        raise SprigError(f"{option} needs peft (LoRA adapters): pip install 'sprig[train]'") from None
    return peft


def load_with_adapter(model: str | None, gguf_file: str | None, adapter: str, device: str, purpose: str) -> CausalLM:
    """The base (``model``, or the one the adapter records when ``model`` is "default") with the adapter merged in."""
    PeftModel = require_peft("--adapter").PeftModel
    base = read_base(adapter)
    if is_default(model):
        model, gguf_file = base["model"], base["gguf_file"]
    lm = load_causal_lm(model, gguf_file, device, purpose)
    if base_shape(lm) != base["shape"]:
        raise SprigError(f"adapter '{adapter}' was trained on {base['model']} {base['shape']}; '{lm.name}' is {base_shape(lm)}: "
                         "pass the adapter's base with --splade-model")
    merged = PeftModel.from_pretrained(lm.model, adapter).merge_and_unload()  # LoRA folded into the weights: no extra cost per token
    bias = read_head_bias(adapter, device)
    # the bias stays float32 (a bf16 copy of a centring bias near -18 would be off by up to 0.06)
    return replace(lm, model=merged.eval(), bias=lm.bias if bias is None else bias)
