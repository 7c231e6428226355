"""benchmarks/gpu_check.py: its dry run takes every part of the GPU check on the CPU (issue 25),
so the check is known to work before a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECK = ROOT / "benchmarks" / "gpu_check.py"
PARTS = [
    "device",
    "prepare",
    "train_bf16",
    "train_fp32",
    "resume",
    "torchrun",
    "generate",
    "serve",
    "info",
    "evaluate",
]


def run_check(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run(
        [sys.executable, str(CHECK), "--dry-run", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, json.loads((out / "summary.json").read_text())


@pytest.mark.slow  # ~15 lstmgen commands; about 40 s of CPU time
def test_the_dry_run_passes_every_part(tmp_path):
    done, summary = run_check(tmp_path / "check")
    failed = {name: part["error"] for name, part in summary["parts"].items() if not part["ok"]}
    assert failed == {}, done.stdout + done.stderr
    assert list(summary["parts"]) == PARTS and summary["all_ok"] and done.returncode == 0
    parts = summary["parts"]
    assert parts["train_fp32"]["precision_in_config"] == "fp32"
    assert parts["train_bf16"]["precision_in_config"] in ("bf16", "auto")  # auto: CPU lacks bf16
    assert parts["resume"]["stopped_at_step"] < parts["resume"]["steps"]
    assert parts["resume"]["resumed_bit_identical"]  # the CPU's kernels are deterministic
    assert parts["generate"]["streams_64"]["characters"] == 64 * 20
    assert parts["serve"]["errors"] == 0 and parts["serve"]["clients"] == 2
    assert parts["evaluate"]["bits_per_char"] > 0
    assert (tmp_path / "check" / "raw" / "train_fp32.err").read_text()  # the raw outputs
    assert done.stdout.splitlines()[0].split() == ["part", "ok", "s", "result"]  # the table


def test_a_failing_part_records_its_error_and_the_check_goes_on(tmp_path):
    # without the prepare part there is no token store: generate fails, device still runs
    done, summary = run_check(tmp_path / "check", "--parts", "device,generate")
    parts = summary["parts"]
    assert parts["device"]["ok"] and "torch" in parts["device"]
    assert not parts["generate"]["ok"]
    assert parts["generate"]["error"] == "RuntimeError: no token store: the prepare part failed"
    assert done.returncode == 1 and "FAIL" in done.stdout
