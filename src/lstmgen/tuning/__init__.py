"""`lstmgen tune`: a hyper-parameter search a user can leave running, kill and resume.

The search is in search.py, its space in space.py, and its results (best.json, plots, the
table) in report.py.
"""

from __future__ import annotations

from lstmgen.tuning.search import tune

__all__ = ["tune"]
