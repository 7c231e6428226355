"""Sampling from a trained model: temperature, top-k, top-p, many samples as one batch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from .errors import LstmgenError
from .model import LSTMLanguageModel, State
from .tokenizers import UNKNOWN_ID


@dataclass
class SampleConfig:
    length: int = 500  # tokens (characters) to generate per sample
    temperature: float = 0.8  # 0 = always the most likely token; higher = more surprising
    top_k: int | None = None  # sample only among the k most likely tokens
    top_p: float | None = None  # sample only from the smallest set holding this much probability
    seed: int | None = None  # same seed and settings, same text
    num_samples: int = 1

    def __post_init__(self) -> None:
        if self.length < 0:
            raise LstmgenError(f"--length {self.length} must be 0 or more")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise LstmgenError(f"--temperature {self.temperature} must be 0 (greedy) or more")
        if self.top_k is not None and self.top_k < 1:
            raise LstmgenError(f"--top-k {self.top_k} must be at least 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise LstmgenError(f"--top-p {self.top_p} must be in (0, 1], e.g. 0.9")
        if self.num_samples < 1:
            raise LstmgenError(f"--num-samples {self.num_samples} must be at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


def filter_logits(logits: torch.Tensor, config: SampleConfig) -> torch.Tensor:
    """Apply the unknown-token ban, temperature, top-k and top-p to logits (B, V)."""
    logits = logits.float().clone()
    logits[:, UNKNOWN_ID] = float("-inf")  # the unknown token is never generated
    if config.temperature > 0:
        logits = logits / config.temperature
    if config.top_k is not None and config.top_k < logits.size(-1):
        kth = torch.topk(logits, config.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if config.top_p is not None and config.top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # Drop a token when the tokens before it already hold top_p; the first one always stays.
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= config.top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def choose(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator) -> torch.Tensor:
    """Pick the next token for each stream: logits (B, V) → ids (B,)."""
    logits = filter_logits(logits, config)
    if config.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@torch.no_grad()
def prime_state(model: LSTMLanguageModel, prime_ids: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, State]:
    """Run the prime (T,) through the model in chunks; return last logits (1, V) and the state."""
    state = None
    logits = None
    for start in range(0, len(prime_ids), chunk):
        piece = prime_ids[start : start + chunk][None]  # (1, t)
        out, _, state = model(piece, state)
        logits = out[:, -1]
    assert logits is not None
    return logits, state


def expand_state(state: State, n: int) -> State:
    """Copy one primed state (L, 1, H) to n streams (L, n, H)."""
    if isinstance(state, tuple):
        return tuple(s.expand(-1, n, -1).contiguous() for s in state)  # type: ignore[return-value]
    return state.expand(-1, n, -1).contiguous()


@torch.no_grad()
def sample_ids(
    model: LSTMLanguageModel, prime_ids: torch.Tensor, config: SampleConfig
) -> Iterator[torch.Tensor]:
    """Yield the next token of every sample, (num_samples,) per step; each step is one forward call."""
    model.eval()
    generator = torch.Generator(device="cpu")
    if config.seed is not None:
        generator.manual_seed(config.seed)
    else:
        generator.seed()
    device = next(model.parameters()).device
    logits, state = prime_state(model, prime_ids.to(device))
    n = config.num_samples
    logits, state = logits.expand(n, -1), expand_state(state, n)
    for _ in range(config.length):
        token = choose(logits.cpu(), config, generator)  # sampling on CPU: same seed, same text on any device
        yield token
        logits, state = model.step(token.to(device), state)
