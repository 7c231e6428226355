"""Shared fixtures: small corpora made here, tiny model settings, and the shared-data marker."""

from __future__ import annotations

import os
import random
from pathlib import Path

# One thread per process, set before torch starts its thread pool. The tests' models are tiny,
# so a second thread gains nothing; and while other processes kept both cores busy, OpenMP's
# two threads waiting on each other made a one-epoch TINY run take 130 s instead of 1.5 s.
# Subprocesses that the tests start inherit the variables.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["LSTMGEN_THREADS"] = "1"  # lstmgen's own choice is measured: not in tests
os.environ["MKL_NUM_THREADS"] = "1"
# fp32 whatever the CPU: CPUs with bf16 would train in bf16 by default (device.py), and the
# tests' numbers (the golden weights) must be the same on every machine.
os.environ["LSTMGEN_CPU_BF16"] = "0"
# --precision auto keeps fp32 on every machine (int8 has tests of its own: test_int8.py)
os.environ["LSTMGEN_CPU_INT8"] = "0"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Settings small enough that a few hundred steps take seconds on 2 CPU cores.
TINY = {"hidden": 32, "embedding": 16, "layers": 1, "batch_size": 4, "seq_len": 16, "dropout": 0.0}


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(
        reason=f"needs the shared corpora in {SHARED_DATA} "
        "(present in CI, absent in a user's clone)"
    )
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


def make_text(chars: int = 20_000, seed: int = 0) -> str:
    """A deterministic, learnable little corpus: sentences from a small vocabulary."""
    rng = random.Random(seed)
    words = "the cat sat on a mat and dog ran to big red house with small green tree".split()  # noqa: SIM905
    lines = []
    while sum(len(line) + 1 for line in lines) < chars:
        lines.append(
            " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))).capitalize() + "."
        )
    return "\n".join(lines)[:chars]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny trained run shared by tests that only read it."""
    import lstmgen

    root = tmp_path_factory.mktemp("trained")
    corpus = root / "corpus.txt"
    corpus.write_text(make_text(30_000), encoding="utf-8")
    lstmgen.train([corpus], out=root / "run", epochs=2, quiet=True, **TINY)
    return root / "run"
