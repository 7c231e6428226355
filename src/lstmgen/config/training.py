"""Settings of training: batches, the lr schedule, how long, checkpoints (TrainConfig)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lstmgen.config.options import DEVICE, MODEL, TRAINING, Section, flag_of, option, parse_duration
from lstmgen.errors import LstmgenError

PRECISIONS = ("fp32", "bf16", "auto")


@dataclass
class TrainConfig(Section):
    # Small batches = more updates per second on a CPU (BENCHMARKS.md).
    batch_size: int = option(16, "Parallel streams per batch.", panel=TRAINING)
    # State carries longer context; 32 with lr 1e-2 beat 64 with 3e-3 at 60 s and 600 s.
    seq_len: int = option(32, "Back-propagation steps per batch.", panel=TRAINING)
    lr: float = option(1e-2, "Peak learning rate.", panel=TRAINING)  # of AdamW
    weight_decay: float = option(0.01, "AdamW weight decay (matrices only).", panel=TRAINING)
    warmup_steps: int = option(100, "Linear warm-up steps before the cosine decay.", panel=TRAINING)
    min_lr_fraction: float = option(0.1, "The decay ends at this fraction of --lr.", panel=TRAINING)
    grad_clip: float = option(1.0, "Clip the gradient norm to this.", panel=TRAINING)
    epochs: int | None = option(
        help="Total epochs of the run.",
        panel=TRAINING,
        default_text="10 when neither --max-time nor --max-steps is given",
    )
    max_time: str | None = option(
        help="Total training time of the run, e.g. 90s, 10m, 2h.", panel=TRAINING
    )
    max_steps: int | None = option(help="Total optimizer steps of the run.", panel=TRAINING)
    patience: int | None = option(
        help="Stop after this many evaluations without improvement.", panel=TRAINING
    )
    eval_every: str | None = option(
        help="Evaluate this often, e.g. 2m, and at each epoch's end.",
        panel=TRAINING,
        default_text="20 points per run, on part of the held-out text where the whole costs "
        "over 1/400 of the run each",
    )
    curve_tokens: int | None = option(
        help="Held-out tokens each curve point scores (a sample spread over the held-out text).",
        panel=TRAINING,
        default_text="what 1/400 of the run's time affords, at least 4,096",
    )
    save_every: str | None = option(
        "15m", "Also checkpoint this often within long epochs.", panel=TRAINING
    )
    sample_length: int = option(
        200, "Tokens (characters at char level) per sample shown after each epoch.", panel=TRAINING
    )
    # Four at once flooded the console of a small corpus's 1.5-s epochs (issue 26).
    samples: int = option(
        4,
        "Samples shown (and kept in samples.md) after an epoch, at temperatures 0.8, 0.5, "
        "1.0, 0.2 in that order; 0: none (the progress is still shown).",
        panel=TRAINING,
    )
    sample_every: str | None = option(
        "20s",
        "At most one epoch's samples this often; the epochs in between show none.",
        panel=TRAINING,
    )
    embeddings: str | None = option(
        help="Word vectors to start from (GloVe text, word2vec text or binary; --level word); "
        "the embedding size follows the file.",
        panel=MODEL,
    )
    init_from: str | None = option(
        help="Fine-tune: start from this run's weights, architecture and vocabulary "
        "(its best checkpoint; RUN:latest for its latest).",
        panel=MODEL,
    )
    # The range test lost to the default lr at 60 s (1.899 vs 1.802): off by default.
    lr_finder: bool = option(
        False,
        "Pick the peak learning rate by a short range test before training (instead of --lr).",
        panel=TRAINING,
    )
    tensorboard: bool = option(
        False,
        "Also write each evaluation as TensorBoard scalars in RUN/tensorboard.",
        panel=TRAINING,
    )
    # Polyak averaging of the weights over the run's tail (training/averaging.py).
    average: float = option(
        0.15,
        "Evaluate, save and generate from the weights averaged over about this last fraction "
        "of the run (0: the last step's weights).",
        panel=TRAINING,
    )
    average_start: float = option(
        0.5, "The weight average begins this far into the run.", panel=TRAINING
    )
    seed: int = option(1337, "Random seed.", panel=TRAINING)
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps.", panel=TRAINING)
    # bf16 halves the GPU's memory traffic; on CPUs it waits for a measurement (device.py).
    precision: str = option(
        "auto",
        "Training arithmetic: fp32, bf16 (autocast; an error where the device lacks it) or "
        "auto (bf16 on GPUs and CPUs that have it natively, fp32 elsewhere). Generation computes "
        "in fp32.",
        panel=TRAINING,
    )

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "sample_length"):
            if getattr(self, name) < 1:
                raise LstmgenError(
                    f"{flag_of(name)} must be at least 1 (got {getattr(self, name)})"
                )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise LstmgenError(f"--lr {self.lr} must be a number more than 0")
        if not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise LstmgenError(f"--grad-clip {self.grad_clip} must be more than 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise LstmgenError(f"--weight-decay {self.weight_decay} must be 0 or more")
        if not 0 <= self.min_lr_fraction <= 1:
            raise LstmgenError(f"--min-lr-fraction {self.min_lr_fraction} must be between 0 and 1")
        for name in ("average", "average_start"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 1):
                raise LstmgenError(f"{flag_of(name)} {value} must be between 0 and 1")
        if self.warmup_steps < 0:
            raise LstmgenError(f"--warmup-steps {self.warmup_steps} must be 0 or more")
        if not 0 <= self.seed < 2**63:
            raise LstmgenError(f"--seed {self.seed} must be between 0 and 2**63 - 1")
        for name in ("epochs", "max_steps", "curve_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise LstmgenError(f"{flag_of(name)} must be at least 1 (got {value})")
        if self.patience is not None and self.patience < 1:
            raise LstmgenError(f"--patience must be at least 1 (got {self.patience})")
        if not 0 <= self.samples <= 4:
            raise LstmgenError(f"--samples {self.samples} must be between 0 and 4")
        for name in ("max_time", "eval_every", "save_every", "sample_every"):
            try:
                parse_duration(getattr(self, name))  # fail early on a bad duration
            except LstmgenError as e:
                raise LstmgenError(f"{flag_of(name)}: {e}") from None
        if not DEVICE.fullmatch(self.device):
            raise LstmgenError(
                f"--device {self.device!r} is not a device; use auto, cpu, cuda, cuda:1 or mps"
            )
        if self.precision not in PRECISIONS:
            raise LstmgenError(
                f"--precision {self.precision!r} is not a precision; use fp32, bf16 or auto"
            )

    def to_dict(self) -> dict:
        """As saved in config.json; init_from only in a fine-tune's (older runs read the same)."""
        values = super().to_dict()
        if values["init_from"] is None:
            del values["init_from"]
        return values

    @property
    def max_time_s(self) -> float | None:
        return parse_duration(self.max_time)

    @property
    def eval_every_s(self) -> float | None:
        return parse_duration(self.eval_every)

    @property
    def save_every_s(self) -> float | None:
        return parse_duration(self.save_every)

    @property
    def sample_every_s(self) -> float | None:
        return parse_duration(self.sample_every)

    @property
    def effective_epochs(self) -> int | None:
        if self.epochs is None and self.max_time is None and self.max_steps is None:
            return 10
        return self.epochs


# Settings that a config.json written before they existed lacks, with the values those runs had.
TRAIN_ADDED_LATER = {"average": 0.0}

# How long a run goes on, how it is watched and where it runs: a run's own business, never
# taken from another run (--config) nor searched (tune).
HOW_LONG_AND_WHERE = {
    "epochs",
    "max_time",
    "max_steps",
    "patience",
    "eval_every",
    "curve_tokens",
    "tensorboard",
    "save_every",
    "samples",
    "sample_every",
    "device",
    "precision",
}
# What may change when a run is resumed: the above, and the peak learning rate (the way out
# of a run that keeps diverging).
RESUMABLE = HOW_LONG_AND_WHERE | {"lr"}
