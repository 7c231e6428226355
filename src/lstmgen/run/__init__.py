"""A run directory's life: create it (create.py), train and resume it (session.py, with its
checkpoints in saving.py and its closing line in outcome.py)."""

from lstmgen.run.create import Prepared, create
from lstmgen.run.session import TrainResult, resume, save_checkpoint, train

__all__ = ["Prepared", "TrainResult", "create", "resume", "save_checkpoint", "train"]
