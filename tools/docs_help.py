"""Refresh the option reference of the manual (docs/options.md) from the CLI itself.

    python tools/docs_help.py          # rewrites docs/options.md in place
    python tools/docs_help.py --check  # exit 1 if docs/options.md is out of date

Each section headed "## `lstmgen CMD --help`" is followed by a fenced block; that block is
replaced by the output of `lstmgen CMD --help` at 100 columns ("## `lstmgen --help`" holds
the top-level help). A command that `lstmgen --help` lists and the page lacks gets a new
section at the end, so a new command appears in the reference when this runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "options.md"
BLOCK = re.compile(r"(## `lstmgen ?(\w*) --help`\n\n```text\n)(.*?)(```)", re.S)
COMMAND_ROW = re.compile(r"^│ (\w+) {2,}", re.M)  # a row of the Commands panel


# One Python prints every help asked for, each followed by this line (ten Pythons took 5 s).
SEPARATOR = "----- lstmgen docs_help -----"
PRINT_HELPS = f"""
import sys
from lstmgen.cli import main
for command in sys.argv[1:]:
    try:
        main([*command.split(), "--help"])
    except SystemExit:
        pass
    print({SEPARATOR!r}, flush=True)
"""


def help_texts(*commands: str) -> list[str]:
    """`lstmgen COMMAND --help` for each command ("" for the top level), at 100 columns."""
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-c", PRINT_HELPS, *commands],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    texts = done.stdout.split(SEPARATOR + "\n")[: len(commands)]
    return [
        "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n" for text in texts
    ]


def commands(top_help: str) -> list[str]:
    """The commands `lstmgen --help` lists, in its order."""
    panel = top_help.split("─ Commands ", 1)[-1]
    return COMMAND_ROW.findall(panel)


def refreshed(text: str) -> str:
    """The page with every help block redrawn and a section added for each missing command."""
    (top,) = help_texts("")
    on_page = [m.group(2) for m in BLOCK.finditer(text) if m.group(2)]
    missing = [c for c in commands(top) if c not in on_page]
    helps = dict(zip(on_page + missing, help_texts(*on_page, *missing), strict=True))
    helps[""] = top
    new = BLOCK.sub(lambda m: m.group(1) + helps[m.group(2)] + m.group(4), text)
    for command in missing:
        section = f"## `lstmgen {command} --help`\n\n```text\n{helps[command]}```\n"
        new = new.rstrip("\n") + "\n\n" + section
    return new


def main() -> int:
    text = PAGE.read_text(encoding="utf-8")
    new = refreshed(text)
    if "--check" in sys.argv:
        return int(new != text)
    PAGE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
