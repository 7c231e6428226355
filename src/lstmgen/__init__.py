"""lstmgen: train LSTM language models on any text and generate new text from them."""

from lstmgen._version import __version__
from lstmgen.errors import LstmgenError

__all__ = [
    "LstmgenError",
    "Model",
    "TrainResult",
    "classify",
    "info",
    "load",
    "prepare",
    "train",
    "tune",
    "__version__",
]


def __getattr__(name: str):
    """The API on first use, so `lstmgen prepare` and `import lstmgen` never load PyTorch (2 s)."""
    if name == "prepare":
        from lstmgen.data.prepare import prepare

        return prepare
    if name == "info":
        from lstmgen.describe import info

        return info
    if name == "tune":
        from lstmgen.tuning import tune

        return tune
    if name in ("Model", "TrainResult", "classify", "load", "train"):
        from lstmgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'lstmgen' has no attribute {name!r}")
