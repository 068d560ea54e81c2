"""Which encoding path a device gets: the CUDA check, and CPU precision resolved from "auto"."""
from __future__ import annotations

import sys

from sprig.core.config import Device, HeadPrecision, resolve_device
from sprig.core.errors import SprigError


def encoding_device(device: Device) -> str:
    """``resolve_device``, with a one-line error when CUDA is asked for but torch sees none."""
    import torch

    resolved = resolve_device(device)
    if resolved == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise SprigError(f"device 'cuda' asked for, but torch ({torch.__version__}, {build}) sees no CUDA device: "
                         "pass --device cpu (or auto), or install a CUDA build of torch")
    return resolved


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); without, torch emulates it slowly."""
    import torch

    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe() for probe in probes if probe is not None)


def cpu_precision(choice: HeadPrecision, device: str) -> str:
    """The precision a CPU matrix product runs in: ``choice``, with auto -> bfloat16 where the CPU has bf16 units.
    On CUDA the answer is recorded but unused (CUDA runs bfloat16 throughout)."""
    if choice != "auto":
        return choice
    return "bfloat16" if device == "cpu" and native_bf16() else "float32"


def peak_memory_mib() -> float:
    """This process's peak resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource  # POSIX only; imported here so the module loads everywhere

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def peak_gpu_memory_mib() -> float | None:
    """The most GPU memory torch held for this process's tensors so far; None where CUDA was never used."""
    torch = sys.modules.get("torch")  # not imported for this: a build that never loaded torch used no GPU
    if torch is None or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**20
