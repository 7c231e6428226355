"""Named corpora that need no download."""

from __future__ import annotations

from collections.abc import Iterator


def python_docs() -> Iterator[str]:
    """The standard library's own help topics (`pydoc_data.topics`): ~465 kB of English."""
    from pydoc_data import topics

    for name in sorted(topics.topics):
        yield topics.topics[name]


NAMED_CORPORA = {"python-docs": python_docs}
