"""Tokenizers behind one small interface: encode, decode, stream_decoder, token_text, save,
vocab_size.

Three levels: char (chars.py), word (words.py) and bpe (bpe.py). At every level id 0 is the
unknown token, which stands for anything the training text did not contain and is never
generated. `load_tokenizer` reads any of them from a run's tokenizer.json. No PyTorch here.
"""

from __future__ import annotations

import json
from pathlib import Path

from lstmgen.errors import LstmgenError
from lstmgen.tokens.bpe import BpeTokenizer
from lstmgen.tokens.chars import TOKENIZER_FORMAT, UNKNOWN_ID, CharCounter, CharTokenizer
from lstmgen.tokens.conditions import ConditionedTokenizer, Conditions
from lstmgen.tokens.words import WORD_FORMAT, WordCounter, WordTokenizer

__all__ = [
    "UNKNOWN_ID",
    "BpeTokenizer",
    "CharCounter",
    "CharTokenizer",
    "ConditionedTokenizer",
    "Conditions",
    "WordCounter",
    "WordTokenizer",
    "load_tokenizer",
]


def load_tokenizer(path: str | Path):
    """Read a tokenizer.json written by save(); a damaged or unknown file is a clear error."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LstmgenError(f"{path} is missing; the run directory is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LstmgenError(f"{path} is damaged (not valid JSON); restore it or retrain") from None
    level = data.get("level", data.get("kind"))
    if data.get("format", 0) > (WORD_FORMAT if level == "word" else TOKENIZER_FORMAT):
        raise LstmgenError(
            f"{path} was written by a newer lstmgen (format {data['format']}); "
            "upgrade lstmgen to read it"
        )
    if level == "char":
        inner = CharTokenizer(data["chars"])
    elif level == "word":
        inner = WordTokenizer.from_saved(data)
    elif level == "bpe":
        inner = BpeTokenizer.from_saved(data)
    else:
        inner = None
    if inner is not None:
        if "conditions" in data:  # control tokens: a run trained with --condition-column
            return ConditionedTokenizer(inner, Conditions.from_json(data["conditions"]))
        return inner
    raise LstmgenError(
        f"{path} holds a {level!r} tokenizer, which this lstmgen cannot read; upgrade lstmgen"
    )
