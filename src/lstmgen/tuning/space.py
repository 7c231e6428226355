"""The search space of `lstmgen tune`: the default ranges, a --space TOML file checked key by
key, a trial's settings drawn from it, and today's defaults as the first trial."""

from __future__ import annotations

import typing
from pathlib import Path

from lstmgen.config import NOT_REUSED, ModelConfig, TrainConfig, fits, type_name
from lstmgen.errors import LstmgenError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

# Today's defaults are the first trial; "auto" lets --trial-time size the model (sizing.py).
DEFAULT_SPACE: dict[str, dict] = {
    "hidden": {"choices": ["auto", 64, 128, 192, 256, 384, 512]},
    "layers": {"low": 1, "high": 3},
    "embedding": {"choices": [32, 64, 128]},
    "lr": {"low": 1e-3, "high": 3e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "activation_reg": {"low": 0.0, "high": 4.0},
    "temporal_reg": {"low": 0.0, "high": 2.0},
    "seq_len": {"choices": [16, 32, 64, 128]},
    "batch_size": {"choices": [8, 16, 32, 64]},
}
# a trial's budget and watching are the tune's; what only a run of its own would want is not
TUNABLE = (ModelConfig.option_names() | TrainConfig.option_names()) - (
    NOT_REUSED | {"sample_length", "seed"}
)
SHORT = {"activation_reg": "AR", "temporal_reg": "TAR", "batch_size": "batch", "seq_len": "seq"}
HINTS = {**typing.get_type_hints(ModelConfig), **typing.get_type_hints(TrainConfig)}


def read_space(path: Path | None) -> dict[str, dict]:
    """The default space, or a TOML file of ranges: `[lr] low = 1e-3 high = 3e-2 log = true`,
    `[hidden] choices = [128, 256]`, `[seq_len] value = 64`; checked key by key."""
    if path is None:
        return DEFAULT_SPACE
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LstmgenError(f"--space {path} does not exist; give a TOML file of ranges") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise LstmgenError(f"--space {path} is not valid TOML ({e})") from None
    if not raw:
        raise LstmgenError(f"--space {path} names no options; give at least one, e.g. [lr]")
    for name, spec in raw.items():
        check_range(name, spec, path)
    return raw


def check_range(name: str, spec, path) -> None:
    """One option's range in a --space file; a mistake raises LstmgenError naming it."""
    where = f"--space {path}: [{name}]"
    if name not in TUNABLE:
        raise LstmgenError(
            f"{where} is not an option that can be tuned; tunable: {', '.join(sorted(TUNABLE))}"
        )
    hint = HINTS[name]
    if not isinstance(spec, dict):
        raise LstmgenError(f"{where} must be a table: low/high, choices or value")
    kinds = {"choices", "value", "low"} & set(spec)
    unknown = set(spec) - {"choices", "value", "low", "high", "log"}
    if unknown or len(kinds) != 1:
        raise LstmgenError(
            f"{where} needs exactly one of low/high, choices or value"
            + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
        )
    if "choices" in spec and not (isinstance(spec["choices"], list) and spec["choices"]):
        raise LstmgenError(f"{where} choices must be a non-empty list")
    values = spec["choices"] if "choices" in spec else [spec["value"]] if "value" in spec else []
    for value in values:
        if not (fits(value, hint) or (name == "hidden" and value == "auto")):
            raise LstmgenError(f"{where} {value!r} is not a {type_name(hint)}")
    if "low" in spec:
        low, high = spec.get("low"), spec.get("high")
        numeric = hint in (int, float, int | None, float | None)
        if not (numeric and fits(low, hint) and fits(high, hint) and low < high):
            raise LstmgenError(
                f"{where} needs {type_name(hint)}s low < high (got {low!r}, {high!r})"
            )
        if spec.get("log") and low <= 0:
            raise LstmgenError(f"{where} log = true needs low > 0 (got {low})")


def suggest(trial, space: dict[str, dict]) -> dict:
    """A trial's settings from the space ("auto" hidden: left to --trial-time's sizing)."""
    params = {}
    for name, spec in space.items():
        if "value" in spec:
            params[name] = spec["value"]
        elif "choices" in spec:
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif HINTS[name] in (int, int | None):
            params[name] = trial.suggest_int(
                name, spec["low"], spec["high"], log=bool(spec.get("log"))
            )
        else:
            params[name] = trial.suggest_float(
                name, spec["low"], spec["high"], log=bool(spec.get("log"))
            )
    return params


def defaults_in(space: dict[str, dict]) -> dict:
    """Today's defaults, as a first trial, for the options the space varies."""
    defaults = {**ModelConfig().to_dict(), **TrainConfig().to_dict(), "hidden": "auto"}
    first = {}
    for name, spec in space.items():
        value = defaults.get(name)
        if (
            "choices" in spec
            and value in spec["choices"]
            or "low" in spec
            and fits(value, float)
            and spec["low"] <= value <= spec["high"]
        ):
            first[name] = value
    return first


def short(value) -> str:
    """A setting as the trial lines and the table show it (floats to three digits)."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)
