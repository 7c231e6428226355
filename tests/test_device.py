"""device.py: --precision fp32|bf16|auto, and how a CPU's bf16 is detected (issue 25)."""

from __future__ import annotations

import json

import pytest
import torch

import lstmgen
from conftest import TINY
from lstmgen import LstmgenError
from lstmgen import device as device_module
from lstmgen.config import TrainConfig
from lstmgen.device import cpu_bf16_missing, mixed_precision

CPU = torch.device("cpu")


@pytest.fixture
def fresh_detection():
    """cpu_bf16_missing() is checked once per process: forget it around a test that fakes it."""
    cpu_bf16_missing.cache_clear()
    yield
    cpu_bf16_missing.cache_clear()


def lacking_bf16(monkeypatch) -> None:
    """This CPU as one without bf16 instructions."""
    monkeypatch.setattr(device_module.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(device_module, "cpu_flags", lambda: {"fpu", "avx2", "avx512f"})


def test_precision_is_fp32_bf16_or_auto():
    assert TrainConfig().precision == "auto"
    assert TrainConfig(precision="bf16").to_dict()["precision"] == "bf16"
    assert TrainConfig.from_dict({"lr": 0.01}).precision == "auto"  # a run from before it
    with pytest.raises(LstmgenError) as error:
        TrainConfig(precision="fp16")
    assert str(error.value) == "--precision 'fp16' is not a precision; use fp32, bf16 or auto"


def test_a_cpu_without_bf16_instructions_is_told_to_use_fp32(monkeypatch, fresh_detection):
    lacking_bf16(monkeypatch)
    assert cpu_bf16_missing() == "this CPU has no bf16 instructions (amx_bf16 or avx512_bf16)"
    with pytest.raises(LstmgenError) as error:
        mixed_precision(CPU, "bf16")
    assert str(error.value) == (
        "--precision bf16: this CPU has no bf16 instructions (amx_bf16 or avx512_bf16); "
        "use --precision fp32"
    )
    assert mixed_precision(CPU, "auto") is None and mixed_precision(CPU, "fp32") is None


def test_a_missing_onednn_primitive_is_caught_at_the_check(monkeypatch, fresh_detection):
    monkeypatch.setattr(device_module, "cpu_flags", lambda: {"avx512_bf16", "bf16"})

    def no_primitive(device):
        raise RuntimeError("could not create a primitive descriptor for an LSTM forward\nmore")

    monkeypatch.setattr(device_module, "_bf16_step", no_primitive)
    assert cpu_bf16_missing() == (
        "oneDNN cannot run a bf16 LSTM here "
        "(could not create a primitive descriptor for an LSTM forward)"
    )
    with pytest.raises(LstmgenError, match=r"; use --precision fp32$"):
        mixed_precision(CPU, "bf16")


def test_auto_on_a_cpu_with_bf16_takes_it_unless_switched_off(monkeypatch, fresh_detection):
    monkeypatch.setattr(device_module, "cpu_bf16_missing", lambda: None)  # a CPU with bf16
    monkeypatch.setattr(device_module, "CPU_BF16_BY_DEFAULT", False)  # LSTMGEN_CPU_BF16=0
    assert mixed_precision(CPU, "auto") is None
    monkeypatch.setattr(device_module, "CPU_BF16_BY_DEFAULT", True)
    assert mixed_precision(CPU, "auto") == torch.bfloat16
    assert mixed_precision(CPU, "fp32") is None


def test_auto_on_cuda_takes_native_bf16_only(monkeypatch):
    cuda = torch.device("cuda")
    # a GPU before Ampere: bf16 only by emulation, slower than fp32
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation
    )
    assert mixed_precision(cuda, "auto") is None
    assert mixed_precision(cuda, "bf16") == torch.bfloat16  # asked for: given
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    with pytest.raises(LstmgenError, match=r"^--precision bf16: this GPU has no bf16; use"):
        mixed_precision(cuda, "bf16")
    assert mixed_precision(cuda, "fp32") is None


def test_the_check_does_not_shift_a_seeded_run(fresh_detection):
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    cpu_bf16_missing()  # builds and steps a small LSTM on its own random stream
    assert torch.equal(torch.rand(3), expected)


def test_training_refuses_bf16_on_a_cpu_without_it(corpus, tmp_path, monkeypatch, fresh_detection):
    lacking_bf16(monkeypatch)
    with pytest.raises(LstmgenError, match=r"^--precision bf16: this CPU has no bf16"):
        lstmgen.train([corpus], out=tmp_path / "run", max_steps=3, precision="bf16", **TINY)


@pytest.mark.skipif(
    cpu_bf16_missing() is not None,
    reason=f"this CPU cannot train in bf16: {cpu_bf16_missing()}",
)
def test_bf16_training_runs_and_is_recorded(corpus, tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        lstmgen.train([corpus], out=out, max_steps=20, precision=precision, quiet=True, **TINY)
        assert json.loads((out / "config.json").read_text())["train"]["precision"] == precision
        runs[precision] = lstmgen.info(out)["last_val_bits_per_char"]
    assert 0 < runs["bf16"] < 8 and runs["bf16"] != runs["fp32"]  # bf16 arithmetic, and it learns
