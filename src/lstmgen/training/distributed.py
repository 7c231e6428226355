"""Training on several processes: torchrun + DistributedDataParallel.

Under torchrun every process runs the same `lstmgen train`. Rank 0 alone prepares the data,
writes files and prints; the others wait for it and follow. Each rank reads its own streams of
the global batch (batches.py) and carries their recurrent state, as fairseq's truncated_bptt
does: only gradients (DDP), a few numbers per step (the loss, the clock, a stop flag) and, at a
checkpoint, every rank's recurrent and random state travel between the processes.

`Peers` is one process alone (nothing is communicated: training is what it always was);
`ProcessGroup` is a torchrun world. The trainer asks either the same questions.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from lstmgen.errors import LstmgenError, PeerStopped, SaidByRankZero

# A peer that has not answered for this long is taken for dead (a hang becomes an error).
# Rank 0's own work between steps (samples, a checkpoint) must fit in it.
TIMEOUT_S = float(os.environ.get("LSTMGEN_PEER_TIMEOUT_S", "60"))
# Rank 0 may prepare a large corpus (or size the model) while the others wait.
PREPARE_TIMEOUT = timedelta(days=2)


def world_size() -> int:
    """How many training processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


class Peers:
    """One training process alone: every agreement is with itself."""

    rank, size, local_rank = 0, 1, 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files and prints (rank 0)."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        return device

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training steps call (DDP under torchrun)."""
        return model

    def mean(self, value: torch.Tensor) -> float:
        """The value averaged over the ranks (one number per step: the loss)."""
        return float(value)

    def clock(self, elapsed_s: float) -> float:
        """Rank 0's clock, for every rank: all take the same timed decisions at one step."""
        return elapsed_s

    def any(self, *flags: bool) -> list[bool]:
        """For each flag, whether any rank raised it (one collective for all of them)."""
        return list(flags)

    def total(self, *values: float) -> list[float]:
        """Each value summed over the ranks (in float64)."""
        return list(values)

    def gather(self, item) -> list | None:
        """Every rank's item, in rank order, on rank 0 (None on the others)."""
        return [item]

    def share(self, make: Callable[[], dict]) -> dict:
        """Rank 0's make() on every rank; a LstmgenError it raises stops every rank."""
        return make()

    def failing(self, error: RuntimeError) -> None:
        """Told of an error on its way out of the training loop."""

    def close(self) -> None:
        pass


class ProcessGroup(Peers):
    """This process's place in a torchrun world (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR ...):
    NCCL between GPUs, gloo on CPUs; a second gloo group carries objects and the long wait."""

    def __init__(self):
        env = os.environ
        self.rank, self.size = int(env["RANK"]), int(env["WORLD_SIZE"])
        self.local_rank = int(env.get("LOCAL_RANK", "0"))
        timeout = timedelta(seconds=TIMEOUT_S)
        # CPU tensors go through gloo, GPU tensors through NCCL: the device is known later
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=timeout)
        self.objects = dist.new_group(backend="gloo", timeout=timeout)
        self.waiting = dist.new_group(backend="gloo", timeout=PREPARE_TIMEOUT)
        self._device = torch.device("cpu")

    def device(self, device: torch.device) -> torch.device:
        if device.type == "mps":
            raise LstmgenError(
                "training on several processes needs CUDA GPUs or the CPU; use --device cpu"
            )
        if device.type == "cuda":  # one GPU per process: the one of its local rank
            gpus = torch.cuda.device_count()
            if self.local_rank >= gpus:
                raise LstmgenError(
                    f"training process {self.rank} has no GPU of its own: this machine has "
                    f"{gpus}; start at most {gpus} processes per machine (--nproc {gpus})"
                )
            torch.cuda.set_device(self.local_rank)
            device = torch.device("cuda", self.local_rank)
        self._device = device if device.type == "cuda" else torch.device("cpu")
        return device

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        ids = [self.local_rank] if self._device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def mean(self, value: torch.Tensor) -> float:
        summed = value.detach().float().reshape(1).to(self._device, copy=True)
        dist.all_reduce(summed)
        return float(summed) / self.size

    def clock(self, elapsed_s: float) -> float:
        return self.total(elapsed_s if self.is_main else 0.0)[0]  # the others add 0

    def any(self, *flags: bool) -> list[bool]:
        return [count > 0 for count in self.total(*map(float, flags))]

    def total(self, *values: float) -> list[float]:
        numbers = torch.tensor(values, dtype=torch.float64, device=self._device)
        dist.all_reduce(numbers)
        return numbers.tolist()

    def gather(self, item) -> list | None:
        gathered = [None] * self.size if self.is_main else None
        dist.gather_object(item, gathered, dst=0, group=self.objects)
        return gathered

    def share(self, make: Callable[[], dict]) -> dict:
        outcome: list = [None]
        if self.is_main:
            try:
                outcome[0] = {"value": make()}
            except LstmgenError as e:
                outcome[0] = {"error": str(e)}
                dist.broadcast_object_list(outcome, src=0, group=self.waiting)
                raise
        dist.broadcast_object_list(outcome, src=0, group=self.waiting)
        if "error" in outcome[0]:
            raise SaidByRankZero(outcome[0]["error"])
        return outcome[0]["value"]

    def failing(self, error: RuntimeError) -> None:
        if is_peer_failure(error):
            # torchrun sends SIGTERM to the ranks left: let this one end and say why first
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def close(self) -> None:
        dist.destroy_process_group()


@contextmanager
def joined(run_dir: Path) -> Iterator[Peers]:
    """This process's peers for the block: torchrun's world, or itself alone.

    A peer that dies or hangs ends the block with one PeerStopped line on the ranks that
    are left (not a hang, not a traceback); the last checkpoint is whole and resumable.
    """
    if world_size() == 1:
        yield Peers()
        return
    _die_with_the_launcher()
    peers = ProcessGroup()
    try:
        yield peers
    except RuntimeError as e:  # gloo and NCCL report a lost peer as RuntimeError
        if not is_peer_failure(e):
            raise
        peers.failing(e)
        other = f" (rank {1 - peers.rank})" if peers.size == 2 else ""
        raise PeerStopped(
            f"another training process stopped{other}; the last checkpoint is whole: "
            f"resume with: lstmgen train --resume {run_dir} --nproc {peers.size}"
        ) from None
    peers.close()


def is_peer_failure(error: BaseException) -> bool:
    """Whether an error is a collective that failed because a peer died or timed out."""
    if isinstance(error, dist.DistError):
        return True
    text = str(error)
    return any(
        mark in text for mark in ("gloo", "Gloo", "NCCL", "Connection", "Timed out", "timed out")
    )


def _die_with_the_launcher() -> None:
    """Ask Linux to kill this process when its launcher (torchrun) dies: a killed launcher
    leaves no orphan training on, holding the run's lock."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() == 1:  # the launcher died before the request
        os.kill(os.getpid(), signal.SIGKILL)
