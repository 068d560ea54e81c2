"""sprig: learned-sparse retrieval and RAG.

Data flow, one subpackage a stage (imports run one way; docs/architecture.md):
corpus files -> passages (sprig.corpus) -> vectors (sprig.encoders) -> index (sprig.index, written by
sprig.indexer) -> candidates (sprig.retriever) -> context and answer (sprig.rag); sprig.eval and sprig.api
sit on top, sprig.core and sprig.kernels underneath.
"""
from sprig.core.types import Hit, SparseVec

__all__ = ["Hit", "SparseVec"]
__version__ = "0.1.0"
