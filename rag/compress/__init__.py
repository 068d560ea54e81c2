from rag.compress.base import COMPRESS_MODES, CompressMode, Compressed, Compressor, ContextBlock

__all__ = ["COMPRESS_MODES", "CompressMode", "Compressed", "Compressor", "ContextBlock"]
