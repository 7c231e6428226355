"""lstmgen: train LSTM language models on any text and generate new text from them."""

import sys
import types

__version__ = "0.1.0"

from .errors import LstmgenError  # noqa: E402

__all__ = ["LstmgenError", "Model", "TrainResult", "info", "load", "prepare", "train", "__version__"]
_FROM_API = {"Model", "TrainResult", "info", "load", "train"}


def __getattr__(name: str):
    """Import on first use, so `lstmgen prepare` never loads PyTorch (2 s and ~220 MB)."""
    if name == "prepare":
        from .preparation import prepare

        return prepare
    if name in _FROM_API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'lstmgen' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Keeps `lstmgen.train` the function: importing the submodule lstmgen.train would otherwise rebind it."""

    def __setattr__(self, name: str, value) -> None:
        if name in _FROM_API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
