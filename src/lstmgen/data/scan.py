"""The first pass of preparation, and its progress bar.

One streaming pass over the sources sees which characters occur, notes which documents are
dropped (too short, duplicate; 1 bit per document) and counts the kept documents and their
condition values; an empty corpus stops here. With --dedupe, knowing what was seen takes
12-24 bytes per distinct document.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from lstmgen.config import DataConfig
from lstmgen.data.clean import Cleaner
from lstmgen.data.docsets import DocumentBits, Hasher, HashSet, text_hash
from lstmgen.data.reading import Source, Tally
from lstmgen.data.sources import document_stream
from lstmgen.errors import LstmgenError
from lstmgen.tokens import CharCounter

BATCH_CHARS = 1 << 20  # small documents are counted in batches of about this size


@dataclass
class Scan:
    """What the first pass found."""

    counter: CharCounter
    # Ordinals of the documents left out: 1 bit per document.
    dropped: DocumentBits = field(default_factory=DocumentBits)
    documents: int = 0
    characters: int = 0  # in kept documents, separators not included
    largest: int = 0  # characters of the largest document
    short: int = 0  # empty or under --min-chars
    duplicates: int = 0
    malformed_rows: int = 0
    # kept documents by condition value, one Counter per condition column
    conditions: list[Counter] = field(default_factory=list)


def scan(sources: Sequence[Source], config: DataConfig, progress: Progress) -> Scan:
    """The first pass: see which characters occur, note the documents dropped, refuse an empty
    corpus. (How often each occurs in the training text is counted as train.bin is written.)"""
    scan = Scan(CharCounter(exact=False))  # which characters occur: all that is needed here
    cleaner, cleans = Cleaner(config), config.cleans_text
    min_chars = max(config.min_chars, 1)
    seen = HashSet() if config.dedupe else None  # 12-24 bytes per distinct document
    kept_by_spec = {s.spec or s.name: 0 for s in sources}
    batch: list[str] = []
    batch_chars = 0
    tally = progress.start("counting")
    documents = document_stream(sources, config, tally=tally, utf8=not cleans)
    for ordinal, (source, document) in enumerate(documents):
        condition = None
        if isinstance(document, tuple):  # (condition, text): a row of --condition-column
            condition, document = document
        if isinstance(document, str):
            text = cleaner.text(document) if cleans else document
            length = len(text)
            digest = text_hash(text) if seen is not None and length >= min_chars else 0
            counts = None
        else:  # a large document in chunks: counted on its own, kept only if it passes
            counts = CharCounter(exact=False)
            hasher = Hasher()
            for chunk in cleaner.chunks(document) if cleans else document:
                counts.update(chunk)
                if seen is not None:
                    hasher.update(chunk)
                progress.advance(ordinal)
            length, digest = counts.total, hasher.value()
        if length < min_chars:
            scan.dropped.add(ordinal)
            scan.short += 1
        elif seen is not None and not seen.add(digest):
            scan.dropped.add(ordinal)
            scan.duplicates += 1
        else:
            if counts is None:
                batch.append(text)
                batch_chars += length
                if batch_chars >= BATCH_CHARS:
                    scan.counter.update("".join(batch))
                    batch, batch_chars = [], 0
            else:
                scan.counter.merge(counts)
            if condition is not None:
                if not scan.conditions:
                    scan.conditions = [Counter() for _ in condition]
                for counter, value in zip(scan.conditions, condition, strict=True):
                    counter[value] += 1
            scan.documents += 1
            scan.characters += length
            scan.largest = max(scan.largest, length)
            kept_by_spec[source.spec or source.name] += 1
        if ordinal % 512 == 0:
            progress.advance(ordinal)
    scan.counter.update("".join(batch))
    # Separators are text the model sees too.
    scan.counter.update(config.doc_separator, times=max(scan.documents - 1, 0))
    scan.malformed_rows = tally.malformed_rows
    for spec, kept in kept_by_spec.items():
        if not kept:
            why = []
            if scan.short:
                why.append(f"{scan.short:,} empty or under --min-chars")
            if scan.duplicates:
                why.append(f"{scan.duplicates:,} duplicates")
            if tally.malformed_rows:
                why.append(f"{tally.malformed_rows:,} malformed rows")
            detail = f" ({', '.join(why)} dropped in all)" if why else ""
            raise LstmgenError(
                f"the corpus is empty: {spec} yields no documents after cleaning{detail}; "
                f"check the file, the --column/--field/--query, or loosen --min-chars"
            )
    return scan


class Progress:
    """A progress bar on stderr (MB/s, documents/s), only on a terminal and without --quiet."""

    def __init__(self, sources: Sequence[Source], *, quiet: bool):
        paths = {s.path for s in sources if s.path is not None}
        self.total_bytes = sum(os.path.getsize(p) for p in paths)
        self.bar = None
        self.tally = Tally()
        self.seconds = {}
        self.phase = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description:>9}"),
                BarColumn(),
                TextColumn("{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self._finish_phase()
        if self.bar is not None:
            self.bar.stop()

    def start(self, phase: str) -> Tally:
        self._finish_phase()
        self.phase, self.tally, self.started = phase, Tally(), time.perf_counter()
        if self.bar is not None:
            self.task = self.bar.add_task(phase, total=max(self.total_bytes, 1), rate="")
        return self.tally

    def advance(self, documents: int) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        read_bytes = self.tally.bytes_read
        rate = f"{read_bytes / elapsed / 1e6:6.1f} MB/s  {documents / elapsed:8,.0f} docs/s"
        self.bar.update(self.task, completed=min(read_bytes, self.total_bytes), rate=rate)

    def _finish_phase(self) -> None:
        if self.phase is not None:
            self.seconds[self.phase] = time.perf_counter() - self.started
            self.phase = None
