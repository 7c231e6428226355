"""The language model: Embedding → dropout → LSTM/GRU stack → dropout → Linear.

A conditioned model (a rating, an author per document) joins an embedding of each condition
column's value to the token's embedding at every input position (Lipton, Vikram & McAuley
2015), so the condition reaches every step however long the document.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from lstmgen.config import ModelConfig

# (h, c) for LSTM, h for GRU; each (L, B, H)
State = tuple[torch.Tensor, torch.Tensor] | torch.Tensor


class LSTMLanguageModel(nn.Module):
    """Predicts the next token at every position; the recurrent state is passed in and out."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embedding)
        self.condition_embeds = nn.ModuleList(
            nn.Embedding(values, config.condition_embedding) for values in config.conditions
        )
        self.drop = nn.Dropout(config.dropout)
        rnn_class = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = rnn_class(
            config.input_size,
            config.hidden,
            config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden, config.vocab_size)
        # AR + TAR of the last training forward, taken by objective()
        self.penalty: torch.Tensor | None = None
        if config.tie_weights:
            self.head.weight = self.embed.weight
        self._init_weights()
        self.embed.weight.requires_grad_(not config.freeze_embeddings)

    @torch.no_grad()
    def set_embeddings(self, vectors: torch.Tensor) -> None:
        """Start from these input embeddings (V, E), e.g. pretrained word vectors."""
        self.embed.weight.copy_(vectors)

    def _init_weights(self) -> None:
        nn.init.normal_(
            self.embed.weight,
            std=0.1 if not self.config.tie_weights else 1 / self.config.hidden**0.5,
        )
        for table in self.condition_embeds:
            nn.init.normal_(table.weight, std=0.1)
        if self.config.cell == "lstm":
            # A forget-gate bias of 1 lets gradients flow through long spans from the first step.
            hidden = self.config.hidden
            for name, param in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        param[hidden : 2 * hidden].fill_(1.0)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        state: State | None = None,
        targets: torch.Tensor | None = None,
        conditions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        """idx (B, T) token ids → logits (B, T, V), mean cross-entropy given targets, new state.

        A conditioned model takes each position's condition numbers, conditions (B, T, C), or
        one set per stream for all its positions, (B, C).
        """
        x = self._dropout(self._inputs(idx, conditions))  # (B, T, E + C·E_c)
        out, state = self._rnn(x, state)  # (B, T, H)
        dropped = self._dropout(out)
        logits = self.head(dropped)  # (B, T, V)
        self.penalty = self._activation_penalty(out, dropped) if self.training else None
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss, state

    def objective(self, loss: torch.Tensor) -> torch.Tensor:
        """What training minimises: the loss of the last forward plus its AR/TAR penalty
        (taken, not kept)."""
        penalty, self.penalty = self.penalty, None
        return loss if penalty is None else loss + penalty

    def _activation_penalty(self, out: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor | None:
        """AWD-LSTM's activation regularisation (AR, on the dropped-out outputs) and temporal
        activation regularisation (TAR, on the outputs' change from step to step), or None
        when both are 0."""
        c = self.config
        if not (c.activation_reg or c.temporal_reg):
            return None
        penalty = out.new_zeros(())
        if c.activation_reg:
            penalty = penalty + c.activation_reg * dropped.float().pow(2).mean()
        if c.temporal_reg and out.size(1) > 1:
            penalty = (
                penalty + c.temporal_reg * (out[:, 1:].float() - out[:, :-1].float()).pow(2).mean()
            )
        return penalty

    def _inputs(self, idx: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        """The first layer's input (B, T, input_size): the tokens' embeddings, then each
        condition column's."""
        x = self._embed(idx)  # (B, T, E)
        if not self.condition_embeds:
            return x
        if conditions is None:
            raise ValueError("a conditioned model needs the conditions of its inputs")
        if conditions.dim() == 2:  # (B, C): the same for every position of a stream
            conditions = conditions[:, None].expand(-1, idx.size(1), -1)
        joined = [x] + [table(conditions[..., k]) for k, table in enumerate(self.condition_embeds)]
        return torch.cat(joined, dim=-1)

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        p = self.config.embed_dropout
        if not (self.training and p):
            return self.embed(idx)
        keep = torch.empty(self.embed.weight.size(0), 1, device=idx.device).bernoulli_(1 - p) / (
            1 - p
        )
        return F.embedding(idx, self.embed.weight * keep)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Standard dropout, or with locked_dropout one mask per sequence shared by all steps."""
        p = self.config.dropout
        if not (self.config.locked_dropout and self.training and p):
            return self.drop(x)
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)  # (B, 1, features)
        return x * mask

    def _rnn(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """The recurrent stack; with weight_drop the fused kernel gets masked hidden-to-hidden
        matrices."""
        p = self.config.weight_drop
        if not (self.training and p):
            return self.rnn(x, state)
        rnn = self.rnn
        weights = [
            F.dropout(w, p) if name.startswith("weight_hh") else w
            for name, w in zip(rnn._flat_weights_names, rnn._flat_weights, strict=True)
        ]
        if state is None:
            zeros = x.new_zeros(rnn.num_layers, x.size(0), rnn.hidden_size)
            state = (zeros, zeros)
        out, h, c = torch._VF.lstm(
            x, state, weights, True, rnn.num_layers, rnn.dropout, True, False, True
        )
        return out, (h, c)

    @torch.no_grad()
    def step(
        self, token: torch.Tensor, state: State | None, conditions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """One token per stream, O(1): token (B,) and its conditions (B, C) → next-token logits
        (B, V), new state."""
        out, state = self.rnn(self._inputs(token[:, None], conditions), state)  # (B, 1, H)
        return self.head(out[:, 0]), state


def detach_state(state: State | None) -> State | None:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()
