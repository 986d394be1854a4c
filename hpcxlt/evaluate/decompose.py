"""Each official metric as a function of per-example sums, so a resampled test set is scored exactly.

    example_stats(task, lang, labels, predictions) -> ExampleStats(rows n x k, score(sums) -> points)

A bootstrap over test examples (Koehn 2004) draws examples with replacement and scores the draw.
Every XTREME-R metric is a function of sums over examples, so a draw is scored as weights @ rows:
- accuracy: (correct, 1) per example (sentence, question, query);
- seqeval F1 (udpos, panx): (true-positive, predicted, gold) entities per sentence; micro F1 =
  2 TP / (P + G). seqeval finds the entities of each sentence on its own (it ends every sentence's
  chunks), so the per-sentence counts sum to the corpus counts;
- QA (EM + F1) / 2 or F1: (EM, F1, 1) per question, both maximised over the gold answers;
- mAP@20: (AP@20, 1) per query.
Scoring all rows with weight 1 gives the official number (`language_score`); a test checks that.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpcxlt.evaluate import metrics as M
from hpcxlt.evaluate.scoring import QA_METRICS, XTREME_R_TASKS
from hpcxlt.tasks.registry import get_task


@dataclass(frozen=True)
class ExampleStats:
    """Per-example sums of one language's test set and the score they give."""

    rows: np.ndarray
    """(n_examples, k) float64: each example's share of the metric's sums."""
    score: Callable[[np.ndarray], np.ndarray]
    """Sums (..., k) -> score in points (...): works on a batch of resampled sums at once."""
    keys: tuple[str, ...] | None = None
    """Each row's example id where the labels name it (QA, retrieval: the question id); None: rows by position."""


def _ratio(sums: np.ndarray) -> np.ndarray:
    return 100.0 * sums[..., 0] / sums[..., 1]


def _f1(sums: np.ndarray) -> np.ndarray:
    denominator = sums[..., 1] + sums[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 200.0 * sums[..., 0] / np.where(denominator > 0, denominator, 1), 0.0)


def _qa_mean(sums: np.ndarray) -> np.ndarray:
    return 100.0 * (sums[..., 0] + sums[..., 1]) / 2 / sums[..., 2]


def _qa_f1(sums: np.ndarray) -> np.ndarray:
    return 100.0 * sums[..., 1] / sums[..., 2]


def _accuracy_rows(labels, predictions) -> np.ndarray:
    if len(labels) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    return np.array([[float(g == p), 1.0] for g, p in zip(labels, predictions)], dtype=np.float64).reshape(-1, 2)


def _entity_rows(labels, predictions) -> np.ndarray:
    from seqeval.metrics.sequence_labeling import get_entities  # heavy: seqeval

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UPOS tags are "not NE tags" to seqeval; expected (see metrics.seqeval_f1)
        for gold, pred in zip(labels, predictions):
            gold_set, pred_set = set(get_entities(list(gold))), set(get_entities(list(pred)))
            rows.append([len(gold_set & pred_set), len(pred_set), len(gold_set)])
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _qa_rows(golds, predictions, normalize) -> np.ndarray:
    rows = []
    for qid, answers in golds.items():
        if qid not in predictions:
            rows.append([0.0, 0.0, 1.0])
            continue
        pred = normalize(predictions[qid])
        tokens = pred.split()
        rows.append(
            [
                max(float(pred == normalize(a)) for a in answers),
                max(M.token_f1(tokens, normalize(a).split()) for a in answers),
                1.0,
            ]
        )
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _map_rows(golds, rankings) -> np.ndarray:
    return np.array(
        [[M.average_precision_at_k(relevant, rankings.get(qid, ()), M.MAP_K), 1.0] for qid, relevant in golds.items()],
        dtype=np.float64,
    ).reshape(-1, 2)


def example_stats(task: str, lang: str, labels: Any, predictions: Any, *, qa_convention: str = "em_f1") -> ExampleStats:
    """Per-example sums of one language of an XTREME-R task (labels/predictions as `submission.read_pair` gives)."""
    if task not in XTREME_R_TASKS:
        raise ValueError(f"task {task!r} is not an XTREME-R task; they are {', '.join(XTREME_R_TASKS)}")
    metric = get_task(task).metric
    if metric == "accuracy":
        return ExampleStats(_accuracy_rows(labels, predictions), _ratio)
    if metric == "seqeval_f1":
        if len(labels) != len(predictions):
            raise ValueError(f"{len(predictions)} predicted sentences for {len(labels)} labelled ones")
        return ExampleStats(_entity_rows(labels, predictions), _f1)
    if metric in QA_METRICS:
        normalize = M.squad_normalize if metric == "squad" else (lambda text: M.mlqa_normalize(text, lang))
        return ExampleStats(
            _qa_rows(labels, predictions, normalize), _qa_f1 if qa_convention == "f1" else _qa_mean, tuple(labels)
        )
    if metric == "map_at_20":
        return ExampleStats(_map_rows(labels, predictions), _ratio, tuple(labels))
    raise ValueError(f"task {task!r}: no per-example decomposition of metric {metric!r}")
