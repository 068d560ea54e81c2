from sprig.rag.compress.base import Compressed, Compressor, ContextBlock

__all__ = ["Compressed", "Compressor", "ContextBlock"]
