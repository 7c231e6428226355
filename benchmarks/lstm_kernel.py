"""FLOP utilisation of PyTorch's nn.LSTM alone (forward + backward): the trainer's ceiling.

    python benchmarks/lstm_kernel.py

Times a 2-layer nn.LSTM (embedding 64, 32 steps) for a few seconds per shape and
divides its FLOP/s (6 × multiply-adds per token) by a same-process fp32 1024² matmul,
measured before and after (the higher counts), as benchmarks/quality_vs_time.py does.
"""

from __future__ import annotations

import time

import torch

from quality_vs_time import matmul_flops_per_s

SHAPES = ((16, 256), (64, 256), (16, 128))  # (batch, hidden)


def main() -> None:
    torch.manual_seed(0)
    embedding, steps = 64, 32
    for batch, hidden in SHAPES:
        lstm = torch.nn.LSTM(embedding, hidden, 2, batch_first=True)
        x = torch.randn(batch, steps, embedding, requires_grad=True)

        def step(lstm: torch.nn.LSTM = lstm, x: torch.Tensor = x) -> None:
            out, _ = lstm(x)
            out.sum().backward()

        for _ in range(5):
            step()
        reference = matmul_flops_per_s()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 4.0:
            step()
            n += 1
        seconds = (time.perf_counter() - start) / n
        reference = max(reference, matmul_flops_per_s())
        macs = sum(
            4 * hidden * ((embedding if layer == 0 else hidden) + hidden) for layer in range(2)
        )
        flops = 6 * macs * batch * steps / seconds
        print(
            f"nn.LSTM 2×{hidden}, batch {batch} × {steps}: {flops / 1e9:.1f} GFLOP/s, "
            f"matmul {reference / 1e9:.1f} GFLOP/s, utilisation {flops / reference:.2f}"
        )


if __name__ == "__main__":
    main()
