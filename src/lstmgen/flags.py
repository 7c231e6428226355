"""The command line's flags, built from the config's fields, and how --help shows them.

The options of prepare, train and generate are not written out in cli.py: each config field
declared with `config.option(...)` becomes a typer option with its help text, panel and
default (`with_options`), so an option is declared once. A flag left out is not passed on, so
the API's defaults apply.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import MISSING, fields
from typing import Annotated

import typer

from lstmgen.console import unescape

INT64 = 2**63 - 1  # the largest whole number PyTorch and numpy take


def _fits_64_bits(param) -> None:
    """Make param refuse a whole number that does not fit 64 bits, as a usage error (PyTorch
    would fail on it with an overflow traceback)."""
    if getattr(param, "_lstmgen_bounded", False):
        return
    process_value = param.process_value

    def process(ctx, value):
        value = process_value(ctx, value)
        for number in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(number, int) and not isinstance(number, bool) and abs(number) > INT64:
                raise typer.BadParameter(
                    f"{number} is too large (at most {INT64:,})", ctx=ctx, param=param
                )
        return value

    param.process_value, param._lstmgen_bounded = process, True


def _adjust(params: list) -> list:
    """A flag (--quiet, --tie-weights/--no-tie-weights, --help) takes no value: --help shows
    no value type after it (typer would show <bool>). Whole numbers must fit 64 bits."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        _fits_64_bits(param)
    return params


class Command(typer.core.TyperCommand):
    def get_params(self, ctx):
        return _adjust(super().get_params(ctx))


class ClosedPipe(Exception):
    """stdout's reader went away (`| head`): click would exit 1 on EPIPE; main() ends quietly."""


class Group(typer.core.TyperGroup):
    def get_params(self, ctx):
        return _adjust(super().get_params(ctx))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise ClosedPipe from None


def _config_option(spec, hint) -> inspect.Parameter:
    """One typer option for a config field declared with config.option(...)."""
    meta = spec.metadata
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(t for t in typing.get_args(hint) if t is not type(None)) if optional else hint
    default = None if spec.default is MISSING else spec.default
    flag = meta["flag"] or "--" + spec.name.replace("_", "-")
    plain_flag = kind is bool and "/" not in flag
    hidden = default is None or plain_flag or isinstance(default, (tuple, list))
    shown = meta["default_text"] or (None if hidden else default)
    help_text = meta["help"] + (f" \\[default: {shown}]" if shown is not None else "")
    if plain_flag:  # given only when set
        annotation, value = bool, False
    elif typing.get_origin(kind) in (tuple, list):  # repeatable
        annotation, value = list[str] | None, None
    else:
        annotation, value = kind | None, None
    option = typer.Option(flag, help=help_text, rich_help_panel=meta["panel"], show_default=False)
    return inspect.Parameter(
        spec.name,
        inspect.Parameter.KEYWORD_ONLY,
        default=value,
        annotation=Annotated[annotation, option],
    )


def config_options(*sections: type, leave_out: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """The typer options of these config sections' option fields, in declaration order."""
    params = []
    for section in sections:
        hints = typing.get_type_hints(section)
        for spec in fields(section):
            if "panel" in spec.metadata and spec.name not in leave_out:
                params.append(_config_option(spec, hints[spec.name]))
    return params


def given(options: dict, *sections: type) -> dict:
    """The options the user set (flags only when on), as config keyword arguments."""
    escaped = {f.name for s in sections for f in fields(s) if f.metadata.get("escapes")}
    result = {}
    for name, value in options.items():
        if value is None or value is False:
            continue
        if isinstance(value, (list, tuple)):  # a repeatable option
            value = [unescape(v) for v in value] if name in escaped else tuple(value)
        result[name] = value
    return result


def with_options(*sections: type, leave_out: tuple[str, ...] = ()):
    """Give a command the options of config sections after its own parameters.

    The command receives them as one dict, `options`, of the flags the user gave.
    """

    def decorate(command):
        own = [
            p
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.name != "options"
        ]
        extra = config_options(*sections, leave_out=leave_out)

        def run(**kwargs):
            options = {p.name: kwargs.pop(p.name) for p in extra}
            return command(**kwargs, options=given(options, *sections))

        run.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in own + extra}
        run.__name__, run.__doc__ = command.__name__, command.__doc__
        return run

    return decorate
