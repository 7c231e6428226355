"""The one exception type for user mistakes, and the warning channel."""

from __future__ import annotations

import sys


class LstmgenError(Exception):
    """A problem with the user's input: the message names it and says what to do.

    The command line prints it as one line on stderr and exits with code 2.
    """


def warn(message: str) -> None:
    """Print a one-line warning to stderr (never to stdout, which may carry generated text)."""
    print(f"lstmgen: warning: {message}", file=sys.stderr, flush=True)


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
