"""How well a conditioned model classifies labelled documents: accuracy, macro-F1, the
confusion matrix and, for a split of the values into two groups, the ROC AUC. No PyTorch.
"""

from __future__ import annotations

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
    unknown = [v for v in (*positive, *negative) if v not in values]
    if unknown:
        raise LstmgenError(
            f"--positive/--negative name {unknown[0]!r}, which is not a value of the column; "
            f"its values: {', '.join(values)}"
        )
    if not positive or not negative or set(positive) & set(negative):
        raise LstmgenError("give both --positive and --negative, with no value in both")
    columns = [list(values).index(v) for v in positive]
    score = posterior[:, columns].sum(1)
    is_positive = np.array([label in positive for label in labels])
    is_negative = np.array([label in negative for label in labels])
    pos, neg = score[is_positive], score[is_negative]
    if not len(pos) or not len(neg):
        return None
    # Mann-Whitney: the share of (positive, negative) pairs ordered right; ties count half.
    ranks = _ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


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
