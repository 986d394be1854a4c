"""From per-language metrics to task, category and XTREME-R scores, as the official scorer does.

google-research/xtreme `evaluate.py` averages every metric over a task's languages; a task's score
is the average F1 (udpos, panx), average accuracy (xnli, xcopa, tatoeba), average mAP@20 (mewslix,
lareqa) or, for QA, (average EM + average F1) / 2. A category score is the mean of its tasks'
scores and the XTREME-R score the mean of all ten (Ruder et al. 2021, "XTREME-R"; evaluate.py shows
a group or overall score only when all of its tasks are present). Some later papers average QA by
F1 only: `qa_convention="f1"` gives that.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from statistics import fmean
from typing import Any

from hpcxlt.config.schema import QA_CONVENTIONS
from hpcxlt.evaluate import metrics as M
from hpcxlt.evaluate.submission import (
    LAYOUT,
    SubmissionError,
    file_name,
    file_path,
    id_coverage,
    read_pair,
    task_folders,
)
from hpcxlt.tasks.registry import get_task
from hpcxlt.tasks.spec import CATEGORIES, TaskSpec

XTREME_R_TASKS = ("xnli", "xcopa", "udpos", "panx", "xquad", "mlqa", "tydiqa", "tatoeba", "mewslix", "lareqa")
"""The ten XTREME-R tasks (Ruder et al. 2021), in the registry's order; metric, category and languages come from the registry."""

QA_METRICS = ("squad", "mlqa")


def _check_convention(qa_convention: str) -> None:
    if qa_convention not in QA_CONVENTIONS:
        raise ValueError(f"qa_convention: {qa_convention!r} is not allowed; choose one of {', '.join(QA_CONVENTIONS)}")


def _xtreme_r_spec(task: str):
    if task not in XTREME_R_TASKS:
        raise ValueError(f"task {task!r} is not an XTREME-R task; they are {', '.join(XTREME_R_TASKS)}")
    return get_task(task)


def category_tasks() -> dict[str, tuple[str, ...]]:
    """XTREME-R category -> its tasks, in CATEGORIES order (from the registry's `category`)."""
    groups: dict[str, list[str]] = {category: [] for category in CATEGORIES}
    for task in XTREME_R_TASKS:
        category = get_task(task).category
        if category is None:
            raise ValueError(f"XTREME-R task {task!r} has no category in the registry")
        groups[category].append(task)
    return {category: tuple(tasks) for category, tasks in groups.items()}


# --- one language ------------------------------------------------------------------------------


def language_metrics(task: str, lang: str, labels: Any, predictions: Any) -> dict[str, float]:
    """Score one language of `task` with its official metric; points, keyed by metric name.

    `labels` and `predictions` are what `hpcxlt.evaluate.submission.read_labels` / `read_predictions`
    return for the task. xquad and tydiqa use the SQuAD v1.1 normaliser in every language, mlqa the
    MLQA one for `lang`, as the official scorer does.
    """
    metric = _xtreme_r_spec(task).metric
    if metric == "accuracy":
        return M.accuracy(labels, predictions)
    if metric == "seqeval_f1":
        return M.seqeval_f1(labels, predictions)
    if metric == "squad":
        return M.squad_em_f1(labels, predictions)
    if metric == "mlqa":
        return M.mlqa_em_f1(labels, predictions, lang)
    if metric == "map_at_20":
        return M.map_at_k(labels, predictions, k=20)
    raise ValueError(f"task {task!r}: unknown metric {metric!r}")


def language_score(task: str, metrics: Mapping[str, float], *, qa_convention: str = "em_f1") -> float:
    """The one number per language: (EM+F1)/2 (or F1) for QA, F1 for tagging, else accuracy or mAP@20."""
    return _score_of(_xtreme_r_spec(task).metric, task, metrics, qa_convention)


def dev_metrics(spec: TaskSpec, lang: str, labels: Any, predictions: Any) -> dict[str, float]:
    """Any registered task's own metric (intermediate tasks too), for model selection on dev data.

    XTREME-R tasks score exactly as `language_metrics`. A tagging task scored by accuracy (CCG,
    Phang et al. 2020) counts tags, not whole sentences.
    """
    if spec.name in XTREME_R_TASKS:
        return language_metrics(spec.name, lang, labels, predictions)
    if spec.metric == "accuracy" and spec.format == "tagging":
        return M.accuracy([t for tags in labels for t in tags], [t for tags in predictions for t in tags])
    scorers: dict[str, Callable[[Any, Any], dict[str, float]]] = {
        "accuracy": M.accuracy,
        "seqeval_f1": M.seqeval_f1,
        "squad": M.squad_em_f1,
        "map_at_20": lambda gold, pred: M.map_at_k(gold, pred, k=20),
    }
    if spec.metric == "mlqa":
        return M.mlqa_em_f1(labels, predictions, lang)
    if spec.metric not in scorers:
        raise ValueError(f"task {spec.name!r}: unknown metric {spec.metric!r}")
    return scorers[spec.metric](labels, predictions)


def dev_score(spec: TaskSpec, metrics: Mapping[str, float], *, qa_convention: str = "em_f1") -> float:
    """The one number `dev_metrics` selects by: the same rule as `language_score`, for any registered task."""
    return _score_of(spec.metric, spec.name, metrics, qa_convention)


def score_terms(metric: str, qa_convention: str) -> tuple[str, ...]:
    """The metrics whose mean is a language's score under `metric` (the task's registry metric):
    EM and F1 (or F1 alone) for QA, F1 for tagging, else accuracy or mAP@20. The one definition that
    `language_score` and the aggregation's column-wise reader (`hpcxlt.aggregate.columns`) share."""
    _check_convention(qa_convention)
    if metric in QA_METRICS:
        return ("f1",) if qa_convention == "f1" else ("exact_match", "f1")
    return ({"accuracy": "accuracy", "seqeval_f1": "f1", "map_at_20": "map_at_20"}[metric],)


def _score_of(metric: str, task: str, metrics: Mapping[str, float], qa_convention: str) -> float:
    terms = score_terms(metric, qa_convention)
    try:
        if len(terms) == 1:
            return float(metrics[terms[0]])
        return (float(metrics[terms[0]]) + float(metrics[terms[1]])) / 2
    except KeyError as err:
        raise ValueError(f"task {task!r}: metrics {sorted(metrics)} lack {err.args[0]!r}") from None


# --- one task ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TaskResult:
    """One task's scores."""

    task: str
    """XTREME-R task name."""
    category: str
    """Its XTREME-R category (one of CATEGORIES)."""
    languages: Mapping[str, Mapping[str, float]]
    """Language -> metric name -> points, in the registry's language order."""
    averages: Mapping[str, float]
    """Metric name -> its mean over the languages (the official 'avg_<metric>')."""
    score: float
    """The task score: mean over languages of the per-language score."""
    missing_languages: tuple[str, ...] = ()
    """Task languages without metrics (only with partial=True); non-empty makes the result partial."""


def task_result(
    task: str,
    per_language: Mapping[str, Mapping[str, float]],
    *,
    qa_convention: str = "em_f1",
    partial: bool = False,
) -> TaskResult:
    """Average `task`'s per-language metrics into its score.

    Every language of the task must be present, unless `partial` is true: then the mean runs over
    the languages present and `missing_languages` lists the others. A language the task does not
    have is an error either way.
    """
    _check_convention(qa_convention)
    spec = _xtreme_r_spec(task)
    extra = [lang for lang in per_language if lang not in spec.languages]
    if extra:
        raise ValueError(f"task {task!r}: {', '.join(extra)} not among its languages {', '.join(spec.languages)}")
    present = [lang for lang in spec.languages if lang in per_language]
    missing = tuple(lang for lang in spec.languages if lang not in per_language)
    if not present:
        raise ValueError(f"task {task!r}: no language has metrics")
    if missing and not partial:
        raise ValueError(f"task {task!r}: no metrics for {', '.join(missing)} (pass partial=True to average the rest)")
    languages = {lang: dict(per_language[lang]) for lang in present}
    names = [name for name in languages[present[0]] if all(name in m for m in languages.values())]
    averages = {name: fmean(m[name] for m in languages.values()) for name in names}
    score = fmean(language_score(task, languages[lang], qa_convention=qa_convention) for lang in present)
    return TaskResult(
        task=task,
        category=spec.category,
        languages=languages,
        averages=averages,
        score=score,
        missing_languages=missing,
    )


def task_score(
    task: str, per_language: Mapping[str, Mapping[str, float]], *, qa_convention: str = "em_f1", partial: bool = False
) -> float:
    """The task score alone; see `task_result`."""
    return task_result(task, per_language, qa_convention=qa_convention, partial=partial).score


# --- all tasks ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class XtremeRResult:
    """Scores of a whole submission: tasks, categories and the XTREME-R score."""

    tasks: Mapping[str, TaskResult]
    """Task -> its result, for the tasks that were scored, in XTREME_R_TASKS order."""
    categories: Mapping[str, float | None]
    """Category -> mean of its task scores; None when a task of it is missing (unless partial)."""
    xtreme_r: float | None
    """Mean of the ten task scores; None when a task is missing (unless partial)."""
    partial: bool
    """True when some score above averages fewer tasks or languages than XTREME-R defines."""
    qa_convention: str
    """'em_f1' ((EM+F1)/2 per QA task) or 'f1'."""
    notes: tuple[str, ...] = field(default=())
    """Things the user should know (ignored folders, unanswered questions)."""

    def to_json(self) -> dict[str, Any]:
        """{'tasks': {task: {'languages', 'averages', 'score'}}, 'categories', 'xtreme_r', 'partial', 'qa_convention',
        'versions'}; 'versions' names the seqeval release, since UD-POS F1 depends on it (metrics.seqeval_f1)."""

        tasks = {
            name: {
                "languages": {lang: dict(m) for lang, m in r.languages.items()},
                "averages": dict(r.averages),
                "score": r.score,
            }
            for name, r in self.tasks.items()
        }
        return {
            "tasks": tasks,
            "categories": dict(self.categories),
            "xtreme_r": self.xtreme_r,
            "partial": self.partial,
            "qa_convention": self.qa_convention,
            "versions": {"seqeval": version("seqeval")},
        }


def summarize(
    per_task: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    qa_convention: str = "em_f1",
    partial: bool = False,
    notes: tuple[str, ...] = (),
) -> XtremeRResult:
    """Task, category and XTREME-R scores from task -> language -> metric -> points.

    Without `partial` a category (or XTREME-R) score is None unless all of its tasks are present,
    like the official scorer, and a task must have all its languages. With `partial` the means run
    over what is present and the result is marked partial when anything was missing.
    """
    _check_convention(qa_convention)
    unknown = [task for task in per_task if task not in XTREME_R_TASKS]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not XTREME-R tasks; they are {', '.join(XTREME_R_TASKS)}")
    tasks = {
        task: task_result(task, per_task[task], qa_convention=qa_convention, partial=partial)
        for task in XTREME_R_TASKS
        if task in per_task
    }
    is_partial = any(r.missing_languages for r in tasks.values())

    def mean_of(names: tuple[str, ...]) -> tuple[float | None, bool]:
        scores = [tasks[name].score for name in names if name in tasks]
        complete = len(scores) == len(names)
        if complete or (partial and scores):
            return fmean(scores), not complete
        return None, False

    categories: dict[str, float | None] = {}
    for category, names in category_tasks().items():
        categories[category], cut = mean_of(names)
        is_partial = is_partial or cut
    xtreme_r, cut = mean_of(XTREME_R_TASKS)
    is_partial = is_partial or cut or (partial and len(tasks) < len(XTREME_R_TASKS))
    return XtremeRResult(
        tasks=tasks,
        categories=categories,
        xtreme_r=xtreme_r,
        partial=is_partial,
        qa_convention=qa_convention,
        notes=notes,
    )


def _unknown_predictions(task: str, labels: Any, predictions: Any) -> str | None:
    """A note when no prediction is one of the labels the gold file uses (other names, another case, ids
    instead of names): the language then scores 0 although the model may be right."""
    kind = LAYOUT[task][0]
    if kind == "tags":
        gold = {tag for sentence in labels for tag in sentence}
        said = {tag for sentence in predictions for tag in sentence}
    elif kind in ("lines", "xcopa"):
        gold, said = set(map(str, labels)), set(map(str, predictions))
    else:
        return None
    if said and gold and not said & gold:
        return (
            f"none of its {len(said)} distinct predicted labels ({', '.join(sorted(said)[:5])}) is a label of the "
            f"gold file ({', '.join(sorted(gold)[:5])}): it scores 0; were other names used?"
        )
    return None


def score_submission(
    pred_folder: str | os.PathLike,
    label_folder: str | os.PathLike,
    *,
    qa_convention: str = "em_f1",
    partial: bool = False,
) -> XtremeRResult:
    """Score a prediction folder against a label folder in the official layout.

    A task is scored when both folders have it; a task in only one folder, a missing language file,
    or files that do not line up raise `SubmissionError` naming the file. Folders that are not
    XTREME-R tasks are skipped with a note.
    """
    _check_convention(qa_convention)
    pred_tasks, label_tasks = set(task_folders(pred_folder)), set(task_folders(label_folder))
    notes: list[str] = [
        f"{os.path.join(folder, name)}: not an XTREME-R task, ignored"
        for folder, names in ((pred_folder, pred_tasks), (label_folder, label_tasks))
        for name in sorted(names - set(XTREME_R_TASKS))
    ]
    per_task: dict[str, dict[str, dict[str, float]]] = {}
    for task in XTREME_R_TASKS:
        if task in pred_tasks and task not in label_tasks:
            raise SubmissionError(
                f"{os.path.join(pred_folder, task)}: task {task} has predictions but no folder in {label_folder}"
            )
        if task in label_tasks and task not in pred_tasks:
            raise SubmissionError(
                f"{os.path.join(label_folder, task)}: task {task} has labels but no folder in {pred_folder}"
            )
        if task not in pred_tasks:
            continue
        per_task[task] = {}
        gold_ids = missing = unexpected = 0
        skipped = []
        expected = {file_name(task, lang) for lang in get_task(task).languages}
        for folder in (pred_folder, label_folder):  # a misnamed file would otherwise be passed over in silence
            stray = sorted(
                p.name
                for p in (Path(folder) / task).iterdir()
                if p.is_file() and not p.name.startswith(".") and p.name not in expected
            )
            if stray:
                notes.append(
                    f"{os.path.join(folder, task)}: {', '.join(stray)} not a file of the layout "
                    f"(test-<lang>.{file_name(task, 'x').rsplit('.', 1)[1]} for a language of {task}), ignored"
                )
        for lang in get_task(task).languages:
            if partial and not (
                os.path.exists(file_path(pred_folder, task, lang))
                or os.path.exists(file_path(label_folder, task, lang))
            ):
                # A run on a language subset: with --partial, languages absent from BOTH folders are left
                # out (and the task marked partial); a file on one side only is still a mismatch.
                skipped.append(lang)
                continue
            try:
                labels, predictions = read_pair(pred_folder, label_folder, task, lang)
            except SubmissionError as err:
                if partial and "file is missing" in str(err):
                    raise SubmissionError(
                        f"{err.args[0].split(':')[0]}: file is missing while the other folder has {task}'s {lang} file "
                        "(--partial leaves out a language missing from both folders, not from one)"
                    ) from None
                raise
            unknown = _unknown_predictions(task, labels, predictions)
            if unknown:
                notes.append(f"{file_path(pred_folder, task, lang)}: {unknown}")
            lang_missing, lang_unexpected = id_coverage(labels, predictions)
            gold_ids, missing, unexpected = gold_ids + len(labels), missing + lang_missing, unexpected + lang_unexpected
            try:
                per_task[task][lang] = language_metrics(task, lang, labels, predictions)
            except ValueError as err:
                raise SubmissionError(f"{file_path(pred_folder, task, lang)}: {err}") from None
        where = os.path.join(pred_folder, task)
        if skipped:
            notes.append(
                f"{where}: no files for {len(skipped)} of its languages ({' '.join(skipped)}); scored over the rest (partial)"
            )
        if missing:
            notes.append(f"{where}: {missing} of {gold_ids} gold ids have no prediction and score 0")
        if unexpected:
            notes.append(f"{where}: {unexpected} predicted ids are not in the labels and are ignored")
    return summarize(per_task, qa_convention=qa_convention, partial=partial, notes=tuple(notes))
