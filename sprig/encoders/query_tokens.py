"""Query text to token ids at the cost of BM25's analyzer: all of an inference-free query's encoding.

An inference-free query is its token ids, each weighted by a table lookup (Geng et al. 2024), so tokenising is the
whole of its encoding. Through transformers, ``tokenizer([text], add_special_tokens=False, truncation=True)`` took
60 us per scifact query, where BM25's analyzer takes 6 us (docs/benchmarks/inference-free.md): transformers sets
padding and truncation up on every call and wraps the result, and the Rust tokenizer under it spends 10 us
normalising and 14 us pre-tokenising a 90-character query. ``QueryTokenizer`` gives the same ids with two changes:

- it calls a private copy of the Rust tokenizer, set up once as transformers sets it per call (no padding,
  truncation to ``model_max_length`` on the tokenizer's side);
- where a space always ends a token and every step before the subword model works character by character
  (``BertNormalizer`` or none, then ``BertPreTokenizer``, ``Whitespace`` or ``WhitespaceSplit``, and no added token
  holding a space: BERT's and DistilBERT's tokenizers, those of SPLADE-tiny and of OpenSearch's inference-free
  models), a text's ids are the concatenation of its space-separated pieces' ids, so each piece's ids are memoised in
  an LRU of ``cache`` pieces, as BM25's Porter stemmer (PyStemmer) memoises its latest 10,000 words. A piece seen
  before then costs a dictionary lookup; a new one, one Rust call of its own. Other tokenizers encode whole texts.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

MAX_LENGTH = 2**31 - 1  # transformers' "no limit" model_max_length is 1e30, past what the Rust tokenizer takes


def splits_on_spaces(fast) -> bool:
    """Whether ``fast`` (a tokenizers.Tokenizer) gives any text the concatenation of its space-separated pieces' ids."""
    from tokenizers import normalizers, pre_tokenizers

    return (fast.normalizer is None or isinstance(fast.normalizer, normalizers.BertNormalizer)) \
        and isinstance(fast.pre_tokenizer, (pre_tokenizers.BertPreTokenizer, pre_tokenizers.Whitespace, pre_tokenizers.WhitespaceSplit)) \
        and not any(" " in token.content for token in fast.get_added_tokens_decoder().values())


class QueryTokenizer:
    """``tokenizer(texts, add_special_tokens=False, truncation=True)["input_ids"]``, faster (module docstring).
    A tokenizer with no Rust backend goes through transformers as it is."""

    def __init__(self, tokenizer, cache: int = 16384):
        self.tokenizer, self.fast, self.piece = tokenizer, None, None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            return
        from tokenizers import Tokenizer

        self.max_length, self.left = min(int(tokenizer.model_max_length), MAX_LENGTH), tokenizer.truncation_side == "left"
        self.fast = Tokenizer.from_str(backend.to_str())
        self.fast.no_padding()
        self.fast.enable_truncation(self.max_length, direction=tokenizer.truncation_side)
        if cache and splits_on_spaces(self.fast):
            self.piece = lru_cache(maxsize=cache)(self._encode)

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.fast.encode(text, add_special_tokens=False).ids)

    def _pieces(self, text: str) -> list[int]:
        """A text's ids from its pieces' (a piece truncated alone loses only ids the whole text's truncation drops)."""
        ids = [i for piece in text.split(" ") for i in self.piece(piece)]
        if len(ids) <= self.max_length:
            return ids
        return ids[-self.max_length:] if self.left else ids[:self.max_length]

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        if self.fast is None:
            return self.tokenizer(list(texts), add_special_tokens=False, truncation=True)["input_ids"]
        if self.piece is not None:
            return [self._pieces(text) for text in texts]
        return [e.ids for e in self.fast.encode_batch(list(texts), add_special_tokens=False)]
