"""One RunConfig: every setting of a run, declared once, validated once, saved as config.json.

Sections are dataclasses with their defaults and checks: how sources are read (ReadOptions)
and cleaned (CleanOptions), how the token store is made (DataConfig, which holds both), the
model (ModelConfig), the training (TrainConfig) and the sampling (SampleConfig). A field
declared with `option(...)` is also a command-line option: the CLI builds its flags, help
texts and defaults from these declarations, and the Python API takes the same names as
keyword arguments, so adding an option is one edit here. This module imports no PyTorch.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from lstmgen._version import __version__
from lstmgen.config.data import LEVELS, CleanOptions, DataConfig, ReadOptions
from lstmgen.config.memory import machine_memory_bytes, refuse_training_beyond
from lstmgen.config.model import ADDED_LATER, ModelConfig
from lstmgen.config.options import flag_of, option, parse_duration, random_seed
from lstmgen.config.sampling import SampleConfig
from lstmgen.config.serve import API_KEY_ENV, ServeConfig
from lstmgen.config.training import HOW_LONG_AND_WHERE, RESUMABLE, TRAIN_ADDED_LATER, TrainConfig
from lstmgen.errors import LstmgenError
from lstmgen.files import read_json, recover, write_json

__all__ = [
    "API_KEY_ENV",
    "ServeConfig",
    "LEVELS",
    "NOT_REUSED",
    "RUN_FORMAT",
    "CleanOptions",
    "DataConfig",
    "ModelConfig",
    "ReadOptions",
    "RunConfig",
    "SampleConfig",
    "TrainConfig",
    "bits_per_char",
    "fits",
    "option",
    "parse_duration",
    "random_seed",
    "type_name",
]

RUN_FORMAT = 1


def bits_per_char(nats_per_token: float, tokens_per_char: float = 1.0) -> float:
    """Per-token loss in nats → bits per character (tokens_per_char = tokens ÷ characters)."""
    return nats_per_token * tokens_per_char / math.log(2)


# choices made creating a run; "processes": how many trained it (torchrun), last session
RECORDS = ("embeddings", "sizing", "lr_finder", "base", "processes")
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
# What --config does not take from another run: how long and where that run trained.
NOT_REUSED = HOW_LONG_AND_WHERE | {"lr_finder", "embeddings", "processes"}


@dataclass
class RunConfig:
    """A run's settings, built once from CLI options, API keywords or config.json.

    config.json holds the model and training sections, what the prepared data hold (`corpus`,
    saved under "data") and records of choices made while creating the run (`records`: the
    sizing, the learning-rate range test, the word vectors' coverage). How the data were
    prepared is recorded by the token store itself (its meta.json).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    level: str = "char"
    corpus: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)  # "embeddings", "sizing", "lr_finder", "base"
    given: frozenset = frozenset()  # the option names the user set (the rest are defaults)

    @classmethod
    def from_options(cls, options: dict) -> RunConfig:
        """From option keywords (hidden=512, max_time="10m", column="Text", ...), checked once."""
        _refuse_unknown(options)
        sections = {}
        for name, section in SECTIONS.items():
            names = section.option_names()
            sections[name] = section(**{k: v for k, v in options.items() if k in names})
        config = cls(**sections, level=sections["data"].level, given=frozenset(options))
        if config.train.lr_finder and "lr" in options:
            raise LstmgenError(
                "give --lr or --lr-finder, not both (the finder picks the peak learning rate)"
            )
        if config.model.freeze_embeddings and not config.train.embeddings:
            raise LstmgenError(
                "--freeze-embeddings needs --embeddings FILE "
                "(freezing random embeddings would only hurt)"
            )
        # before anything is prepared: a size that cannot fit is refused at once (the training
        # checks again with the vocabulary and the device's own memory)
        refuse_training_beyond(
            config.model,
            config.train.batch_size,
            config.train.seq_len,
            available=machine_memory_bytes(),
        )
        return config

    def given_in(self, section: str) -> set[str]:
        """The options the user set that belong to one section ("data", "model", "train")."""
        return set(self.given) & SECTIONS[section].option_names()

    @property
    def tokens_per_char(self) -> float:
        """Tokens per character of the held-out text (1 at char level): nats/token → bits/char."""
        if not self.corpus.get("val_characters") or not self.corpus.get("val_tokens"):
            return 1.0
        # Control tokens (one per held-out document with conditions) are no text: not scored.
        controls = (self.corpus.get("control_tokens") or {}).get("val", 0)
        return (self.corpus["val_tokens"] - controls) / self.corpus["val_characters"]

    # ----- config.json --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": RUN_FORMAT,
            "lstmgen_version": __version__,
            "level": self.level,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "data": self.corpus,
            **self.records,
        }

    @classmethod
    def from_json(cls, data: dict, *, name: str = "config.json") -> RunConfig:
        """From config.json's contents; settings older formats lack get the values they had.

        A section that is missing, lacks a setting the model's shape needs, or holds a value
        of the wrong type is a one-line LstmgenError naming `name` and the field.
        """
        sections = {}
        for key, section in (("model", ModelConfig), ("train", TrainConfig)):
            values = data.get(key)
            if not isinstance(values, dict):
                raise LstmgenError(
                    f"{name} has no {key!r} section; it is not a complete lstmgen run "
                    "(restore it or train again)"
                )
            if key == "model":
                missing = sorted(
                    f.name for f in fields(ModelConfig) if f.name not in {*values, *ADDED_LATER}
                )
                if missing:
                    raise LstmgenError(
                        f"{name} lacks model.{missing[0]}, which the model's shape needs; "
                        "restore it or train again"
                    )
                values = {**ADDED_LATER, **values}
            else:
                values = {**TRAIN_ADDED_LATER, **values}
            sections[key] = _section_from_json(section, values, key, name)
        if not isinstance(data.get("data", {}), dict):
            raise LstmgenError(f"{name}: its 'data' section is not an object; restore it")
        level = data.get("level", "char")
        if level not in LEVELS:
            raise LstmgenError(
                f"{name}: level is {level!r}, not one of {', '.join(LEVELS)}; "
                "restore it or train again"
            )
        records = {k: v for k, v in data.items() if k in RECORDS}
        return cls(
            **sections,
            level=level,
            corpus=data.get("data", {}),
            records=records,
        )

    def save(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, run_dir: Path, *, writer: bool = False) -> RunConfig:
        """config.json of a run, checked for existence and format version (read here only).

        writer=True: the caller is the run's trainer, so a half-written checkpoint is discarded.
        """
        if not run_dir.exists():
            raise LstmgenError(
                f"run directory {run_dir} does not exist; train one with: "
                f"lstmgen train TEXT --out {run_dir}"
            )
        if not run_dir.is_dir():
            raise LstmgenError(f"{run_dir} is a file, not a run directory")
        recover(run_dir, discard_uncommitted=writer)
        path = run_dir / "config.json"
        if not path.is_file():
            raise LstmgenError(
                f"{run_dir} is not a complete lstmgen run (config.json missing); train it again"
            )
        try:
            data = read_json(path, fix="restore it or train again")
        except FileNotFoundError:  # removed since is_file(): a trainer replaced it
            raise LstmgenError(f"{path} vanished while it was read; try again") from None
        if not isinstance(data, dict) or "model" not in data:
            raise LstmgenError(f"{path} is not an lstmgen config; train the run again")
        if not isinstance(data.get("format", 0), int):
            raise LstmgenError(f"{path} has an unreadable format version; train the run again")
        if data.get("format", 0) > RUN_FORMAT:
            raise LstmgenError(
                f"{run_dir} was written by a newer lstmgen (format {data['format']}, "
                f"this one reads {RUN_FORMAT}); upgrade lstmgen"
            )
        return cls.from_json(data, name=str(path))

    # ----- --config: another run's settings ------------------------------------------------------
    @classmethod
    def settings_in(cls, path: Path, given: dict) -> dict:
        """The option keywords of a config.json (any run's, or a tune's best.json) to train a
        new run with: the level, the model and the training settings, less how long the run
        goes and where (NOT_REUSED), which are the new run's own, and less what the options
        `given` beside it decide otherwise: a size --max-time chose is chosen again for this
        run's budget; --lr-finder replaces the lr; --embeddings brings its own size."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            data = read_json(path, fix="give a run's config.json or a tune's best.json")
        except FileNotFoundError:
            raise LstmgenError(
                f"--config {path} does not exist; give a run's config.json (or a tune's best.json)"
            ) from None
        except LstmgenError as e:
            raise LstmgenError(f"--config {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise LstmgenError(
                f"--config {path} is not an lstmgen config.json (no model section); give a "
                "run's config.json or a tune's best.json"
            )
        config = cls.from_json(data, name=str(path))
        settings = {**config.model.to_dict(), **config.train.to_dict(), "level": config.level}
        names = ModelConfig.option_names() | TrainConfig.option_names() | {"level"}
        dropped = set(NOT_REUSED)
        sizing = config.records.get("sizing") or {}
        if sizing:
            dropped.add("hidden")
        # chosen for that budget: chosen again (short_run: the name before issue 32)
        dropped.update(sizing.get("budget_rule", sizing.get("short_run", {})))
        dropped.discard("epochs")
        if given.get("lr_finder"):
            dropped.add("lr")
        if given.get("embeddings"):
            dropped.add("embedding")
        else:
            dropped.add("freeze_embeddings")
        return {k: v for k, v in settings.items() if k in names - dropped}

    # ----- resuming -----------------------------------------------------------------------------
    def resumed(self, options: dict, progress: dict) -> RunConfig:
        """This run's config with the options given on resume; only RESUMABLE ones may change.

        A limit the run already reached, and that is not restated, is dropped: `--resume
        --epochs 4` continues a run that stopped at its --max-time.
        """
        current = {**self.model.to_dict(), **self.train.to_dict()}
        _refuse_unknown(options)
        fixed = {k for k in options if k not in RESUMABLE and options[k] != current.get(k)}
        if fixed:
            raise LstmgenError(
                f"cannot change {', '.join(flag_of(k) for k in sorted(fixed))} when "
                "resuming; start a new run with --out instead"
            )
        changes = {k: v for k, v in options.items() if k in RESUMABLE}
        if {"epochs", "max_time", "max_steps"} & set(options):
            t = self.train
            reached = {
                "epochs": progress.get("epoch", 0) >= (t.epochs or math.inf),
                "max_steps": progress.get("step", 0) >= (t.max_steps or math.inf),
                "max_time": progress.get("elapsed_s", 0.0) >= (t.max_time_s or math.inf),
            }
            changes = {**{k: None for k, done in reached.items() if done}, **changes}
        return replace(self, train=replace(self.train, **changes), given=frozenset(options))


def _section_from_json(section: type, values: dict, key: str, name: str):
    """One section of config.json; a value of the wrong type or out of range names its field."""
    hints = typing.get_type_hints(section)
    for field_name, value in values.items():
        if field_name in hints and not fits(value, hints[field_name]):
            raise LstmgenError(
                f"{name}: {key}.{field_name} is {value!r}, which is not a "
                f"{type_name(hints[field_name])}; restore it or train again"
            )
    try:
        return section.from_dict(values)
    except LstmgenError as e:
        raise LstmgenError(f"{name}: {key} section: {e}; restore it or train again") from None
    except (TypeError, ValueError) as e:
        raise LstmgenError(
            f"{name}: a bad value in its {key} section ({e}); restore it or train again"
        ) from None


def fits(value, hint) -> bool:
    """Whether a JSON value fits a field's type (int for float is fine; bool for int is not)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def type_name(hint) -> str:
    names = {bool: "true/false", int: "whole number", float: "number", str: "string"}
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    origin = typing.get_origin(args[0])
    return names.get(args[0], "list" if origin in (list, tuple) else "value") + (
        " or null" if type(None) in typing.get_args(hint) else ""
    )


def _refuse_unknown(options: dict) -> None:
    """A one-line error naming the options that no section of a run has."""
    unknown = set(options).difference(*(s.option_names() for s in SECTIONS.values()))
    if unknown:
        raise LstmgenError(f"unknown training option(s): {', '.join(sorted(unknown))}")
