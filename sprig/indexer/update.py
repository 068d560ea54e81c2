"""Single-document writes to a served index: encode with the index's own encoders, then store.

The API's POST /documents lands here, for a folder or a Milvus collection alike (a delete needs no encoder:
``Backend.delete``); a full build is sprig.indexer.build. Corpus statistics stay those of the build: BM25's
(df, avgdl) and inference-free's stored IDF are not refitted, so the scores of indexed passages do not move
and the next full `sprig index` refits them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sprig.corpus.chunking import Passage, passage_text
from sprig.encoders.factory import EncoderSet
from sprig.index.backend import Backend


def add_passages(index: Backend, encoders: EncoderSet, passages: Sequence[Passage]) -> np.ndarray:
    """Encode and index new passages; they are visible to the next search and persisted. Returns their rows."""
    encoded = encoders.encode([passage_text(p) for p in passages], [p.text for p in passages])
    return index.add(passages, encoded.sparse, encoded.dense, encoded.sentences)

