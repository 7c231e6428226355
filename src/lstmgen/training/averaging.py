"""Weight averaging: the weights a run is evaluated, saved and used with are an average of its
last steps' weights, not the last step's alone (Polyak averaging, as in AWD-LSTM's averaged
SGD, Merity et al. 2017; SWA, Izmailov et al. 2018).

From `start` of the run on (a fraction of it, by steps or time as the run is paced), every
step's weights join the average with weight max(1/n, 1/horizon_steps): the plain mean of the
n steps so far, until n reaches the horizon, then an exponential moving average over about
`horizon` of the run. The arithmetic is torch.optim.swa_utils.AveragedModel's.

Each whole evaluation scores both the average and the last step's weights and goes on with the
better (early in a run that still learns fast, the average lags behind): that is what is
reported, what `model.safetensors` and `best/` hold and what samples are drawn from. Both sets
go in trainer_state.pt with the average's count, so a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel


class WeightAverage:
    """The running average of a model's weights over the tail of a run."""

    def __init__(self, model: torch.nn.Module, *, start: float, horizon: float):
        self.model, self.start, self.horizon = model, start, horizon
        self.horizon_steps = 1.0  # set at each update from the run's expected length
        self.averaged: AveragedModel | None = None  # made at the first step past start
        # whether the average is the better on the held-out text at the last whole evaluation
        # (early in a run still learning fast it lags behind the last step's weights)
        self.chosen = True

    @property
    def active(self) -> bool:
        return self.averaged is not None

    def _mix(self, averaged: list, current: list, n_averaged) -> None:
        weight = max(1.0 / (int(n_averaged) + 1), 1.0 / self.horizon_steps)
        torch._foreach_lerp_(averaged, current, weight)

    def _made(self) -> AveragedModel:
        averaged = AveragedModel(self.model, multi_avg_fn=self._mix, use_buffers=False)
        averaged.module.eval()  # it is only evaluated and saved, never trained
        for p in averaged.module.parameters():
            p.requires_grad_(False)
        return averaged

    def update(self, step: int, fraction_done: float) -> None:
        """After an optimizer step: fold the weights in, once the run is past `start`."""
        if self.horizon <= 0 or fraction_done < self.start:
            return
        if self.averaged is None:
            self.averaged = self._made()
        total_steps = step / max(fraction_done, 1e-9)  # the run's expected length, in steps
        self.horizon_steps = max(1.0, self.horizon * total_steps)
        self.averaged.update_parameters(self.model)

    def weights(self) -> torch.nn.Module:
        """The model to evaluate, save and sample: the average once it has begun, while it is
        the better of the two."""
        return self.averaged.module if self.averaged is not None and self.chosen else self.model

    def candidates(self) -> list[torch.nn.Module]:
        """What a whole evaluation scores: the average and the last step's weights (then
        `choose` the better), or the model alone before the average has begun."""
        return [self.averaged.module, self.model] if self.averaged is not None else [self.model]

    def choose(self, losses: list[float]) -> float:
        """Given the candidates' held-out losses, use the better; return its loss."""
        if len(losses) == 2:
            self.chosen = losses[0] <= losses[1]
        return min(losses)

    # ----- checkpoints --------------------------------------------------------------------
    def state(self) -> dict:
        """For trainer_state.pt (tensors only): the raw weights and the average's count."""
        if self.averaged is None:
            return {}

        def copy(module: torch.nn.Module) -> dict:
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

        return {
            "raw_weights": copy(self.model),
            "averaged_weights": copy(self.averaged.module),
            "n_averaged": self.averaged.n_averaged.cpu().clone(),
            "average_chosen": torch.tensor(self.chosen),
        }

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint's trainer state: the raw weights go back into the model,
        the averaged ones into the average."""
        if "raw_weights" not in state:  # saved before averaging began (or without it)
            return
        self.averaged = self._made()
        self.averaged.module.load_state_dict(state["averaged_weights"])
        self.averaged.n_averaged.copy_(state["n_averaged"])
        self.chosen = bool(state["average_chosen"])
        self.model.load_state_dict(state["raw_weights"])

    def snapshot(self) -> dict | None:
        """The average as it is now (to return to when training rolls back)."""
        if self.averaged is None:
            return None
        weights = {k: v.detach().clone() for k, v in self.averaged.module.state_dict().items()}
        return {"weights": weights, "n": self.averaged.n_averaged.clone(), "chosen": self.chosen}

    def roll_back(self, snapshot: dict | None) -> None:
        if snapshot is None:
            self.averaged = None
            return
        if self.averaged is None:
            self.averaged = self._made()
        self.averaged.module.load_state_dict(snapshot["weights"])
        self.averaged.n_averaged.copy_(snapshot["n"])
        self.chosen = snapshot["chosen"]
