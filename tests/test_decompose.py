"""Per-example sums reproduce each official metric exactly, so the bootstrap resamples the real metric."""

from __future__ import annotations

import numpy as np
import pytest

from hpcxlt.evaluate.decompose import example_stats
from hpcxlt.evaluate.scoring import XTREME_R_TASKS, language_metrics, language_score
from hpcxlt.evaluate.submission import read_pair, task_folders
from tests.real_data import real_dir
from tests.test_real_data import OFFICIAL_MOCK_AVERAGES


def test_summed_rows_give_the_official_scorer_numbers_on_its_mock_submission():
    mock = real_dir() / "xtreme-mock"
    checked = 0
    for task in task_folders(mock / "predictions"):
        if task not in XTREME_R_TASKS:
            continue  # bucc2018, pawsx: XTREME tasks that XTREME-R dropped
        scores = []
        for path in sorted((mock / "labels" / task).iterdir()):
            lang = path.stem.removeprefix("test-")
            labels, predictions = read_pair(mock / "predictions", mock / "labels", task, lang)
            stats = example_stats(task, lang, labels, predictions)
            score = float(stats.score(stats.rows.sum(0)))
            assert score == pytest.approx(
                language_score(task, language_metrics(task, lang, labels, predictions)), abs=1e-9
            ), (task, lang)
            # a batch of resampled sums is scored at once: here the identity draw, twice
            assert np.allclose(stats.score(np.stack([stats.rows.sum(0)] * 2)), score)
            scores.append(score)
            checked += 1
        official = OFFICIAL_MOCK_AVERAGES.get(task)
        if official and task != "udpos":  # udpos differs by seqeval release (see test_real_data)
            key = {"xquad": None, "mlqa": None, "tydiqa": None}.get(task, next(iter(official)))
            expected = (official["exact_match"] + official["f1"]) / 2 if key is None else official[key]
            assert sum(scores) / len(scores) == pytest.approx(expected, abs=1e-9), task
    assert checked >= 30


def test_a_qa_question_without_a_prediction_scores_zero_and_f1_convention():
    stats = example_stats("xquad", "en", {"a": ["red cat"], "b": ["dog"]}, {"a": "red cat"}, qa_convention="f1")
    assert stats.rows.tolist() == [[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]]
    assert float(stats.score(stats.rows.sum(0))) == pytest.approx(50.0)
