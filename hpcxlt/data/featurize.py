"""Rows -> model features for every format (not cached here: `hpcxlt.data.features` loads them through the cache).

Columns of the features (`datasets.Dataset`), by format; model inputs first, then what evaluation
needs to map predictions back:

  classification   input_ids, attention_mask, labels
  multiple_choice  input_ids, attention_mask ([n_choices][len] each), labels
  tagging          input_ids, attention_mask, labels (tag id on a word's first sub-word, -100 on the
                   others and on special tokens); eval also word_index (the word a first sub-word
                   starts, else -1) and n_words
  qa               input_ids, attention_mask, start_positions, end_positions (the answer's tokens in
                   this window, or 0 = <s> when the window does not hold it); eval also example_id and
                   offset_mapping (character span in the context per token, [-1, -1] outside it)
  retrieval        train: query_input_ids, query_attention_mask, cand_input_ids, cand_attention_mask
                   (one positive pair per row, for in-batch-negative dual-encoder training);
                   eval: input_ids, attention_mask, role (0 query, 1 candidate), item_id, keys (a
                   candidate answers a query when their keys intersect; see schemas.RETRIEVAL_POOLS)
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

from hpcxlt.data import cache, schemas
from hpcxlt.data.schemas import IGNORE
from hpcxlt.tasks.spec import TaskSpec

FEATURES_VERSION = 1
"""Part of every cache key: bump when featurization changes so old caches are not reused."""
MODEL_INPUTS = (
    "input_ids",
    "attention_mask",
    "labels",
    "start_positions",
    "end_positions",
    "query_input_ids",
    "query_attention_mask",
    "cand_input_ids",
    "cand_attention_mask",
)
"""Feature columns that are model inputs; the others are bookkeeping for evaluation."""


def is_train_mode(split: str) -> bool:
    """Training features (QA: no offsets; retrieval: pairs) for 'train', evaluation features otherwise."""
    return split == "train"


# --------------------------------------------------------------------------------------------------
# Per-format featurizers. Each takes a batch of rows (dict of column -> list) and returns columns.
# --------------------------------------------------------------------------------------------------
def _rows(batch: dict[str, list]) -> list[dict]:
    keys = list(batch)
    return [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))]


def _classification(batch, *, spec, tokenizer, max_length, **_):
    texts, pairs, labels = schemas.classification_columns(spec, batch)
    # no padding, so every mask is all ones: [1] * n in C instead of the tokenizer's mask converted
    # element by element from Rust (a third of this function's time on MNLI-sized sets)
    ids = tokenizer(texts, pairs, truncation=True, max_length=max_length, return_attention_mask=False)["input_ids"]
    return {"input_ids": ids, "attention_mask": [[1] * len(seq) for seq in ids], "labels": labels}


def _multiple_choice(batch, *, spec, tokenizer, max_length, **_):
    fields = [schemas.choice_fields(spec, row) for row in _rows(batch)]
    n = len(spec.label_names)
    firsts = [first for first, choices, _ in fields for _ in choices]
    seconds = [choice for _, choices, _ in fields for choice in choices]
    enc = tokenizer(firsts, seconds, truncation=True, max_length=max_length)
    group = lambda values: [values[i : i + n] for i in range(0, len(values), n)]  # noqa: E731
    return {
        "input_ids": group(enc["input_ids"]),
        "attention_mask": group(enc["attention_mask"]),
        "labels": [label for _, _, label in fields],
    }


def _tagging(batch, *, spec, tokenizer, max_length, train, label_names, **_):
    fields = [schemas.tagging_fields(spec, row, label_names) for row in _rows(batch)]
    enc = tokenizer([words for words, _ in fields], is_split_into_words=True, truncation=True, max_length=max_length)
    labels, word_index = [], []
    for b, (_, tags) in enumerate(fields):
        seq_labels, seq_words, previous = [], [], None
        for word in enc.word_ids(b):
            first = word is not None and word != previous
            seq_labels.append(tags[word] if first else IGNORE)
            seq_words.append(word if first else -1)
            previous = word
        labels.append(seq_labels)
        word_index.append(seq_words)
    out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
    if not train:
        out["word_index"] = word_index
        out["n_words"] = [len(words) for words, _ in fields]
    return out


def _clip_questions(tokenizer, questions: list[str], limit: int) -> list[str]:
    """Questions cut to at most `limit` tokens, so a window always has room for context.

    A cut inside a word can re-tokenize into more pieces ('journey' -> 'j' alone becomes '▁' + 'j'),
    so each cut is checked and moved one token back until it fits.
    """
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for question, offsets in zip(questions, enc["offset_mapping"]):
        keep = len(offsets)
        while keep > limit or (
            1 < keep < len(offsets)
            and len(tokenizer(question[: offsets[keep - 1][1]], add_special_tokens=False)["input_ids"]) > limit
        ):
            keep -= 1
        out.append(question if keep == len(offsets) else question[: offsets[max(keep, 1) - 1][1]])
    return out


def question_limit(tokenizer, max_length: int, doc_stride: int) -> int:
    """Most question tokens a QA window can hold: at most half the window, and always leaving more
    context tokens than the stride (the tokenizer cannot slide windows otherwise)."""
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - doc_stride - 1
    limit = min(max_length // 2, room)
    if limit < 1:
        raise ValueError(
            f"doc_stride={doc_stride} leaves no room for a question in windows of max_length={max_length}; "
            "use a smaller doc_stride or a larger max_length"
        )
    return limit


def _qa(batch, *, spec, tokenizer, max_length, doc_stride, train, **_):
    questions = _clip_questions(
        tokenizer, [q.lstrip() for q in batch["question"]], question_limit(tokenizer, max_length, doc_stride)
    )
    enc = tokenizer(
        questions,
        batch["context"],
        truncation="only_second",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    out = collections.defaultdict(list)
    for i, offsets in enumerate(enc["offset_mapping"]):
        example = enc["overflow_to_sample_mapping"][i]
        sequence_ids = enc.sequence_ids(i)
        context_tokens = [t for t, s in enumerate(sequence_ids) if s == 1]
        first, last = context_tokens[0], context_tokens[-1]
        answers = batch["answers"][example]
        start_pos = end_pos = 0  # <s>: "no answer in this window"
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            if offsets[first][0] <= start_char and offsets[last][1] >= end_char:
                start_pos = first
                while start_pos <= last and offsets[start_pos][1] <= start_char:
                    start_pos += 1
                end_pos = last
                while end_pos >= first and offsets[end_pos][0] >= end_char:
                    end_pos -= 1
        out["input_ids"].append(enc["input_ids"][i])
        out["attention_mask"].append(enc["attention_mask"][i])
        out["start_positions"].append(start_pos)
        out["end_positions"].append(end_pos)
        if not train:
            out["example_id"].append(batch["id"][example])
            out["offset_mapping"].append([list(o) if s == 1 else [-1, -1] for o, s in zip(offsets, sequence_ids)])
    return dict(out)


def _retrieval(batch, *, spec, tokenizer, max_length, train, lang, **_):
    rows = _rows(batch)
    if train:
        pairs = [p for p in (schemas.retrieval_pairs(spec, row) for row in rows) if p is not None]
        q = tokenizer([p[0] for p in pairs], truncation=True, max_length=max_length)
        c = tokenizer([p[1] for p in pairs], truncation=True, max_length=max_length)
        return {
            "query_input_ids": q["input_ids"],
            "query_attention_mask": q["attention_mask"],
            "cand_input_ids": c["input_ids"],
            "cand_attention_mask": c["attention_mask"],
        }
    queries, candidates = schemas.retrieval_items(spec, rows, lang)
    return tokenize_items(tokenizer, queries, candidates, max_length)


def tokenize_items(tokenizer, queries: list[dict], candidates: list[dict], max_length: int) -> dict:
    items = queries + candidates
    enc = tokenizer([item["text"] for item in items], truncation=True, max_length=max_length)
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "role": [0] * len(queries) + [1] * len(candidates),
        "item_id": [item["item_id"] for item in items],
        "keys": [item["keys"] for item in items],
    }


_FEATURIZERS: dict[str, Callable[..., Any]] = {
    "classification": _classification,
    "multiple_choice": _multiple_choice,
    "tagging": _tagging,
    "qa": _qa,
    "retrieval": _retrieval,
}


def featurize(
    spec: TaskSpec,
    rows,
    tokenizer,
    *,
    train: bool,
    max_length: int,
    doc_stride: int = 32,
    label_names: tuple[str, ...] | None = None,
    lang: str = "en",
):
    """Features (a `datasets.Dataset`) of raw `rows`, not cached; see the module docstring for columns.

    Retrieval evaluation features of a split are built in one pass (candidates are deduplicated
    across rows), so `rows` should be the whole split.
    """
    if spec.format not in _FEATURIZERS:
        raise ValueError(f"task {spec.name!r}: unknown format {spec.format!r}; known: {', '.join(_FEATURIZERS)}")
    if spec.format == "qa" and not 0 < doc_stride < max_length:
        raise ValueError(f"doc_stride must be in (0, max_length={max_length}), got {doc_stride}")
    names = tuple(label_names if label_names is not None else spec.label_names)
    kwargs = dict(
        spec=spec,
        tokenizer=tokenizer,
        max_length=max_length,
        doc_stride=doc_stride,
        train=train,
        label_names=names,
        lang=lang,
    )
    whole = spec.format == "retrieval" and not train
    return rows.map(
        _FEATURIZERS[spec.format],
        batched=True,
        batch_size=max(1, len(rows)) if whole else 1000,
        remove_columns=rows.column_names,
        fn_kwargs=kwargs,
        keep_in_memory=True,
        load_from_cache_file=False,
        new_fingerprint=cache.random_fingerprint(),
    )


MAX_POSITIONS = 512
"""Most tokens an XLM-R input can hold (514 position embeddings, 2 kept for the padding offset)."""


def input_limit(config, tokenizer) -> int:
    """Most tokens a model with this (transformers) config takes in one input (position embeddings,
    XLM-R's padding offset kept): the length tagging evaluation reads whole sentences with."""
    positions = getattr(config, "max_position_embeddings", MAX_POSITIONS + 2)
    offset = 0
    if getattr(config, "model_type", "") in ("xlm-roberta", "roberta"):
        # RoBERTa-style position ids start after the padding id: positions 0..pad_token_id are never used.
        offset = (getattr(config, "pad_token_id", None) or 0) + 1
    limit = min(positions - offset, MAX_POSITIONS)
    model_max = getattr(tokenizer, "model_max_length", None)
    return min(limit, model_max) if isinstance(model_max, int) and model_max > 0 else limit


def feature_lengths(features) -> list[int]:
    """Token length of each feature (the longest choice / side), for length-grouped batching."""
    for column in ("input_ids", "query_input_ids"):
        if column in features.column_names:
            break
    lengths = []
    for value in features[column]:
        if value and isinstance(value[0], list):  # multiple choice
            lengths.append(max(len(v) for v in value))
        else:
            lengths.append(len(value))
    if column == "query_input_ids":
        lengths = [max(a, len(b)) for a, b in zip(lengths, features["cand_input_ids"])]
    return lengths
