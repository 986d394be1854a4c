"""Rows -> model features for every format, tokenized once and cached on disk.

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
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcxlt.config.schema import DataConfig
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


@dataclass(frozen=True, kw_only=True)
class FeatureSet:
    """Features of one split of one language of a task, with the rows they came from."""

    features: Any
    """`datasets.Dataset` of model features (columns in the module docstring)."""
    examples: Any
    """`datasets.Dataset` of the raw rows (QA post-processing and retrieval keys need them)."""
    cache_hit: bool
    """True when the features were read from the on-disk cache instead of being tokenized."""
    cache_path: Path | None
    """Folder of the cached features (None when caching is off)."""
    label_names: tuple[str, ...]
    """Label / tag names in id order (from the registry, or from the training data for CCG)."""


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
    return _items(tokenizer, queries, candidates, max_length)


def _items(tokenizer, queries: list[dict], candidates: list[dict], max_length: int) -> dict:
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


TAG_SET_FILE = "tags_to_id.json"


def tag_names(spec: TaskSpec, data_cfg: DataConfig) -> tuple[str, ...]:
    """Tag / label names in id order: the registry's; for a task without a fixed set (CCG) the release's
    tag map `<root>/<task>/tags_to_id.json` ({tag: id}, as jiant ships CCGbank's 1,363 supertags) when
    local data has one, else the sorted tags of the first training language's training split.

    Evaluation counts a gold tag outside this set as an error (never dropped), so a dev set's unseen
    supertags lower the accuracy as in jiant.
    """
    if spec.label_names or spec.format != "tagging":
        return tuple(spec.label_names)
    if data_cfg.source == "local" and data_cfg.root:
        path = Path(data_cfg.root).expanduser() / spec.name / TAG_SET_FILE
        if path.is_file():
            mapping = json.loads(path.read_text(encoding="utf-8"))
            ids = sorted(int(i) for i in mapping.values())
            if ids != list(range(len(ids))):
                raise ValueError(f"{path}: tag ids must be 0..{len(ids) - 1}, each once")
            return tuple(sorted(mapping, key=lambda tag: int(mapping[tag])))
    from hpcxlt.data.load import load_split

    if not spec.train_languages:
        raise ValueError(f"task {spec.name!r} lists no label names and has no training data to take them from")
    rows = load_split(spec, spec.train_languages[0], "train", data_cfg)
    return tuple(sorted({str(tag) for tags in rows[spec.columns["tags"]] for tag in tags}))


def load_features(
    spec: TaskSpec,
    lang: str,
    split: str,
    tokenizer,
    data_cfg: DataConfig,
    *,
    max_length: int,
    doc_stride: int = 32,
    train: bool | None = None,
    use_cache: bool = True,
    examples_limit: int | None = None,
) -> FeatureSet:
    """Features of one split of one language, from the cache under data_cfg.cache_dir when an
    equal tokenizer, task, split, settings and source data were featurized before.

    `train` defaults to split == 'train' (training features); pass False to get evaluation features
    of a training split or True for training features of a dev split. `examples_limit` keeps a fixed
    subset of that many raw examples (`subset_indices`; an arm's `examples` budget) before featurizing.
    """
    from hpcxlt.data.load import load_split, source_fingerprint

    train = is_train_mode(split) if train is None else train
    examples = load_split(spec, lang, split, data_cfg)
    source = source_fingerprint(spec, lang, split, data_cfg, examples)
    subset = None
    if examples_limit is not None and examples_limit < len(examples):
        examples = examples.select(subset_indices(spec.name, lang, len(examples), examples_limit))
        subset = examples_limit
    names = tag_names(spec, data_cfg)
    key = cache.feature_key(
        tokenizer=cache.tokenizer_fingerprint(tokenizer),
        task=spec.name,
        lang=lang,
        split=split,
        settings={
            "train": train,
            "max_length": max_length,
            "doc_stride": doc_stride if spec.format == "qa" else None,
            "label_names": list(names),
            "format": spec.format,
            "version": FEATURES_VERSION,
            **({"subset": subset} if subset is not None else {}),
        },
        source=source,
    )
    if not use_cache:
        return FeatureSet(
            features=featurize(
                spec,
                examples,
                tokenizer,
                train=train,
                max_length=max_length,
                doc_stride=doc_stride,
                label_names=names,
                lang=lang,
            ),
            examples=examples,
            cache_hit=False,
            cache_path=None,
            label_names=names,
        )
    path, hit, features = cache.get_or_build(
        data_cfg.cache_dir,
        key,
        f"{spec.name}.{lang}.{split}",
        lambda: featurize(
            spec,
            examples,
            tokenizer,
            train=train,
            max_length=max_length,
            doc_stride=doc_stride,
            label_names=names,
            lang=lang,
        ),
    )
    return FeatureSet(features=features, examples=examples, cache_hit=hit, cache_path=path, label_names=names)


def subset_indices(task: str, lang: str, size: int, keep: int) -> list[int]:
    """`keep` of `size` row indices, ascending: the same for every seed and run (seeded by task and language
    only), so seeds differ in training alone and arms with equal budgets read the same rows of a shared task."""
    import random
    import zlib

    return sorted(random.Random(zlib.crc32(f"subset/{task}/{lang}".encode())).sample(range(size), keep))


def load_candidate_features(
    spec: TaskSpec, tokenizer, data_cfg: DataConfig, *, max_length: int, use_cache: bool = True
) -> FeatureSet:
    """Evaluation features (role 1) of a task's shared candidate pool (Mewsli-X)."""
    import datasets

    from hpcxlt.data.load import candidates_fingerprint, load_candidates

    rows = load_candidates(spec, data_cfg)

    def build():
        return datasets.Dataset.from_dict(_items(tokenizer, [], schemas.candidate_items(rows), max_length))

    if not use_cache:
        return FeatureSet(features=build(), examples=rows, cache_hit=False, cache_path=None, label_names=())
    key = cache.feature_key(
        tokenizer=cache.tokenizer_fingerprint(tokenizer),
        task=spec.name,
        lang="*",
        split="candidates",
        settings={"max_length": max_length, "version": FEATURES_VERSION},
        source=candidates_fingerprint(spec, data_cfg),
    )
    path, hit, features = cache.get_or_build(data_cfg.cache_dir, key, f"{spec.name}.candidates", build)
    return FeatureSet(features=features, examples=rows, cache_hit=hit, cache_path=path, label_names=())


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


# --------------------------------------------------------------------------------------------------
# QA post-processing
# --------------------------------------------------------------------------------------------------
def postprocess_qa(
    examples, features, start_logits, end_logits, *, n_best: int = 20, max_answer_length: int = 30
) -> dict[str, str]:
    """Answer text per example id from per-window start/end logits (arrays [n_features, seq_len]).

    For every window of an example, the n_best start and end tokens inside the context are paired
    (end >= start, at most max_answer_length tokens); the pair with the highest start + end logit over
    all windows wins, and its text is cut from the context by the tokens' character offsets, so it
    is exactly a span of the original context. An example without any valid span gets ''.
    """
    by_example = collections.defaultdict(list)
    for index, example_id in enumerate(features["example_id"]):
        by_example[example_id].append(index)
    offsets_all = features["offset_mapping"]
    answers: dict[str, str] = {}
    for example in examples:
        context, best, best_score = example["context"], "", -np.inf
        for index in by_example.get(example["id"], []):
            offsets = offsets_all[index]
            starts = np.asarray(start_logits[index])[: len(offsets)]
            ends = np.asarray(end_logits[index])[: len(offsets)]
            for s in np.argsort(starts)[::-1][:n_best]:
                if offsets[s][0] < 0:
                    continue
                for e in np.argsort(ends)[::-1][:n_best]:
                    if offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = starts[s] + ends[e]
                    text = context[offsets[s][0] : offsets[e][1]]
                    if score > best_score and text.strip():
                        best, best_score = text, score
        answers[example["id"]] = best.strip()
    return answers
