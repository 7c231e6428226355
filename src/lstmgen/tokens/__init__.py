"""Tokenizers behind one small interface: encode, decode, stream_decoder, token_text, save,
vocab_size.

Three levels: char (chars.py), word (words.py) and bpe (bpe.py). At every level id 0 is the
unknown token, which stands for anything the training text did not contain and is never
generated. `load_tokenizer` reads any of them from a run's tokenizer.json. No PyTorch here.
"""

from __future__ import annotations

from pathlib import Path

from lstmgen.errors import LstmgenError
from lstmgen.files import read_json
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
    fix = "restore it or retrain"
    try:
        data = read_json(path, fix=fix)
    except FileNotFoundError:
        raise LstmgenError(f"{path} is missing; the run directory is incomplete") from None
    if not isinstance(data, dict):
        raise LstmgenError(f"{path} is not an lstmgen tokenizer (not a JSON object); {fix}")
    level = data.get("level", data.get("kind"))
    version = data.get("format", 0)
    if not isinstance(version, int):
        raise LstmgenError(f"{path} has an unreadable format version; {fix}")
    if version > (WORD_FORMAT if level == "word" else TOKENIZER_FORMAT):
        raise LstmgenError(
            f"{path} was written by a newer lstmgen (format {data['format']}); "
            "upgrade lstmgen to read it"
        )
    if level not in ("char", "word", "bpe"):
        raise LstmgenError(
            f"{path} holds a {level!r} tokenizer, which this lstmgen cannot read; upgrade lstmgen"
        )
    try:
        if level == "char":
            inner = CharTokenizer(data["chars"])
        elif level == "word":
            inner = WordTokenizer.from_saved(data)
        else:
            inner = _bpe(data)
        if "conditions" in data:  # control tokens: a run trained with --condition-column
            return ConditionedTokenizer(inner, Conditions.from_json(data["conditions"]))
        return inner
    except LstmgenError as e:
        raise LstmgenError(f"{path}: {e}") from None
    except KeyError as e:
        raise LstmgenError(f"{path} is damaged (it lacks {e}); {fix}") from None
    except (TypeError, ValueError, AttributeError, IndexError, OverflowError) as e:
        why = " ".join(str(e).split())[:160] or type(e).__name__
        raise LstmgenError(f"{path} is damaged ({why}); {fix}") from None


def _bpe(data: dict) -> BpeTokenizer:
    """A BPE tokenizer from its saved form; the HF parser's errors are all plain Exception."""
    try:
        return BpeTokenizer.from_saved(data)
    except (KeyError, TypeError):
        raise
    except Exception as e:
        raise ValueError(str(e)) from None
