"""Settings of generation: length, temperature, top-k/p, penalty, stops (SampleConfig)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from lstmgen.config.options import SAMPLING, Section, option
from lstmgen.errors import LstmgenError

GREEDY_BELOW = 1e-3  # there a lead of 0.01 in the logits is already e^10 : 1 for the likeliest


@dataclass
class SampleConfig(Section):
    # A stop string may end a sample sooner.
    length: int = option(
        500, "Tokens (characters at char level) to generate per sample.", panel=SAMPLING
    )
    min_length: int = option(
        0, "No --stop string ends a sample before this many characters.", panel=SAMPLING
    )
    temperature: float = option(0.8, "0 = greedy; higher = more surprising.", panel=SAMPLING)
    top_k: int | None = option(
        help="Sample among the k most likely characters only.", panel=SAMPLING
    )
    top_p: float | None = option(
        help="Sample from the smallest set holding this probability (0, 1].", panel=SAMPLING
    )
    repetition_penalty: float = option(
        1.0, "Above 1 makes recently seen characters less likely.", panel=SAMPLING
    )
    repetition_window: int = option(
        64, "Recent characters the penalty looks at.", panel=SAMPLING
    )  # the prime included
    stop: list[str] = option(
        help="End a sample where this text appears (not printed); repeatable; \\n, \\t and \\\\ "
        "are a newline, a tab and a backslash.",
        panel=SAMPLING,
        factory=list,
        escapes=True,
    )
    condition: list[str] = option(
        help="Generate text of this condition: COLUMN=VALUE (or VALUE where the run has one "
        "condition column); repeatable. Columns not given are drawn from the training share.",
        panel=SAMPLING,
        factory=list,
    )
    max_copy: int | None = option(
        help="No sample holds a span of more than this many characters of the training text "
        "(the prime not counted); checked at each token against the run's copy index.",
        panel=SAMPLING,
    )
    seed: int | None = option(help="Same seed and settings, same text.", panel=SAMPLING)
    num_samples: int = option(
        1,
        "Samples to generate, stepped together in batches that fit in memory; printed one "
        "after another.",
        panel=SAMPLING,
    )

    @property
    def greedy(self) -> bool:
        """Always the likeliest token: temperature 0, or one so small that sampling is the same
        (below GREEDY_BELOW, dividing logits by it would overflow float32)."""
        return self.temperature < GREEDY_BELOW

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop)
        self.condition = _conditions(self.condition)
        if self.length < 0:
            raise LstmgenError(f"--length {self.length} must be 0 or more")
        if self.min_length < 0 or self.min_length > self.length:
            raise LstmgenError(
                f"--min-length {self.min_length} must be between 0 and --length ({self.length})"
            )
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise LstmgenError(f"--temperature {self.temperature} must be 0 (greedy) or more")
        if self.top_k is not None and self.top_k < 1:
            raise LstmgenError(f"--top-k {self.top_k} must be at least 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LstmgenError(f"--top-p {self.top_p} must be in (0, 1], e.g. 0.9")
        if not math.isfinite(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise LstmgenError(
                f"--repetition-penalty {self.repetition_penalty} must be above 0 (1 = off; try 1.2)"
            )
        if self.repetition_window < 1:
            raise LstmgenError(f"--repetition-window {self.repetition_window} must be at least 1")
        if any(not s for s in self.stop):
            raise LstmgenError("--stop needs a non-empty string, e.g. --stop '\\n\\n'")
        if self.max_copy is not None and self.max_copy < 1:
            raise LstmgenError(f"--max-copy {self.max_copy} must be at least 1, e.g. 40")
        if self.seed is not None and self.seed < 0:
            raise LstmgenError(f"--seed {self.seed} must be 0 or more")
        if self.num_samples < 1:
            raise LstmgenError(f"--num-samples {self.num_samples} must be at least 1")

    @classmethod
    def build(cls, settings: SampleConfig | dict | None = None, **more) -> SampleConfig:
        """A SampleConfig from one, a dict of its fields or keywords (unknown names refused)."""
        if isinstance(settings, SampleConfig):
            return replace(settings, **more) if more else settings
        given = {**(settings or {}), **more}
        unknown = set(given) - {f.name for f in fields(cls)}
        if unknown:
            raise LstmgenError(f"unknown sampling setting(s): {', '.join(sorted(unknown))}")
        return cls(**given)


def _conditions(given) -> list[str]:
    """Conditions as a list of 'COLUMN=VALUE' (or bare 'VALUE') texts, from one text, a list
    of them, or a {column: value} dict (the API's and the server's form)."""
    if not given:
        return []
    if isinstance(given, dict):
        return [f"{column}={value}" for column, value in given.items()]
    if isinstance(given, (str, int, float)):
        return [str(given)]
    return [str(value) for value in given]
