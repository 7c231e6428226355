"""Byte-level BPE through Hugging Face `tokenizers`: any text encodes, with no unknown token.

Id 0 is a reserved "<unk>" special token so that, as at the other levels, id 0 is never
generated; the encoder never produces it. The library's own JSON is kept inside our
tokenizer.json, so `tokenizers.Tokenizer.from_str(json.dumps(data["tokenizer"]))` reads it.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

UNKNOWN_TEXT = "<unk>"
MIN_VOCAB_SIZE = 257  # the 256 bytes and the reserved id 0


def _byte_of_char() -> dict[str, int]:
    """The byte-level alphabet: each of the 256 bytes is written as one printable character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


class BpeDecoder:
    """Streams token ids to text; bytes of a character split over tokens wait for the rest."""

    def __init__(self, token_bytes: list[bytes]):
        self.token_bytes = token_bytes
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        return self.utf8.decode(self.token_bytes[token_id])

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)


class BpeTokenizer:
    """Byte-level BPE (Hugging Face tokenizers) trained on the corpus."""

    kind = "bpe"
    unknown_id = 0
    unknown_text = UNKNOWN_TEXT

    def __init__(self, hf: Tokenizer):
        self.hf = hf
        byte_of = _byte_of_char()
        self.token_bytes = [b""] * hf.get_vocab_size()
        for piece, token_id in hf.get_vocab().items():
            if token_id != self.unknown_id:
                self.token_bytes[token_id] = bytes(byte_of[c] for c in piece)

    @classmethod
    def train(cls, texts: Iterable[str], *, vocab_size: int = 4096) -> BpeTokenizer:
        """Learn vocab_size - 1 byte-level pieces from texts (streamed: never all in memory)."""
        hf = Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[UNKNOWN_TEXT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def encode(self, text: str) -> np.ndarray:
        return np.array(self.hf.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def encode_many(self, texts: list[str]) -> Iterator[np.ndarray]:
        """Token ids of several texts (encoded in parallel by the library)."""
        for encoding in self.hf.encode_batch(texts, add_special_tokens=False):
            yield np.array(encoding.ids, dtype=np.int64)

    def unknown_words(self, text: str) -> list[str]:
        """Always empty: every text is made of the 256 bytes."""
        return []

    def decode(self, ids: Iterable[int]) -> str:
        return b"".join(self.token_bytes[int(i)] for i in ids).decode("utf-8", errors="replace")

    def stream_decoder(self, context: Iterable[int] = ()) -> BpeDecoder:
        return BpeDecoder(self.token_bytes)

    def token_text(self, token_id: int) -> str:
        return self.token_bytes[token_id].decode("utf-8", errors="replace") if token_id else UNKNOWN_TEXT

    def save(self, path: str | Path) -> None:
        data = {"format": 1, "kind": self.kind, "level": self.kind, "unknown_id": 0, "tokenizer": json.loads(self.hf.to_str())}
        Path(path).write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def from_saved(cls, data: dict) -> BpeTokenizer:
        return cls(Tokenizer.from_str(json.dumps(data["tokenizer"])))
