"""lstmgen: train LSTM language models on any text and generate new text from them."""

__version__ = "0.1.0"

from .api import Model, TrainResult, info, load, train  # noqa: E402
from .errors import LstmgenError  # noqa: E402

__all__ = ["LstmgenError", "Model", "TrainResult", "info", "load", "train", "__version__"]
