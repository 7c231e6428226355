"""How config fields are declared: `option(...)` (a field that is also a CLI flag), the
shared Section behaviour, and durations ("90s", "10m", "1h30m") read in one place."""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict, field, fields

from lstmgen.errors import LstmgenError

DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")

# Help panels of the command line.
READING, CLEANING, STORE = "Reading sources", "Cleaning", "Token store"
MODEL, TRAINING, SAMPLING = "Model", "Training", "Sampling"


def option(
    default=None,
    help: str = "",
    *,
    panel: str,
    flag: str | None = None,
    default_text: str | None = None,
    factory=None,
    escapes: bool = False,
):
    """A config field that is also a command-line option (see cli.py, which reads the metadata).

    flag: the option's spelling when not --field-name (e.g. "--tie-weights/--no-tie-weights");
    default_text: the default as shown in --help, when the field's own default says too little;
    escapes: \\n and \\t typed on the command line are a newline and a tab.
    """
    metadata = {
        "help": help,
        "panel": panel,
        "flag": flag,
        "default_text": default_text,
        "escapes": escapes,
    }
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def parse_duration(value: str | float | int | None) -> float | None:
    """Turn '90s', '10m', '2h', '1h30m' or a plain number of seconds into seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
        seconds, number = 0.0, ""
        try:
            for ch in text:
                if ch.isdigit() or ch == ".":
                    number += ch
                elif ch in units and number:
                    seconds += float(number) * units[ch]
                    number = ""
                else:
                    raise ValueError(ch)
            if number:
                seconds += float(number)
        except ValueError:
            raise LstmgenError(
                f"cannot read the duration {value!r}; write it like 90s, 10m, 2h or 1h30m"
            ) from None
        if not text:
            raise LstmgenError("empty duration; write it like 90s, 10m, 2h or 1h30m")
    if seconds <= 0:
        raise LstmgenError(f"duration {value!r} must be more than zero")
    return seconds


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


class Section:
    """What every config section shares: a dict form and reading one back (unknown keys ignored)."""

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def option_names(cls) -> set[str]:
        return {f.name for f in fields(cls) if "panel" in f.metadata}  # type: ignore[arg-type]


def random_seed() -> int:
    """A fresh seed for sampling when none is given (recorded, so the text can be made again)."""
    return secrets.randbits(32)
