"""Row adapters: one row of a real data set's schema -> the fields a format needs.

The registry names each task's row schema (`TaskSpec.schema`, see hpcxlt.tasks.registry); these
functions are the one place that knows how to read them, for hub and local rows alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hpcxlt.tasks.spec import TaskSpec


class SchemaError(ValueError):
    """Rows that do not have the columns or labels of their registry schema."""


# Columns a row of each fixed schema must have (classification/tagging: the task's `columns` roles).
# Optional: SQuAD's title (absent in XQuAD), labels of unlabelled test rows, LAReQA's sentence_breaks.
REQUIRED_COLUMNS = {
    "squad": ("id", "context", "question", "answers"),
    "lareqa": ("id", "context", "question", "answers"),
    "copa": ("premise", "choice1", "choice2", "question"),
    "siqa": ("context", "question", "answerA", "answerB", "answerC"),
    "hellaswag": ("ctx", "endings"),
    "cosmosqa": ("context", "question", "answer0", "answer1", "answer2", "answer3"),
    "commonsenseqa": ("question", "choices"),
    "tatoeba": ("source_sentence", "target_sentence"),
    "mewslix": ("mention",),
}


def required_columns(spec: TaskSpec) -> tuple[str, ...]:
    """The columns every row of the task's data must have."""
    if spec.format in ("classification", "tagging"):
        return tuple(spec.columns.values())
    return REQUIRED_COLUMNS.get(spec.schema, ())


def label_columns(spec: TaskSpec) -> tuple[str, ...]:
    """Columns holding label/tag ids into `spec.label_names` (mapped by name when a source orders them otherwise)."""
    if spec.format == "classification":
        return (spec.columns["label"],)
    if spec.format == "tagging":
        return (spec.columns["tags"],)
    return ()


def check_columns(spec: TaskSpec, columns, *, where: str) -> None:
    """SchemaError naming `where`, the expected and the found columns when a required one is missing."""
    missing = [c for c in required_columns(spec) if c not in columns]
    if spec.schema == "mewslix" and not {"entity", "entity_id"} & set(columns):
        missing.append("entity or entity_id")
    if missing:
        raise SchemaError(
            f"{where}: missing column(s) {missing} of schema {spec.schema!r}; expected "
            f"{list(required_columns(spec))}, found {list(columns)}"
        )


IGNORE = -100
"""Label id for 'no gold label' (ignored by the losses, as in Hugging Face models)."""

# jiant-style English prompts for COPA's question field (the field is English in every XCOPA language).
COPA_PROMPTS = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def label_id(value: Any, label_names: tuple[str, ...], *, where: str) -> int:
    """An int id for a label stored as an id or as one of `label_names` (e.g. sib200's categories)."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: label {value!r} is neither an id nor one of {list(label_names)}")
    if isinstance(value, int):
        if value == -1:
            return IGNORE
        if not 0 <= value < len(label_names):
            raise ValueError(
                f"{where}: label id {value} is out of range for {len(label_names)} labels {list(label_names)}"
            )
        return value
    if isinstance(value, str):
        if value in label_names:
            return label_names.index(value)
        if value.strip().lstrip("-").isdigit():  # ids stored as text (tsv files)
            return label_id(int(value), label_names, where=where)
    raise ValueError(f"{where}: label {value!r} is neither an id nor one of {list(label_names)}")


def classification_fields(spec: TaskSpec, row: Mapping[str, Any]) -> tuple[str, str | None, int]:
    """(text, text_pair or None, label id) of a classification row."""
    where = f"task {spec.name!r}"
    text = row[spec.columns["text"]]
    pair_col = spec.columns.get("text_pair")
    pair = row[pair_col] if pair_col else None
    return text, pair, label_id(row[spec.columns["label"]], spec.label_names, where=where)


def classification_columns(spec: TaskSpec, batch: Mapping[str, list]) -> tuple[list, list | None, list[int]]:
    """(texts, text pairs or None, label ids) of a batch of classification rows, column by column: the
    same values and checks as `classification_fields` row by row, without building a dict per row. Each
    distinct label value is checked once (keyed with its type: True must not pass as 1)."""
    where = f"task {spec.name!r}"
    pair_col = spec.columns.get("text_pair")
    known: dict[tuple[type, Any], int] = {}
    labels = []
    for value in batch[spec.columns["label"]]:
        try:
            labels.append(known[(value.__class__, value)])
        except KeyError:
            labels.append(known.setdefault((value.__class__, value), label_id(value, spec.label_names, where=where)))
        except TypeError:  # an unhashable value: label_id names the problem
            labels.append(label_id(value, spec.label_names, where=where))
    return batch[spec.columns["text"]], batch[pair_col] if pair_col else None, labels


def choice_fields(spec: TaskSpec, row: Mapping[str, Any]) -> tuple[str, list[str], int]:
    """(first segment, choice texts, gold index or IGNORE) of a multiple-choice row.

    Each choice is paired with the first segment (context + question); the model scores the pairs.
    """
    schema, where = spec.schema, f"task {spec.name!r} ({spec.schema} row)"
    if schema == "copa":
        first = f"{row['premise']} {COPA_PROMPTS.get(row['question'], row['question'])}"
        choices, label = [row["choice1"], row["choice2"]], row.get("label", -1)
    elif schema == "siqa":
        first = f"{row['context']} {row['question']}"
        choices = [row["answerA"], row["answerB"], row["answerC"]]
        label = int(row["label"]) - 1 if str(row.get("label", "")).strip() else -1  # '1'..'3'
    elif schema == "hellaswag":
        first, choices = row["ctx"], list(row["endings"])
        label = int(row["label"]) if str(row.get("label", "")).strip() else -1  # '0'..'3', '' in test
    elif schema == "cosmosqa":
        first = f"{row['context']} {row['question']}"
        choices = [row[f"answer{i}"] for i in range(4)]
        label = row.get("label", -1)
    elif schema == "commonsenseqa":
        first = row["question"]
        letters, choices = list(row["choices"]["label"]), list(row["choices"]["text"])
        key = row.get("answerKey") or ""
        label = letters.index(key) if key in letters else -1
    else:
        raise ValueError(
            f"{where}: no multiple-choice adapter for schema {schema!r}; "
            "known: copa, siqa, hellaswag, cosmosqa, commonsenseqa"
        )
    if len(choices) != len(spec.label_names):
        raise ValueError(
            f"{where}: {len(choices)} choices, but the task has {len(spec.label_names)} ({spec.label_names})"
        )
    label = int(label)
    if label == -1:
        return first, choices, IGNORE
    if not 0 <= label < len(choices):
        raise ValueError(f"{where}: gold choice {label} is out of range for {len(choices)} choices")
    return first, choices, label


def tagging_fields(spec: TaskSpec, row: Mapping[str, Any], tag_names: tuple[str, ...]) -> tuple[list[str], list[int]]:
    """(words, tag ids) of a tagging row; tags unknown to `tag_names` become IGNORE (CCG)."""
    tokens_col, tags_col = spec.columns["tokens"], spec.columns["tags"]
    words, tags = list(row[tokens_col]), list(row[tags_col])
    if len(words) != len(tags):
        raise ValueError(f"task {spec.name!r}: a row has {len(words)} tokens but {len(tags)} tags")
    index = {name: i for i, name in enumerate(tag_names)}
    ids = []
    for tag in tags:
        if isinstance(tag, str) and not tag.lstrip("-").isdigit():
            ids.append(index.get(tag, IGNORE))
        else:
            ids.append(label_id(int(tag), tag_names, where=f"task {spec.name!r}"))
    return words, ids


SENTENCE_END = re.compile(r"(?<=[.!?。！？।؟])\s+")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of `text` (a break after . ! ? and their CJK/Indic/Arabic kin
    followed by whitespace; good enough for XQuAD-R paragraphs and the synthetic contexts)."""
    spans, start = [], 0
    for match in SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def retrieval_pairs(spec: TaskSpec, row: Mapping[str, Any]) -> tuple[str, str] | None:
    """(query, positive candidate) of a training row for a dual encoder, None when the row has none."""
    if spec.schema in ("squad", "lareqa"):
        if not row["answers"]["answer_start"]:
            return None
        start = row["answers"]["answer_start"][0]
        for s, e in split_sentences(row["context"]):
            if s <= start < e:
                return row["question"], row["context"][s:e]
        return None
    if spec.schema == "mewslix":
        return row["mention"], row["entity"]
    if spec.schema == "tatoeba":
        return row["source_sentence"].strip(), row["target_sentence"].strip()
    raise ValueError(
        f"task {spec.name!r}: no retrieval adapter for schema {spec.schema!r}; known: lareqa, squad, mewslix, tatoeba"
    )


RETRIEVAL_POOLS = {"tatoeba": "language", "lareqa": "all_languages", "squad": "language", "mewslix": "candidates"}
"""Where a retrieval query's candidates come from, by schema: the same language file's candidates
(Tatoeba: that language's English targets), every language's candidates pooled (LAReQA), or the
task's shared pool (Mewsli-X; English dev pairs carry their own entities as candidates)."""


def retrieval_items(spec: TaskSpec, rows, lang: str) -> tuple[list[dict], list[dict]]:
    """(queries, candidates) of an evaluation split: each item {'item_id', 'text', 'keys'}; a
    candidate is correct for a query when their `keys` intersect."""
    queries: list[dict] = []
    candidates: list[dict] = []
    if spec.schema == "tatoeba":
        # Tatoeba rows of google/xtreme's loader keep the file's trailing newline: not part of the sentence.
        for i, row in enumerate(rows):
            queries.append({"item_id": f"{lang}:q{i}", "text": row["source_sentence"].strip(), "keys": [str(i)]})
            candidates.append({"item_id": f"{lang}:c{i}", "text": row["target_sentence"].strip(), "keys": [str(i)]})
    elif spec.schema in ("lareqa", "squad"):
        # One candidate per distinct context sentence; its keys are the ids of the questions it answers.
        # The sentences are the release's official `sentence_breaks` where the rows carry them (LAReQA's
        # XQuAD-R JSON: the official candidate set, cut from the context as the official
        # utils_lareqa.py does), else a punctuation split (approximate). As there, a question whose
        # answer starts in no sentence is left out (a sentence-breaking error of the release).
        by_sentence: dict[tuple[str, int], dict] = {}
        for row in rows:
            starts = row["answers"]["answer_start"]
            breaks = row.get("sentence_breaks")
            spans = [tuple(pair) for pair in breaks] if breaks else split_sentences(row["context"])
            if not any(s <= a < e for s, e in spans for a in starts):
                continue
            queries.append({"item_id": f"{lang}:{row['id']}", "text": row["question"], "keys": [row["id"]]})
            for number, (s, e) in enumerate(spans):
                item = by_sentence.setdefault(
                    (row["context"], number),
                    {"item_id": f"{lang}:s{len(by_sentence)}", "text": row["context"][s:e], "keys": []},
                )
                if any(s <= a < e for a in starts) and row["id"] not in item["keys"]:
                    item["keys"].append(row["id"])
        candidates = list(by_sentence.values())
    elif spec.schema == "mewslix":
        # Mention rows name their gold `entity_id` in the shared pool. English dev rows of the
        # 'wikipedia_pairs' config are {mention, entity} pairs (izhx/mewsli-x process.py): the entity
        # texts are the pool and a pair's own entity is its gold answer.
        seen: set[str] = set()
        for i, row in enumerate(rows):
            item_id = row.get("id") or f"{lang}:m{i}"
            gold = row.get("entity_id") or row.get("entity")
            if not gold:
                raise SchemaError(f"task {spec.name!r}, {lang} row {i}: neither 'entity_id' nor 'entity' is set")
            queries.append({"item_id": item_id, "text": row["mention"], "keys": [gold]})
            if row.get("entity") and gold not in seen:
                seen.add(gold)
                candidates.append({"item_id": gold, "text": row["entity"], "keys": [gold]})
    else:
        raise ValueError(
            f"task {spec.name!r}: no retrieval adapter for schema {spec.schema!r}; known: lareqa, squad, mewslix, tatoeba"
        )
    return queries, candidates


def candidate_items(rows) -> list[dict]:
    """Items of a shared candidate pool (Mewsli-X: entity_id, description)."""
    return [{"item_id": row["entity_id"], "text": row["description"], "keys": [row["entity_id"]]} for row in rows]
