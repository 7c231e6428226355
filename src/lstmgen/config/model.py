"""Settings of the model: its size, cell, dropout and AWD-LSTM regularisers (ModelConfig)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lstmgen.config.options import MODEL, Section, flag_of, option
from lstmgen.errors import LstmgenError


@dataclass
class ModelConfig(Section):
    vocab_size: int = 0  # set from the tokenizer
    # Values of each condition column (set from the store): one embedding table per column.
    conditions: tuple[int, ...] = field(default_factory=tuple)
    # Joined to every input position; a few dimensions carry a rating or an author.
    condition_embedding: int = option(
        16, "Embedding size of each condition column's values (runs with conditions).", panel=MODEL
    )
    # A character needs few dimensions; the hidden state carries the context.
    embedding: int = option(64, "Embedding size.", panel=MODEL)
    # 2×256 beat 2×384 at a 600-s budget on 2 CPU cores (BENCHMARKS.md); --max-time sizes it.
    hidden: int = option(
        256,
        "Hidden units per layer.",
        panel=MODEL,
        default_text="256; with --max-time, sized to the budget unless given",
    )
    layers: int = option(2, "LSTM layers.", panel=MODEL)
    # Light: a 10-minute run underfits more than it overfits.
    dropout: float = option(0.1, "Dropout.", panel=MODEL)
    cell: str = option("lstm", "lstm or gru.", panel=MODEL)
    tie_weights: bool = option(
        False,
        "Share embedding and output weights.",
        panel=MODEL,
        flag="--tie-weights/--no-tie-weights",
    )
    # Pretrained word vectors stay as given.
    freeze_embeddings: bool = option(
        False, "Keep the --embeddings vectors fixed during training.", panel=MODEL
    )
    # AWD-LSTM regularisers (Merity et al. 2017). The dropouts stay off: they lost at 600 s.
    locked_dropout: bool = option(
        False,
        "One dropout mask per sequence (AWD-LSTM).",
        panel=MODEL,
        flag="--locked-dropout/--no-locked-dropout",
    )
    embed_dropout: float = option(0.0, "Drop whole embedding rows (AWD-LSTM).", panel=MODEL)
    weight_drop: float = option(
        0.0, "DropConnect on hidden-to-hidden weights (AWD-LSTM).", panel=MODEL
    )
    # AR and TAR are on: at 60 s they took tiny-shakespeare from 1.81 to 1.61 nats/char.
    activation_reg: float = option(
        2.0, "AR: penalise large LSTM outputs by this weight (AWD-LSTM uses 2).", panel=MODEL
    )
    temporal_reg: float = option(
        1.0, "TAR: penalise step-to-step change of the outputs (AWD-LSTM uses 1).", panel=MODEL
    )

    def __post_init__(self) -> None:
        self.conditions = tuple(int(n) for n in self.conditions)
        for name in ("embedding", "hidden", "layers", "condition_embedding"):
            if getattr(self, name) < 1:
                raise LstmgenError(f"--{name} must be at least 1 (got {getattr(self, name)})")
        for name in ("dropout", "embed_dropout", "weight_drop"):
            if not 0 <= getattr(self, name) < 1:
                raise LstmgenError(f"{flag_of(name)} {getattr(self, name)} must be in [0, 1)")
        for name in ("activation_reg", "temporal_reg"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise LstmgenError(f"{flag_of(name)} {value} must be a number of 0 or more")
        if self.weight_drop and self.cell != "lstm":
            raise LstmgenError("--weight-drop works with --cell lstm only")
        if self.cell not in ("lstm", "gru"):
            raise LstmgenError(f"--cell {self.cell!r} must be lstm or gru")
        if self.tie_weights and self.embedding != self.hidden:
            raise LstmgenError(
                "--tie-weights needs --embedding equal to --hidden "
                f"(got {self.embedding} and {self.hidden})"
            )
        if self.tie_weights and self.freeze_embeddings:
            raise LstmgenError(
                "--freeze-embeddings with --tie-weights would freeze the output "
                "layer too; drop one of them"
            )

    def parameter_count(self) -> int:
        """The model's number of parameters, from its shape alone (no PyTorch needed)."""
        gates = 4 if self.cell == "lstm" else 3
        rnn = sum(
            gates * self.hidden * (inputs + self.hidden + 2)
            for inputs in [self.input_size] + [self.hidden] * (self.layers - 1)
        )
        conditions = sum(self.conditions) * self.condition_embedding
        head = self.vocab_size + (0 if self.tie_weights else self.hidden * self.vocab_size)
        return self.vocab_size * self.embedding + conditions + rnn + head

    @property
    def input_size(self) -> int:
        """What the first layer reads at each step: the token's embedding and the conditions'."""
        return self.embedding + len(self.conditions) * self.condition_embedding


# Model settings added after runs already existed, with the value those runs trained with:
# a run written before AR/TAR became the default resumes (and reloads) without them.
ADDED_LATER = {
    "activation_reg": 0.0,
    "temporal_reg": 0.0,
    "conditions": (),
    "condition_embedding": 16,
}
