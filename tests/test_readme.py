"""The README's option reference is the CLI's own --help (tools/readme_help.py writes it)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_help_blocks_are_up_to_date():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "readme_help.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, (
        "README.md's --help blocks are stale: run python tools/readme_help.py"
    )
