"""sprig: learned-sparse retrieval and RAG.

Data flow: corpus (indexer.readers) -> passages (indexer.chunking) -> vectors (retriever.encoders)
-> index (indexer) -> candidates (retriever) -> context (rag.compress) -> answer (rag).
"""
from sprig.types import Hit, SparseVec

__all__ = ["Hit", "SparseVec"]
__version__ = "0.1.0"
