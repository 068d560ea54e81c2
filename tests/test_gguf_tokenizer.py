"""A GGUF tokenizer converted character by character (transformers 5.17 with Gemma 3) is refused, not used."""
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from sprig.core.errors import SprigError
from sprig.core.models import default_splade
from sprig.encoders.causal_lm import PROBE, check_subword


def character_tokenizer() -> PreTrainedTokenizerFast:
    """BPE with every character of the probe in its vocabulary and no merges: what the broken conversion gives."""
    chars = sorted(set(PROBE.replace(" ", "▁")))
    bpe = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(chars)}, merges=[]))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=bpe)


def test_a_character_level_tokenizer_is_refused_with_the_source_named():
    tok = character_tokenizer()
    assert len(tok.tokenize(PROBE)) > 3 * len(PROBE.split())  # the failure mode is real in this object
    with pytest.raises(SprigError, match=r"model\.gguf.*splits text into characters"):
        check_subword(tok, "/models/model.gguf")


def test_a_subword_tokenizer_passes():
    check_subword(AutoTokenizer.from_pretrained(default_splade()), "SPLADE-tiny")
