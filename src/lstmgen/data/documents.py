"""What evaluate and classify read from their sources, one piece at a time: the text of held-out
documents as a store joins them, or each labelled document with its source and row."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from lstmgen.config import DataConfig, ReadOptions
from lstmgen.data.clean import Cleaner
from lstmgen.data.reading import Tally
from lstmgen.data.sources import document_stream, documents, resolve_sources
from lstmgen.data.store import DOC_SEPARATOR


def text_pieces(specs: Iterable[str], options: ReadOptions) -> Iterator[str]:
    """The named sources' documents as one text, joined as a store joins them, in pieces (a
    file's chunks as they are read; nothing held but the piece): for evaluation."""
    with tempfile.TemporaryDirectory() as spool:
        resolved = resolve_sources(specs, spool_dir=Path(spool), options=options)
        first = True
        for source in resolved:
            for document in documents(source, options):
                if not first:
                    yield DOC_SEPARATOR
                first = False
                if isinstance(document, str):
                    yield document
                else:
                    yield from document


def read_documents(specs: Iterable[str], options: ReadOptions) -> str:
    """The named sources' documents as one text, joined as a store joins them."""
    return "".join(text_pieces(specs, options))


def labelled_documents(
    specs: Iterable[str], config: DataConfig, tally: Tally
) -> Iterator[tuple[str, int, str, tuple[str, ...] | None]]:
    """Each document of the named sources, one at a time: the source's name, its row there
    (0-based, counting the malformed rows skipped, so it joins back to the input), its text
    cleaned as prepare cleans it, and its condition values where the config names condition
    columns (fields) (for classify). The tally counts and notes what was skipped."""
    cleaner = Cleaner(config)
    with tempfile.TemporaryDirectory() as spool:
        resolved = resolve_sources(specs, spool_dir=Path(spool), options=config)
        name, kept = None, 0
        for source, document in document_stream(resolved, config, tally=tally):
            kept = kept + 1 if source.name == name else 0
            name = source.name
            row = kept + tally.malformed_in.get(name, 0)  # the rows skipped before this one
            values = None
            if isinstance(document, tuple):
                values, document = document
            text = document if isinstance(document, str) else "".join(document)
            yield name, row, cleaner.text(text) if config.cleans_text else text, values
