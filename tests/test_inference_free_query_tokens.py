"""QueryTokenizer gives the ids of transformers' ``tokenizer(texts, add_special_tokens=False, truncation=True)``,
with its memoised pieces cold or warm, and leaves tokenizers where spaces belong to tokens to whole-text encoding."""
from __future__ import annotations

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from sprig.core.models import default_splade
from sprig.encoders.query_tokens import QueryTokenizer

TRICKY = [
    "Does coffee prevent type 2 diabetes?", "Café  naïve\tRÉSUMÉ\nΣίσυφος ΟΔΟΣ", "中文字符 and 日本語テキスト",
    "a\x1cb c\x00d e\u200bf g\u00a0h", "[MASK] is [CLS]x[SEP] ", " leading and trailing  ", "e\u0301 \u0301e", "", " ",
    "U.S.A. don't (p<0.05) α-synuclein 5'-UTR", "\u3000full\u3000width\u2028line",
    "x" * 300, "antidisestablishmentarianism " * 40,  # a piece past WordPiece's 100 characters; a text past the limit
]


def reference(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, truncation=True)["input_ids"]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("cache", [16384, 2, 0])
def test_ids_equal_transformers_cold_and_warm(cache, side):
    tokenizer = AutoTokenizer.from_pretrained(default_splade(), model_max_length=24, truncation_side=side)
    tokens = QueryTokenizer(tokenizer, cache)
    assert (tokens.piece is not None) == bool(cache)  # SPLADE-tiny's BERT tokenizer splits on spaces
    want = reference(tokenizer, TRICKY)
    assert max(map(len, want)) == 24  # truncation is exercised
    assert tokens(TRICKY) == want
    assert [tokens([text])[0] for text in TRICKY] == want  # pieces now memoised (or evicted, with cache=2)


def test_a_tokenizer_whose_tokens_hold_spaces_encodes_whole_texts():
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({"hello": 0, "\u0120world": 1, "world": 2, "[UNK]": 3}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # " world" is one token, "world" another
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", model_max_length=512)
    tokens = QueryTokenizer(tokenizer)
    assert tokens.piece is None
    assert tokens(["hello world", "world"]) == reference(tokenizer, ["hello world", "world"]) == [[0, 1], [2]]


def test_a_tokenizer_without_a_rust_backend_goes_through_transformers():
    class PythonTokenizer:  # no backend_tokenizer: called as transformers calls any tokenizer
        def __call__(self, texts, add_special_tokens, truncation):
            assert add_special_tokens is False and truncation is True
            return {"input_ids": [[len(text)] for text in texts]}

    assert QueryTokenizer(PythonTokenizer())(["ab", "c"]) == [[2], [1]]
