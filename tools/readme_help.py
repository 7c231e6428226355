"""Refresh the `--help` blocks of README.md from the CLI itself.

    python tools/readme_help.py          # rewrites README.md in place
    python tools/readme_help.py --check  # exit 1 if README.md is out of date

Each section headed "### `lstmgen CMD --help`" is followed by a fenced block;
that block is replaced by the output of `lstmgen CMD --help` at 100 columns.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(### `lstmgen (\w+) --help`\n\n```\n)(.*?)(```)", re.S)


def help_text(command: str) -> str:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lstmgen", command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return "\n".join(line.rstrip() for line in done.stdout.splitlines()).strip("\n") + "\n"


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = BLOCK.sub(lambda m: m.group(1) + help_text(m.group(2)) + m.group(4), text)
    if "--check" in sys.argv:
        return int(new != text)
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
