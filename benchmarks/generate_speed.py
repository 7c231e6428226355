"""Generation speed: lstmgen against the plain `nn.LSTM` loop over the same weights.

    python benchmarks/generate_speed.py                 # 3x256 char model on CPU
    python benchmarks/generate_speed.py --device cuda   # on a GPU
    python benchmarks/generate_speed.py --markdown BENCHMARKS.md

The model has the shape of a real char model (3 layers x 256, embedding 64, 65
characters, like tiny-shakespeare) with random weights; speed does not depend on
what the weights learned. For each of 1 and 64 streams it measures:

- plain: `out, state = lstm(embed(x), state)`, the head, softmax and
  torch.multinomial once per character (what char-rnn scripts do);
- lstmgen: `Model.generate` end to end (sampling, text decoding included);
- step: the bare single-step path of lstmgen alone (no sampling);
- matrix products alone: only the step's fp32 matrix-vector products (numpy /
  OpenBLAS), the floor under any single-step path on this machine.

Results go to benchmarks/out/generate_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from lstmgen.config import ModelConfig
from lstmgen.inference import Model
from lstmgen.model import LSTMLanguageModel
from lstmgen.sampling.sampler import expand_state, prime_state
from lstmgen.sampling.stepper import make_stepper
from lstmgen.tokens.chars import CharTokenizer


def timed(fn, chars: int) -> float:
    fn(min(chars, 50))  # warm-up
    start = time.perf_counter()
    fn(chars)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return chars / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seconds", type=float, default=3.0, help="rough time per measurement")
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    args = parser.parse_args()

    torch.manual_seed(0)
    alphabet = "".join(chr(c) for c in range(32, 96))  # 64 characters + the unknown id = 65
    tokenizer = CharTokenizer(list(alphabet))
    module = LSTMLanguageModel(
        ModelConfig(
            vocab_size=tokenizer.vocab_size, embedding=64, hidden=args.hidden, layers=args.layers
        )
    )
    module = module.to(args.device).eval()
    model = Model(module, tokenizer)
    prime = torch.from_numpy(tokenizer.encode("The "))

    rows = []
    for streams in args.streams:
        # Each helper binds this iteration's `streams` as a default (they run within it anyway).

        def plain(n: int, streams: int = streams) -> None:
            with torch.no_grad():
                x = torch.zeros(streams, dtype=torch.long, device=args.device)
                state = None
                for _ in range(n):
                    out, state = module.rnn(module.embed(x[:, None]), state)
                    probs = torch.softmax(module.head(out[:, 0]) / 0.8, -1)
                    x = torch.multinomial(probs, 1)[:, 0]

        def lstmgen_generate(n: int, streams: int = streams) -> None:
            model.generate("The ", length=n, num_samples=streams, seed=1)

        def step_only(n: int, streams: int = streams) -> None:
            _, state = prime_state(module, prime.to(args.device))
            stepper = make_stepper(module, expand_state(state, streams))
            ids = np.ones(streams, np.int64)
            for _ in range(n):
                stepper.step(ids)

        def products_only(n: int, streams: int = streams) -> None:
            """Only the matrix products of a step: the floor under any fp32 single-step path."""
            _, state = prime_state(module, prime.to(args.device))
            stepper = make_stepper(module, expand_state(state, streams))
            if not hasattr(stepper, "plan"):
                return
            for _ in range(n):
                for x, w, *_ in stepper.plan:
                    np.matmul(x, w, out=stepper.gates)
                np.matmul(stepper.top, stepper.head, out=stepper.logits)

        def measure(fn, rate_guess: float, streams: int = streams) -> float:
            steps = max(20, int(rate_guess * args.seconds))
            return timed(fn, steps) * streams  # characters per second over all streams

        plain_rate = measure(plain, 300 if streams == 1 else 150)
        fast_rate = measure(lstmgen_generate, 5000 if streams == 1 else 200)
        step_rate = measure(step_only, 5000 if streams == 1 else 200)
        floor_rate = measure(products_only, 8000) if streams < 32 and args.device == "cpu" else None
        rows.append(
            {
                "streams": streams,
                "plain_chars_per_s": plain_rate,
                "lstmgen_chars_per_s": fast_rate,
                "step_only_chars_per_s": step_rate,
                "matrix_products_only_chars_per_s": floor_rate,
                "speedup": fast_rate / plain_rate,
                "path": type(
                    make_stepper(
                        module, expand_state(prime_state(module, prime.to(args.device))[1], streams)
                    )
                ).__name__,
            }
        )
        print(
            f"{streams:>3} streams: plain {plain_rate:>9,.0f} chars/s   "
            f"lstmgen {fast_rate:>9,.0f} chars/s "
            f"({fast_rate / plain_rate:.1f}x; bare step {step_rate:,.0f}; "
            f"matrix products alone {floor_rate or 0:,.0f})",
            flush=True,
        )

    result = {
        "model": f"{args.layers}x{args.hidden}, embedding 64, vocab {tokenizer.vocab_size}",
        "parameters": module.num_parameters(),
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "rows": rows,
    }
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "generate_speed.json").write_text(json.dumps(result, indent=2))
    table = [
        f"\n{result['model']} on {args.device} "
        f"({result['parameters']:,} parameters, torch {torch.__version__})\n",
        "| streams | plain nn.LSTM loop | lstmgen generate | ratio | bare step "
        "| matrix products alone |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        floor = r["matrix_products_only_chars_per_s"]
        floor_cell = f"{floor:,.0f}" if floor else "—"
        table.append(
            f"| {r['streams']} | {r['plain_chars_per_s']:,.0f} | {r['lstmgen_chars_per_s']:,.0f} | "
            f"{r['speedup']:.1f}x | {r['step_only_chars_per_s']:,.0f} | {floor_cell} |"
        )
    print("\n".join(table))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
