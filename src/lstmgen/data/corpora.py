"""Named corpora that need no download: python-docs (in every CPython) and tiny-shakespeare
(shipped in the package, gzipped); `python -m lstmgen.data.corpora kinds.csv` writes a small
table of both, labelled, for trying conditions and classify."""

from __future__ import annotations

import csv
import gzip
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path

# char-rnn's tiny-shakespeare (karpathy/char-rnn data/tinyshakespeare/input.txt, 1,115,394
# bytes, sha256 86c4e6aa...c565ed): about 40,000 lines of the plays. Public domain.
TINY_SHAKESPEARE = Path(__file__).with_name("tinyshakespeare.txt.gz")

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


def tiny_shakespeare() -> Iterator[str]:
    """tiny-shakespeare as one document (1.1 MB, as char-rnn trained on it)."""
    with gzip.open(TINY_SHAKESPEARE, "rt", encoding="utf-8", newline="") as f:
        yield f.read()


NAMED_CORPORA = {"python-docs": python_docs, "tiny-shakespeare": tiny_shakespeare}


def kinds_table(out: Path, *, rows: int = 600, held_out: int = 100, seed: int = 0) -> Path:
    """A CSV of short texts of two kinds (kind,text): speeches from tiny-shakespeare ("play")
    and paragraphs of python-docs ("docs"), `rows` of each, shuffled; and beside it
    OUT-held-out.csv with the next `held_out` of each (texts the first file does not hold)."""
    speeches = [s for s in next(tiny_shakespeare()).split("\n\n") if len(s) >= 80]
    paragraphs = [p for doc in python_docs() for p in doc.split("\n\n") if len(p) >= 80]
    other = out.with_name(f"{out.stem}-held-out{out.suffix}")
    for path, first, last in ((out, 0, rows), (other, rows, rows + held_out)):
        table = [("play", s) for s in speeches[first:last]]
        table += [("docs", p) for p in paragraphs[first:last]]
        random.Random(seed).shuffle(table)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["kind", "text"])
            writer.writerows(table)
    return other


if __name__ == "__main__":  # python -m lstmgen.data.corpora OUT.csv
    if len(sys.argv) != 2:
        sys.exit("usage: python -m lstmgen.data.corpora OUT.csv")
    other = kinds_table(Path(sys.argv[1]))
    print(
        f"wrote {sys.argv[1]} (600 texts of each kind: play, docs) and {other} (100 more of each)"
    )
