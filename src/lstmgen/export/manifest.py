"""lstmgen-model.json: what a program needs beside model.onnx to use it without lstmgen.

The level and vocabulary (each id's text at the char and word levels; tokenizer.json beside it
has the full tokenizer, BPE merges included), the ids a generation starts from, the tokens never
drawn, the condition columns, the graph's inputs and outputs, the sampling defaults and the
held-out bits/char.
"""

from __future__ import annotations

from lstmgen.config import SampleConfig
from lstmgen.export.onnx import input_names, output_names
from lstmgen.inference import Model

MANIFEST_FORMAT = 1


def token_texts(model: Model) -> list[str] | None:
    """Each id's text (the char and word levels; None for BPE, whose tokens are bytes)."""
    tokenizer = getattr(model.tokenizer, "inner", model.tokenizer)
    if tokenizer.kind == "bpe":
        return None
    texts = [tokenizer.token_text(i) for i in range(tokenizer.vocab_size)]
    if model.conditions is not None:
        texts[model.tokenizer.document_id] = ""  # the document mark prints nothing
    return texts


def manifest(model: Model, described: dict, *, checkpoint: str, quantize: str) -> dict:
    """The contents of lstmgen-model.json for a loaded run."""
    module, tokenizer = model.module, model.tokenizer
    inner = getattr(tokenizer, "inner", tokenizer)
    defaults = SampleConfig()
    conditions = None
    if model.conditions is not None:
        conditions = {
            "separator": model.conditions.separator,
            "document_id": tokenizer.document_id,
            "columns": [
                {"name": c.name, "values": list(c.values), "prior": list(c.prior)}
                for c in model.conditions.columns
            ],
        }
    return {
        "format": MANIFEST_FORMAT,
        "level": inner.kind,
        "word_format": getattr(inner, "format", None) if inner.kind == "word" else None,
        "checkpoint": checkpoint,
        "quantize": quantize,
        "cell": module.config.cell,
        "layers": module.config.layers,
        "hidden": module.config.hidden,
        "vocab_size": tokenizer.vocab_size,
        "inputs": input_names(module),
        "outputs": output_names(module),
        "unknown_id": tokenizer.unknown_id,
        "banned": [int(i) for i in model.banned],
        # no prime: the ids a generation starts from (a conditioned model: a document's start)
        "start_ids": model.prime_ids("", quiet=True).tolist(),
        "conditions": conditions,
        "tokens": token_texts(model),
        # BPE: each id's bytes (hex), for decoding without the tokenizers library
        "token_bytes": [piece.hex() for piece in inner.token_bytes]
        if inner.kind == "bpe"
        else None,
        "sampling": {
            "temperature": defaults.temperature,
            "top_k": defaults.top_k,
            "top_p": defaults.top_p,
            "length": defaults.length,
        },
        "held_out_bits_per_char": described.get("best_val_bits_per_char")
        if checkpoint == "best"
        else described.get("last_val_bits_per_char"),
    }
