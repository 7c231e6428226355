"""Named corpora that need no download."""

from __future__ import annotations

import re
from collections.abc import Iterator

# A line of a grid table (+----+----+, | a | b |), a heading's underline (=====, *****, ----)
# or a simple table's rule (=====  =====): drawing, not prose.
RULE = re.compile(r"[=*\-~^#+| ]{3,}")
ALIGNED = re.compile(r"\S {3,}\S")  # columns lined up with spaces: a table or a grammar rule
SPACES = re.compile(r"[ \t]{2,}")


def prose(text: str) -> str:
    """Text that reads like prose: table and rule lines dropped, lines without their indent,
    runs of spaces made one; paragraphs kept, one blank line between them."""
    lines: list[str] = []
    gap = False
    for line in text.splitlines():
        line = line.strip()
        if not line:
            gap = bool(lines)
            continue
        table_row = line[0] in "+|" and line[-1] in "+|"
        if table_row or RULE.fullmatch(line) or ALIGNED.search(line):
            continue
        if gap:
            lines.append("")
            gap = False
        lines.append(SPACES.sub(" ", line))
    return "\n".join(lines)


def python_docs() -> Iterator[str]:
    """The standard library's own help topics (`pydoc_data.topics`) as prose: ~400 kB of
    English (465 kB before their ASCII tables and alignment runs of spaces are dropped)."""
    from pydoc_data import topics

    for name in sorted(topics.topics):
        text = prose(topics.topics[name])
        if text:
            yield text


NAMED_CORPORA = {"python-docs": python_docs}
