"""Fine-tuning (--init-from BASE): a new run that starts from a base run's weights,
architecture and vocabulary, and adapts them to a (small) new corpus.

The vocabulary is the base's, extended with the new text's characters or words (data/levels.py
`extended`), so the base's ids keep their rows; the new rows start from the mean of the
base's. The base run is only read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lstmgen.checkpoint import check_weights, load_weights
from lstmgen.config import ModelConfig, RunConfig
from lstmgen.config.options import flag_of
from lstmgen.errors import LstmgenError
from lstmgen.files import read_progress
from lstmgen.model import LSTMLanguageModel
from lstmgen.tokens import load_tokenizer

# What fixes the weights' shapes: a fine-tuned model keeps its base's.
ARCHITECTURE = ("embedding", "hidden", "layers", "cell", "tie_weights")
# 60-s fine-tunes of a 10-minute base on 50 KB of Shakespeare (BENCHMARKS.md): lr 3e-3 scored
# 2.592 bits/char held out, 1e-3 2.610, 1e-2 2.628 (scratch: 3.132). A short warm-up: the
# weights are trained already (20 steps; not swept).
FINE_TUNE_LR = 3e-3
FINE_TUNE_WARMUP_STEPS = 20
# The rows of the embedding and output layer, indexed by token id.
VOCABULARY_ROWS = ("embed.weight", "head.weight", "head.bias")


@dataclass
class Base:
    """The run a fine-tune starts from: its config, tokenizer and the weights chosen."""

    run: Path
    checkpoint: str  # "best" or "latest"
    config: RunConfig
    tokenizer: object
    weights: Path
    step: int

    def record(self, vocab_size: int) -> dict:
        """What `info` shows of the lineage: the base run, its corpus and its steps."""
        corpus = self.config.corpus
        return {
            "run": str(self.run),
            "checkpoint": self.checkpoint,
            "step": self.step,
            "sources": corpus.get("sources"),
            "characters": corpus.get("characters"),
            "vocab_size": self.config.model.vocab_size,
            "added_tokens": vocab_size - self.config.model.vocab_size,
        }


def open_base(spec: str) -> Base:
    """The base run named by --init-from: RUN (its best checkpoint) or RUN:latest / RUN:best."""
    path, checkpoint = spec, "best"
    for name in ("best", "latest"):
        if spec.endswith(":" + name):
            path, checkpoint = spec[: -len(name) - 1], name
    run = Path(path)
    if not run.is_dir() or not (run / "config.json").is_file():
        raise LstmgenError(
            f"--init-from {spec}: {run} is not a trained run; train the base first with: "
            f"lstmgen train TEXT --out {run}"
        )
    config = RunConfig.read(run)
    tokenizer = load_tokenizer(run / "tokenizer.json")
    weights = run / "best" / "model.safetensors"
    if checkpoint == "latest" or not weights.is_file():
        weights = run / "model.safetensors"
    if not weights.is_file():
        raise LstmgenError(f"--init-from {spec}: {run} has no saved weights yet (train it first)")
    check_weights(config.model, weights, config_name=str(run / "config.json"))
    step = int(read_progress(weights).get("step", 0))
    return Base(run, checkpoint, config, tokenizer, weights, step)


def fine_tune_config(config: RunConfig, base: Base) -> RunConfig:
    """The new run's config: the base's architecture and level; fine-tuning lr and warm-up
    unless given. Options that would change the architecture are refused."""
    changed = [
        name
        for name in ARCHITECTURE
        if name in config.given and getattr(config.model, name) != getattr(base.config.model, name)
    ]
    if changed:
        name = changed[0]
        raise LstmgenError(
            f"{flag_of(name)} {getattr(config.model, name)} would change the architecture of "
            f"--init-from {base.run} ({name} {getattr(base.config.model, name)}); drop it"
        )
    if "level" in config.given and config.data.level != base.config.level:
        raise LstmgenError(
            f"--level {config.data.level} differs from --init-from {base.run}, a "
            f"{base.config.level}-level model; drop --level"
        )
    if config.train.embeddings:
        raise LstmgenError("--embeddings cannot start a fine-tune: the base's embeddings do")
    base_conditioned = bool(base.config.model.conditions)
    if config.data.conditions and not base_conditioned and base.config.level == "bpe":
        raise LstmgenError(
            f"--init-from {base.run} is a BPE model, whose tokenizer has no room for the "
            "document mark of conditions; drop --condition-column (or fine-tune a char or "
            "word model)"
        )
    shape = ARCHITECTURE + (("condition_embedding",) if base_conditioned else ())
    model = replace(config.model, **{name: getattr(base.config.model, name) for name in shape})
    train = config.train
    if "lr" not in config.given:
        train = replace(train, lr=FINE_TUNE_LR)
    if "warmup_steps" not in config.given:
        train = replace(train, warmup_steps=FINE_TUNE_WARMUP_STEPS)
    data = replace(config.data, level=base.config.level)
    return replace(config, model=model, train=train, data=data, level=base.config.level)


def initial_weights(base: Base, model: ModelConfig) -> dict[str, torch.Tensor]:
    """The base's weights for the new run's model: the vocabulary rows extended with the mean
    row; where the new run adds conditions, zero input columns for them and fresh condition
    embeddings, so that step 0 computes what the base computed (Lipton et al.'s "weight
    transplantation")."""
    module = LSTMLanguageModel(base.config.model)
    load_weights(module, base.weights)
    state = module.state_dict()
    added = model.vocab_size - base.config.model.vocab_size
    for name in VOCABULARY_ROWS:
        rows = state[name]  # (V_base, ...)
        state[name] = torch.cat([rows, rows.mean(0, keepdim=True).expand(added, *rows.shape[1:])])
    weight = state["rnn.weight_ih_l0"]  # (gates·H, the base's inputs)
    extra = model.input_size - weight.shape[1]
    if extra > 0:
        state["rnn.weight_ih_l0"] = torch.cat([weight, weight.new_zeros(len(weight), extra)], 1)
        # seeded on its own: the run's random streams stay as they would be without it
        generator = torch.Generator().manual_seed(0)
        for k, values in enumerate(model.conditions):
            table = torch.randn(values, model.condition_embedding, generator=generator) * 0.1
            state[f"condition_embeds.{k}.weight"] = table
    return state
