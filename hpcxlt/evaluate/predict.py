"""Batched zero-shot inference of a finished model on one language split.

    predict_split(spec, lang, split, model, tokenizer, data_cfg, settings) -> Prediction

Features come from `hpcxlt.data.features.load_features` (cached); batches are grouped by length
(longest first, so a batch holds similar lengths and little padding, and an out-of-memory error
shows on the first batch), padded per batch by `hpcxlt.data.collate.PadCollator`, run under
`torch.inference_mode`, and the per-example outputs are put back in input order. What comes out
is exactly what the official submission files hold (`hpcxlt.evaluate.submission`): the gold labels
and the predictions of one language, ready for `scoring.language_metrics`.

Per format: classification and multiple choice take the argmax class; tagging takes each word's
first sub-word's argmax tag; QA pairs the windows' start/end logits into the best context span
(`features.postprocess_qa`); retrieval lives in `hpcxlt.evaluate.retrieval`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hpcxlt.config.schema import DataConfig
from hpcxlt.data.features import load_features
from hpcxlt.data.featurize import input_limit
from hpcxlt.data.schemas import IGNORE, tagging_fields
from hpcxlt.evaluate.inference import (  # noqa: F401  (re-exported: the names callers know from here)
    INPUT_COLUMNS,
    InferenceSettings,
    Prediction,
    autocast_for,
    device_of,
    length_batches,
    run_batches,
)
from hpcxlt.evaluate.retrieval import predict_retrieval
from hpcxlt.tasks.spec import TaskSpec

log = logging.getLogger(__name__)

FALLBACK_TAG = "O"
"""Tag written for a word with no prediction (cut off by the model's length limit), when the tag set has it."""


def _argmax(model, batch) -> list[int]:
    return model(**batch).logits.argmax(-1).tolist()


def _token_argmax(model, batch) -> list[list[int]]:
    ids = model(**batch).logits.argmax(-1).cpu()
    lengths = batch["attention_mask"].sum(-1).tolist()
    return [row[:n].tolist() for row, n in zip(ids, lengths)]


def _span_logits(model, batch) -> list[tuple[Any, Any]]:
    out = model(**batch)
    starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
    lengths = batch["attention_mask"].sum(-1).tolist()
    return [(s[:n], e[:n]) for s, e, n in zip(starts, ends, lengths)]


# --------------------------------------------------------------------------------------------------
# Per format
# --------------------------------------------------------------------------------------------------
def _check_head(model, spec: TaskSpec, label_names: tuple[str, ...]) -> None:
    n = getattr(model.config, "num_labels", None)
    if n != len(label_names):
        raise ValueError(
            f"task {spec.name!r}: the model predicts {n} labels but the task has {len(label_names)} "
            f"{list(label_names)}; was it trained on another task?"
        )


def _gold_ids(spec: TaskSpec, lang: str, split: str, labels: Sequence[int]) -> list[int]:

    missing = sum(1 for label in labels if label == IGNORE)
    if missing:
        raise ValueError(
            f"{spec.name}/{lang}/{split}: {missing} of {len(labels)} examples have no gold label; "
            "only labelled splits can be scored"
        )
    return list(labels)


def _classification(spec, lang, split, fs, model, settings, pad_id) -> Prediction:
    names = fs.label_names
    _check_head(model, spec, names)
    gold = _gold_ids(spec, lang, split, fs.features["labels"])
    pred = run_batches(
        model,
        fs.features,
        _argmax,
        batch_size=settings.batch_size,
        pad_token_id=pad_id,
        sort_by_length=settings.sort_by_length,
        inference_mode=settings.inference_mode,
        sharded=settings.sharded,
    )
    return Prediction(
        task=spec.name,
        lang=lang,
        split=split,
        labels=[names[i] for i in gold],
        predictions=[names[i] for i in pred],
        n_examples=len(gold),
    )


def _multiple_choice(spec, lang, split, fs, model, settings, pad_id) -> Prediction:
    gold = _gold_ids(spec, lang, split, fs.features["labels"])
    pred = run_batches(
        model,
        fs.features,
        _argmax,
        batch_size=settings.batch_size,
        pad_token_id=pad_id,
        sort_by_length=settings.sort_by_length,
        inference_mode=settings.inference_mode,
        sharded=settings.sharded,
    )
    return Prediction(
        task=spec.name, lang=lang, split=split, labels=gold, predictions=[int(p) for p in pred], n_examples=len(gold)
    )


def _tagging(spec, lang, split, fs, model, settings, pad_id) -> Prediction:

    names = fs.label_names
    _check_head(model, spec, names)
    gold = []
    for number, row in enumerate(fs.examples):
        _, ids = tagging_fields(spec, row, names)
        if IGNORE in ids and spec.label_names:
            raise ValueError(f"{spec.name}/{lang}/{split}: sentence {number + 1} has a tag outside {list(names)}")
        # a task whose tag set comes from its data (CCG): a gold tag the model cannot predict stays in
        # the reference as it is, so it counts as an error instead of leaving the accuracy
        raw = row[spec.columns["tags"]]
        gold.append([names[i] if i != IGNORE else str(raw[k]) for k, i in enumerate(ids)])
    token_tags = run_batches(
        model,
        fs.features,
        _token_argmax,
        batch_size=settings.batch_size,
        pad_token_id=pad_id,
        sort_by_length=settings.sort_by_length,
        inference_mode=settings.inference_mode,
        sharded=settings.sharded,
    )
    fallback = FALLBACK_TAG if FALLBACK_TAG in names else names[0]
    pred, uncovered = [], 0
    for tags, word_index, n_words in zip(token_tags, fs.features["word_index"], fs.features["n_words"]):
        words: list[str | None] = [None] * n_words
        for tag, word in zip(tags, word_index):
            if word >= 0:
                words[word] = names[tag]
        uncovered += sum(1 for w in words if w is None)
        pred.append([fallback if w is None else w for w in words])
    notes: tuple[str, ...] = ()
    if uncovered:
        notes = (f"{spec.name}/{lang}/{split}: {uncovered} words beyond the model's length limit got {fallback!r}",)
    return Prediction(
        task=spec.name, lang=lang, split=split, labels=gold, predictions=pred, n_examples=len(gold), notes=notes
    )


def _qa(spec, lang, split, fs, model, settings, pad_id) -> Prediction:
    from hpcxlt.data.qa_answers import postprocess_qa  # heavy: numpy

    spans = run_batches(
        model,
        fs.features,
        _span_logits,
        batch_size=settings.batch_size,
        pad_token_id=pad_id,
        sort_by_length=settings.sort_by_length,
        inference_mode=settings.inference_mode,
        sharded=settings.sharded,
    )
    answers = postprocess_qa(fs.examples, fs.features, [s for s, _ in spans], [e for _, e in spans])
    gold = {str(row["id"]): list(row["answers"]["text"]) for row in fs.examples}
    paragraphs: dict[str, int] = {}
    groups = {str(row["id"]): str(paragraphs.setdefault(row["context"], len(paragraphs))) for row in fs.examples}
    return Prediction(
        task=spec.name,
        lang=lang,
        split=split,
        labels=gold,
        predictions={str(k): v for k, v in answers.items()},
        n_examples=len(gold),
        groups=groups,
    )


_BY_FORMAT = {"classification": _classification, "multiple_choice": _multiple_choice, "tagging": _tagging, "qa": _qa}


def predict_split(
    spec: TaskSpec,
    lang: str,
    split: str,
    model,
    tokenizer,
    data_cfg: DataConfig,
    settings: InferenceSettings | None = None,
    *,
    pools: dict | None = None,
) -> Prediction:
    """Gold labels and predictions of `model` on one split of one language of `spec`.

    `model` is in eval mode on its device (a Hugging Face model with the task's head, or the bare
    encoder for retrieval). `pools` is a dict the caller keeps across the languages of one model:
    retrieval reuses candidate embeddings shared between languages (LAReQA, Mewsli-X) from it.
    """

    settings = settings or InferenceSettings()
    settings.check()
    if spec.format == "retrieval":
        prediction = predict_retrieval(
            spec, lang, split, model, tokenizer, data_cfg, settings, pools=pools if pools is not None else {}
        )
    elif spec.format in _BY_FORMAT:
        # A tag is needed for every word (the submission lines up with the gold), so tagging uses the
        # model's whole input length: with length-grouped batches, long inputs cost only their own batch.
        max_length = input_limit(model.config, tokenizer) if spec.format == "tagging" else settings.max_length
        fs = load_features(
            spec, lang, split, tokenizer, data_cfg, max_length=max_length, doc_stride=settings.doc_stride, train=False
        )
        if len(fs.examples) == 0:
            raise ValueError(f"{spec.name}/{lang}/{split}: no examples to evaluate")
        prediction = _BY_FORMAT[spec.format](spec, lang, split, fs, model, settings, tokenizer.pad_token_id)
    else:
        raise ValueError(f"task {spec.name!r}: no prediction for format {spec.format!r}")
    for note in prediction.notes:
        log.warning(note)
    return prediction
