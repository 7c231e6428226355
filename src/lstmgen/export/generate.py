"""Text from an exported graph in onnxruntime, drawn as `lstmgen generate` draws it.

The same prime ids, banned tokens, BPE byte rules, logit filters and per-sample random streams
(PCG64 seeded [seed, i]) as the PyTorch sampler, so greedy text is the same text and seeded
text differs only where the two runtimes' logits round differently.
"""

from __future__ import annotations

import numpy as np

from lstmgen.config import SampleConfig, random_seed
from lstmgen.export.onnx import OnnxModel
from lstmgen.inference import Model
from lstmgen.sampling.sampler import adjust_logits, choose


def onnx_samples(graph: OnnxModel, model: Model, prime: str = "", **settings) -> list[str]:
    """num_samples texts of `length` tokens after the prime, made as one batch by the graph."""
    config = SampleConfig(**settings)
    seed = config.seed if config.seed is not None else random_seed()
    n = config.num_samples
    conditions = model.condition_rows(config.condition, n, seed)
    prime_ids = model.prime_ids(prime, quiet=True).numpy()
    logits, state = graph.run(np.tile(prime_ids, (n, 1)), graph.zero_state(n), conditions)
    logits = logits[:, -1]
    tokenizer = model.tokenizer
    context = tokenizer.encode(prime).tolist() if prime else []
    decoders = [tokenizer.stream_decoder(context) for _ in range(n)]
    generators = [np.random.Generator(np.random.PCG64([seed, i])) for i in range(n)]
    rules = getattr(tokenizer, "rules", None)
    rule_state = np.zeros(n, np.int64)
    texts = [[] for _ in range(n)]
    for _ in range(config.length):
        row_banned = rules.banned[rule_state] if rules is not None else None
        adjusted = adjust_logits(logits, config, None, model.banned, row_banned)
        ids = choose(adjusted, config, np.array([g.random() for g in generators]))
        if rules is not None:
            rule_state = rules.next[rule_state, ids]
        for i, token in enumerate(ids.tolist()):
            texts[i].append(decoders[i].feed(token))
        out, state = graph.run(ids[:, None], state, conditions)
        logits = out[:, -1]
    pairs = zip(texts, decoders, strict=True)
    return ["".join(pieces) + decoder.flush() for pieces, decoder in pairs]


def onnx_bits_per_char(
    graph: OnnxModel, ids: np.ndarray, characters: int, chunk: int = 512
) -> float:
    """Bits per character of a token sequence under the graph: one stream, state carried from
    chunk to chunk, every token after the first predicted (fp32 and int8 compared alike)."""
    ids = np.asarray(ids, dtype=np.int64)
    state, nats = graph.zero_state(1), 0.0
    for start in range(0, len(ids) - 1, chunk):
        inputs = ids[start : start + chunk]
        targets = ids[start + 1 : start + chunk + 1]
        logits, state = graph.run(inputs[None], state)
        logits = logits[0, : len(targets)].astype(np.float64)  # (T, V)
        top = logits.max(axis=-1, keepdims=True)
        log_z = top[:, 0] + np.log(np.exp(logits - top).sum(axis=-1))
        nats += float((log_z - logits[np.arange(len(targets)), targets]).sum())
    return nats / characters / np.log(2)
