"""The fused SPLADE head kernel (sprig/kernels/splade_head.py) against splade_pool's torch path, under
TRITON_INTERPRET=1 on CPU: ragged documents spanning token tiles and groups, length 1 and 0, a vocabulary that
is not a multiple of the tile, a hidden width that is not a multiple of the K step, bias or none, soft cap."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sprig.kernels.splade_head import document_groups

ROOT = Path(__file__).resolve().parents[1]


def test_document_groups_hold_whole_documents():
    offsets = np.cumsum([0, 5, 1, 130, 0, 17, 260, 3])
    groups = document_groups(offsets, 64)
    assert groups[0] == 0 and groups[-1] == offsets.size - 1 and np.all(np.diff(groups) > 0)
    assert document_groups(np.zeros(1, np.int64), 64).tolist() == [0]


@pytest.mark.skipif(sys.platform != "linux" and importlib.util.find_spec("triton") is None,
                    reason="triton has no wheels for this platform")
def test_kernel_under_interpreter_matches_torch_path():
    """In a child process, since TRITON_INTERPRET must be set before triton is imported. float32 and float16
    (the interpreter computes bf16 tl.dot wrongly, see tests/test_sparse_attention.py); bf16 on the GPU is
    checked by sprig/eval/bench/splade_gpu.py. On Linux a missing triton fails rather than skips: the dev
    extra installs it."""
    assert importlib.util.find_spec("triton") is not None, "triton is not installed: pip install -e '.[dev]'"
    script = textwrap.dedent("""
        import numpy as np, torch
        from sprig.encoders.splade import splade_pool
        from sprig.kernels.splade_head import splade_head
        tiles = dict(block_t=16, block_v=32, block_k=16, group_tokens=24, group=2, num_warps=4, num_stages=1)
        cases = [  # dtype, lengths, hidden width, vocab, bias, softcap
            (torch.float32, [5, 1, 40, 17, 3, 33], 48, 100, True, None),
            (torch.float32, [1, 0, 16, 0, 70, 2, 0], 40, 77, False, 3.0),
            (torch.float16, [9, 1, 31, 64, 4], 32, 65, True, 2.0),
            (torch.float32, [1], 16, 33, True, None),
        ]
        for dtype, lengths, width, vocab, with_bias, cap in cases:
            torch.manual_seed(len(lengths))
            hidden = torch.randn(sum(lengths), width).to(dtype)
            weight = (torch.randn(vocab, width) / width ** 0.5).to(dtype)
            bias = torch.randn(vocab) * 0.5 if with_bias else None
            got = splade_head(hidden, np.cumsum([0, *lengths]), weight, bias, cap, **tiles)
            ref = splade_pool(hidden.float(), lengths, weight.float(), bias, 32, cap)
            assert got.shape == ref.shape and got.dtype == torch.float32
            assert (ref > 0).float().mean() > 0.2 and (ref == 0).any()  # both sides of the ReLU exercised
            tol = 1e-5 if dtype == torch.float32 else 2e-3
            assert torch.allclose(got, ref, atol=tol, rtol=tol), (dtype, lengths, (got - ref).abs().max())
            empty = [i for i, n in enumerate(lengths) if n == 0]
            assert torch.all(got[empty] == 0)
        print("ok")
    """)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
