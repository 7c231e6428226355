"""The built-in python-docs corpus reads like prose: no ASCII tables, no runs of spaces."""

import re

from lstmgen.data.corpora import prose, python_docs

TOPIC = """\
Common Sequence Operations
==========================

The operations in the following table are supported by most sequence
types.  This table lists them.

+----------------------------+----------------------------------+------------+
| Operation                  | Result                           | Notes      |
|============================|==================================|============|
| "x in s"                   | "True" if an item of *s* is      | (1)        |
+----------------------------+----------------------------------+------------+



   >>> "gg" in "eggs"
   True

   octinteger   ::= "0" ("o" | "O") (["_"] octdigit)+
====  ========
"""


def test_prose_drops_tables_rules_and_alignment_and_keeps_paragraphs():
    assert prose(TOPIC) == (
        "Common Sequence Operations\n"
        "\n"
        "The operations in the following table are supported by most sequence\n"
        "types. This table lists them.\n"
        "\n"
        '>>> "gg" in "eggs"\n'
        "True"
    )


def test_python_docs_has_no_tables_and_no_runs_of_spaces():
    documents = list(python_docs())
    text = "\n\n".join(documents)
    assert len(documents) > 50 and len(text) > 300_000  # ~400 kB of the 465 kB
    assert "  " not in text and "\n\n\n" not in text
    lines = text.splitlines()
    assert not [line for line in lines if re.fullmatch(r"[=*\-~^+| ]{3,}", line)]
    assert not [line for line in lines if line and line[0] in "+|" and line[-1] in "+|"]
    assert all("\n\n" in document for document in documents if len(document) > 2_000)
