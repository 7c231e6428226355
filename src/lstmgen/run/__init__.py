"""A run directory's life: create it (create.py), train and resume it, describe it (session.py)."""

from lstmgen.run.create import Prepared, create
from lstmgen.run.session import TrainResult, info, resume, save_checkpoint, train

__all__ = ["Prepared", "TrainResult", "create", "info", "resume", "save_checkpoint", "train"]
