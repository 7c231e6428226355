"""How well a conditioned model classifies labelled documents: accuracy, macro-F1, the
confusion matrix and, for a split of the values into two groups, the ROC AUC. No PyTorch.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

from lstmgen.errors import LstmgenError


def report(
    values: Sequence[str],
    posterior: np.ndarray,
    labels: Sequence[str],
    *,
    positive: Sequence[str] = (),
    negative: Sequence[str] = (),
) -> dict:
    """Scores of predictions (the most likely value of each row of posterior (N, K)) against
    the documents' own labels; documents whose label is not one of the values are left out.
    With positive and negative groups of values, the ROC AUC of P(positive) between the
    documents labelled with either group."""
    values = list(values)
    index = {v: i for i, v in enumerate(values)}
    known = np.array([label in index for label in labels], dtype=bool)
    truth = np.array([index.get(label, -1) for label in labels], dtype=np.int64)[known]
    predicted = posterior.argmax(1)[known]
    confusion = np.zeros((len(values), len(values)), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    f1 = []
    for k in range(len(values)):
        hits, said, real = confusion[k, k], confusion[:, k].sum(), confusion[k].sum()
        if real:  # a value no document has does not count towards the macro average
            f1.append(2 * hits / (said + real) if said + real else 0.0)
    result = {
        "documents": int(known.sum()),
        "accuracy": float((truth == predicted).mean()) if len(truth) else None,
        "macro_f1": float(np.mean(f1)) if f1 else None,
        "values": values,
        "confusion": confusion.tolist(),  # rows: the label, columns: the prediction
    }
    if positive or negative:
        result["auc"] = two_group_auc(values, posterior, labels, positive, negative)
        result["positive"], result["negative"] = list(positive), list(negative)
    return result


def two_group_auc(
    values: Sequence[str],
    posterior: np.ndarray,
    labels: Sequence[str],
    positive: Sequence[str],
    negative: Sequence[str],
) -> float | None:
    """ROC AUC of the posterior mass on the positive values, between documents labelled
    positive and negative (others left out): the chance a positive one scores higher."""
    check_groups(values, positive, negative)
    columns = [list(values).index(v) for v in positive]
    score = posterior[:, columns].sum(1)
    grouped = np.array([label in positive or label in negative for label in labels], dtype=bool)
    return _auc(
        score[grouped], [label in positive for label in labels if label in (*positive, *negative)]
    )


def check_groups(values: Sequence[str], positive: Sequence[str], negative: Sequence[str]) -> None:
    """Refuse --positive/--negative groups that name no value of the column, or overlap."""
    unknown = [v for v in (*positive, *negative) if v not in values]
    if unknown:
        raise LstmgenError(
            f"--positive/--negative name {unknown[0]!r}, which is not a value of the column; "
            f"its values: {', '.join(values)}"
        )
    if not positive or not negative or set(positive) & set(negative):
        raise LstmgenError("give both --positive and --negative, with no value in both")


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inverse, ranks)
    return (sums / counts)[inverse]


def groups(text: str | None) -> list[str]:
    """'4,5' → ['4', '5']."""
    return [v.strip() for v in (text or "").split(",") if v.strip()]


class Tallied:
    """report()'s scores summed as predictions come, in memory that does not grow with their
    count: the confusion matrix, predictions per value and, for the ROC AUC, one float per
    document labelled with a group (8 bytes each)."""

    def __init__(self, values: Sequence[str], positive=(), negative=()):
        self.values, self.positive, self.negative = list(values), list(positive), list(negative)
        if positive or negative:
            check_groups(self.values, positive, negative)
        self.index = {v: i for i, v in enumerate(self.values)}
        self.confusion = np.zeros((len(self.values), len(self.values)), dtype=np.int64)
        self.predicted = np.zeros(len(self.values), dtype=np.int64)
        self.columns = [self.index[v] for v in self.positive]
        self.group_scores = array("d")  # P(positive) of each document labelled with a group
        self.group_positive = array("b")  # whether it is labelled positive
        self.labelled = False

    def add(self, posterior: np.ndarray, labels: Sequence[str | None]) -> None:
        """A batch: posterior (n, K) and each document's label (None: none)."""
        predicted = posterior.argmax(1)
        np.add.at(self.predicted, predicted, 1)
        for row, label in enumerate(labels):
            if label is None:
                continue
            self.labelled = True
            if label in self.index:
                self.confusion[self.index[label], predicted[row]] += 1
            if label in self.positive or label in self.negative:
                self.group_scores.append(float(posterior[row, self.columns].sum()))
                self.group_positive.append(label in self.positive)

    def result(self) -> dict:
        if not self.labelled:
            return {"accuracy": None, "macro_f1": None, "confusion": None}
        f1 = []
        for k in range(len(self.values)):
            c = self.confusion
            hits, said, real = c[k, k], c[:, k].sum(), c[k].sum()
            if real:  # a value no document has does not count towards the macro average
                f1.append(2 * hits / (said + real) if said + real else 0.0)
        total = int(self.confusion.sum())
        result = {
            "accuracy": float(np.trace(self.confusion) / total) if total else None,
            "macro_f1": float(np.mean(f1)) if f1 else None,
            "confusion": self.confusion.tolist(),  # rows: the label, columns: the prediction
        }
        if self.positive or self.negative:
            result["auc"] = _auc(np.frombuffer(self.group_scores), self.group_positive)
            result["positive"], result["negative"] = self.positive, self.negative
        return result


def _auc(score: np.ndarray, is_positive: Sequence[bool]) -> float | None:
    is_positive = np.array(is_positive, dtype=bool)
    pos, neg = score[is_positive], score[~is_positive]
    if not len(pos) or not len(neg):
        return None
    # Mann-Whitney: the share of (positive, negative) pairs ordered right; ties count half.
    ranks = _ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
