"""Length-sorted batching shared by the neural encoders."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm


def length_sorted_batches(texts: Sequence[str], batch_size: int, progress: bool = False, label: str = "encode") -> Iterator[tuple[np.ndarray, list[str]]]:
    """Yield (positions, texts) batches, longest first, so batches carry little padding.

    Callers scatter results back by position. Empty texts become a single space so they still get
    the model's special tokens (and a well-defined, if meaningless, vector).
    """
    order = np.argsort([-len(t) for t in texts], kind="stable")
    with tqdm(total=len(texts), desc=label, unit="text", disable=not progress, smoothing=0.1) as bar:
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            yield idx, [texts[i] or " " for i in idx]
            bar.update(len(idx))
