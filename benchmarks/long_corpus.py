"""A corpus of 10.5 MB from text every machine of ours has: the Python standard library's own
sources (the running interpreter's, tests and generated tables left out), in sorted order, cut
at --megabytes. For issue 32's budget curve (60 s, 600 s, 1 h on one corpus):

    python benchmarks/long_corpus.py benchmarks/out/stdlib.txt
    python benchmarks/quality_vs_time.py benchmarks/out/stdlib.txt --budget 3600 --eval-every 5m

Prints what went in (files, megabytes) and writes a .json beside the text with the list.
"""

from __future__ import annotations

import argparse
import json
import sysconfig
from pathlib import Path

SKIP_PARTS = {"test", "tests", "site-packages", "__pycache__", "encodings"}


def sources(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts)
        if parts & SKIP_PARTS or path.name.startswith("_pydecimal"):
            continue
        files.append(path)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--megabytes", type=float, default=10.5)
    args = parser.parse_args()
    root = Path(sysconfig.get_paths()["stdlib"])
    limit, taken, size = int(args.megabytes * 1e6), [], 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for path in sources(root):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            text = text.rstrip() + "\n\n"
            out.write(text)
            size += len(text.encode("utf-8"))
            taken.append(str(path.relative_to(root)))
            if size >= limit:
                break
    record = {"root": str(root), "files": len(taken), "bytes": size, "list": taken}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{args.out}: {size / 1e6:.1f} MB from {len(taken)} files of {root}")
    if size < limit:
        print(f"note: the standard library held only {size / 1e6:.1f} MB of sources")


if __name__ == "__main__":
    main()
