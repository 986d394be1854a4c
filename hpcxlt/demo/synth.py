"""A synthetic XTREME-R + intermediate-task benchmark in the real data sets' row schemas.

`write_benchmark(OUT)` writes `OUT/<task>/<lang>/<split>.jsonl` for every task of the registry (the
splits and languages its `data` names; tasks with local-only data, like CCG, get train and dev in
their training languages), the Mewsli-X candidate pool as `OUT/mewslix/candidates.jsonl`, and
`OUT/manifest.json` last, so a half-written benchmark is never taken for a complete one.

Every task is learnable from its English training data by a small model, by the rule a real task
is (mostly) solved with: NLI / sentiment / paraphrase labels by cue words, topic classification by
topic words, NER by entity names, UPOS by word class, QA by the entity type the question word asks
for, multiple choice by staying on the context's topic (and reusing one of its nouns), retrieval by
the words a translation or a description shares with its query. Other languages share only part of
the words (see lexicon.py), so zero-shot transfer works, imperfectly.

Data that is the same data set on the hub is the same here: xnli's English training set is mnli's
(both MNLI), SQuAD trains xquad, mlqa, lareqa and the squad intermediate task alike. Evaluation sets
of a target are parallel across languages (the same examples, rendered in each language), like
XNLI, XQuAD and XCOPA.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from hpcxlt.data.local import MANIFEST
from hpcxlt.demo import grammar
from hpcxlt.demo.grammar import ENTITY_TYPES, Sentence, entity_keys, render, upos_of, word
from hpcxlt.demo.lexicon import (
    CLASS_WORDS,
    CUES,
    FIRST_NAMES,
    LAST_NAMES,
    LOCATIONS,
    ORG_HEADS,
    ORG_TAILS,
    PLAUSIBLE_CUES,
    QUESTION_WORDS,
    TOPICS,
    Lexicon,
    concept,
    language_lexicon,
    seeded_rng,
    stable_hash,
)
from hpcxlt.io import read_json, write_json_atomic, write_text_atomic
from hpcxlt.tasks.spec import DataRef, TaskSpec

SYNTH_VERSION = 1
"""Bumped whenever generated rows change, so caches and manifests of older benchmarks are told apart."""
CANDIDATES_FILE = "candidates.jsonl"

# sib200 category -> topic field of the lexicon.
SIB200_TOPICS = {
    "science/technology": "science",
    "travel": "travel",
    "politics": "politics",
    "sports": "sports",
    "health": "health",
    "entertainment": "entertainment",
    "geography": "geography",
}
# A CCG supertag per word class: the categories these words take in simple transitive sentences.
CCG_SUPERTAGS = {
    "NOUN": "N",
    "PROPN": "N",
    "DET": "NP/N",
    "ADJ": "N/N",
    "NUM": "N/N",
    "VERB": "(S\\NP)/NP",
    "AUX": "(S\\NP)/(S\\NP)",
    "ADP": "(NP\\NP)/NP",
    "PRON": "NP",
    "ADV": "(S\\NP)\\(S\\NP)",
    "PART": "(S\\NP)\\(S\\NP)",
    "CCONJ": "conj",
    "SCONJ": "(S\\S)/S",
    "INTJ": "S/S",
    "PUNCT": ".",
    "SYM": "N\\N",
    "X": "N",
}


@dataclass(frozen=True, kw_only=True)
class SynthSettings:
    """What a synthetic benchmark is generated from; equal settings give identical files."""

    seed: int = 0
    """Seed of every lexicon and example."""
    train_size: int = 2000
    """Rows per training file (per task and training language)."""
    eval_size: int = 200
    """Rows per dev / test file (per task and language)."""

    def check(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("train_size", "eval_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


# --------------------------------------------------------------------------------------------------
# Which files a task gets, and which random stream each file's rows come from
# --------------------------------------------------------------------------------------------------
def _ref_key(ref: DataRef) -> str:
    return f"{ref.hf_id}|{ref.config}|{ref.split}|{ref.id_prefix}"


@lru_cache(maxsize=1)
def _shared_refs() -> frozenset[str]:
    """Hub sources that more than one (task, split, language) reads, e.g. SQuAD train."""
    from hpcxlt.tasks.registry import TASKS

    counts = Counter(_ref_key(ref) for spec in TASKS.values() for refs in spec.data.values() for ref in refs.values())
    return frozenset(key for key, n in counts.items() if n > 1)


def stream_key(spec: TaskSpec, lang: str, split: str) -> str:
    """Name of the random stream a file's rows are drawn from.

    The same hub source gives the same rows (xnli train = mnli train); a target's dev/test sets
    are parallel across languages; everything else is drawn per language.
    """
    ref = spec.data.get(split, {}).get(lang)
    if ref is not None and _ref_key(ref) in _shared_refs():
        return f"ref:{_ref_key(ref)}"
    if spec.role == "target" and split != "train":
        return f"parallel:{spec.name}:{split}"
    return f"own:{spec.name}:{split}:{lang}"


# --------------------------------------------------------------------------------------------------
# Row generators, one per schema. Each draws everything from its own `rng` (so parallel rows get the
# same concepts in every language) and renders words through `lex`.
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class _Ctx:
    spec: TaskSpec
    lang: str
    split: str
    lex: Lexicon
    seed: int
    id_prefix: str


def _text(keys: list[str], lex: Lexicon) -> str:
    return " ".join(render(keys, lex))


def cue_keys(label_name: str, index: int) -> list[str]:
    """Concept keys whose presence decides a label (shared by every task with that label name)."""
    cues = CUES.get(label_name.lower())
    if cues:
        return [concept(w, upos).key for w, upos in cues]
    # A label this table does not know gets an adverb of its own, distinct per label index.
    pool = sorted(CLASS_WORDS["ADV"])
    return [concept(pool[index % len(pool)], "ADV").key]


def _with_cue(rng: random.Random, keys: list[str], cue: str) -> list[str]:
    """`keys` with `cue` inserted at a random position before the final punctuation."""
    at = rng.randrange(len(keys))  # len(keys) - 1 is the final punctuation
    return keys[:at] + [cue] + keys[at:]


def _hypothesis(rng: random.Random, premise: Sentence, end: str) -> list[str]:
    """A shorter sentence on the premise's subject: its first words up to the verb's object."""
    keys = premise.keys[:-1]
    verb = next((i for i, k in enumerate(keys) if upos_of(k) == "VERB"), len(keys) - 1)
    noun = next((i for i in range(verb + 1, len(keys)) if upos_of(keys[i]) in ("NOUN", "PROPN", "PRON")), len(keys) - 1)
    return keys[: noun + 1] + [concept(end, "PUNCT").key]


def _classification(ctx: _Ctx, rng: random.Random) -> dict:
    spec = ctx.spec
    labels = spec.label_names
    y = rng.randrange(len(labels))
    text_col, pair_col, label_col = spec.columns["text"], spec.columns.get("text_pair"), spec.columns["label"]
    row: dict = {}
    if spec.schema == "sib200":
        topic = SIB200_TOPICS.get(labels[y])
        if topic is None:
            raise ValueError(
                f"task {spec.name!r}: sib200 label {labels[y]!r} has no topic field; known: {sorted(SIB200_TOPICS)}"
            )
        keys = grammar.sentence(rng, topic).keys
        if rng.random() < 0.5:
            keys += grammar.sentence(rng, topic).keys
        row = {"index_id": rng.randrange(10**6), text_col: _text(keys, ctx.lex), label_col: labels[y]}
        return row
    end = "?" if spec.schema == "qqp" else "."
    topic = rng.choice(sorted(TOPICS))
    first = grammar.sentence(rng, topic, end=end)
    cue = rng.choice(cue_keys(labels[y], y))
    if pair_col is None:
        row[text_col] = _text(_with_cue(rng, first.keys, cue), ctx.lex)
    else:
        row[text_col] = _text(first.keys, ctx.lex)
        row[pair_col] = _text(_with_cue(rng, _hypothesis(rng, first, end), cue), ctx.lex)
    row[label_col] = y
    return row


def _ner_tags(sent: Sentence, label_names: tuple[str, ...]) -> list[int]:
    index = {name: i for i, name in enumerate(label_names)}
    tags = [index["O"]] * len(sent.keys)
    for start, end, kind in sent.entities:
        if f"B-{kind}" in index:  # entity types the tag set lacks (DATE in PAN-X) stay O
            tags[start] = index[f"B-{kind}"]
            for i in range(start + 1, end):
                tags[i] = index[f"I-{kind}"]
    return tags


def _tagging(ctx: _Ctx, rng: random.Random) -> dict:
    spec = ctx.spec
    tokens_col, tags_col = spec.columns["tokens"], spec.columns["tags"]
    names = spec.label_names
    is_ner = any(n.startswith("B-") for n in names)
    if is_ner:
        kinds = [k for k in ENTITY_TYPES if f"B-{k}" in names]
        sent = grammar.sentence(
            rng, rng.choice(sorted(TOPICS)), subject=rng.choice(kinds + [None]), place=rng.choice(kinds + [None, None])
        )
        tags = _ner_tags(sent, names)
    else:
        sent = grammar.sentence(rng, rng.choice(sorted(TOPICS)))
        index = {name: i for i, name in enumerate(names)}
        missing = {upos_of(k) for k in sent.keys} - set(index)
        if missing:
            raise ValueError(
                f"task {spec.name!r}: tag set {names} lacks the word classes {sorted(missing)}; "
                "the synthetic generator tags by UPOS or IOB2 entity types"
            )
        tags = [index[upos_of(k)] for k in sent.keys]
    row = {tokens_col: render(sent.keys, ctx.lex), tags_col: tags}
    if is_ner and spec.name in ("panx", "wikiann_lowres"):
        row["langs"] = [ctx.lang] * len(tags)  # google/xtreme PAN-X and wikiann carry it
    return row


def _ccg(ctx: _Ctx, rng: random.Random) -> dict:
    sent = grammar.sentence(rng, rng.choice(sorted(TOPICS)))
    return {
        ctx.spec.columns["tokens"]: render(sent.keys, ctx.lex),
        ctx.spec.columns["tags"]: [CCG_SUPERTAGS[upos_of(k)] for k in sent.keys],
    }


def _qa_parts(rng: random.Random) -> tuple[list[Sentence], int, tuple[int, int], list[str]]:
    """Context sentences, the answer sentence index, its entity span and the question keys."""
    topic = rng.choice(sorted(TOPICS))
    n_sentences = rng.randint(3, 5)
    kinds = rng.sample(ENTITY_TYPES, min(n_sentences, len(ENTITY_TYPES)))
    slots = rng.sample(range(n_sentences), len(kinds))
    sentences = []
    for i in range(n_sentences):
        kind = kinds[slots.index(i)] if i in slots else None
        subject = kind if kind in ("PER", "ORG") else None
        place = kind if kind in ("LOC", "DATE") else None
        sentences.append(grammar.sentence(rng, topic, subject=subject, place=place, random_entities=False))
    answer_sentence = slots[rng.randrange(len(slots))]
    sent = sentences[answer_sentence]
    start, end, kind = sent.entities[0]
    # The question: the question word(s) of the entity type + the answer sentence without the entity
    # (and without the preposition that introduced it) and without its final punctuation.
    cut_from = start - 1 if start > 0 and upos_of(sent.keys[start - 1]) == "ADP" else start
    rest = sent.keys[:cut_from] + sent.keys[end:-1]
    question = [concept(w, upos).key for w, upos in QUESTION_WORDS[kind]] + rest + [concept("?", "PUNCT").key]
    return sentences, answer_sentence, (start, end), question


def _squad(ctx: _Ctx, rng: random.Random, index: int) -> dict:
    sentences, answer_sentence, (start, end), question = _qa_parts(rng)
    words: list[str] = []
    answer_start = answer_text = None
    for i, sent in enumerate(sentences):
        rendered = render(sent.keys, ctx.lex)
        if i == answer_sentence:
            answer_start = len(" ".join(words + rendered[:start])) + (1 if words or start else 0)
            answer_text = " ".join(rendered[start:end])
        words += rendered
    context = " ".join(words)
    if answer_start is None or answer_text is None:
        raise ValueError(f"answer sentence {answer_sentence} is not among the {len(sentences)} sentences")
    assert context[answer_start : answer_start + len(answer_text)] == answer_text
    row = {
        "id": f"{ctx.id_prefix}{index:06d}",
        "title": ctx.lex.word(concept(rng.choice(TOPICS[rng.choice(sorted(TOPICS))]["NOUN"]), "NOUN").key),
        "context": context,
        "question": _text(question, ctx.lex),
        "answers": {"text": [answer_text], "answer_start": [answer_start]},
    }
    if ctx.spec.name == "xquad" and ctx.split == "test":
        del row["title"]  # XQuAD rows have no title (its SQuAD training rows do)
    return row


def _mc_parts(rng: random.Random, n_choices: int, *, context_sentences: int = 1, end: str = "."):
    """(topic, context keys, choices keys, gold index): the gold choice stays on the context's topic
    and reuses one of its nouns; the others come from other topics. The gold choice carries a
    plausibility cue word 85% of the time, a wrong one 10% of the time."""
    topics = sorted(TOPICS)
    topic = rng.choice(topics)
    context: list[str] = []
    for _ in range(context_sentences):
        context += grammar.sentence(rng, topic, random_entities=False).keys
    nouns = [k for k in context if upos_of(k) == "NOUN"]
    others = rng.sample([t for t in topics if t != topic], n_choices - 1)
    gold = rng.randrange(n_choices)
    choices = []
    for i in range(n_choices):
        keys = grammar.clause(rng, topic if i == gold else others.pop()).keys + [concept(end, "PUNCT").key]
        if i == gold and nouns:
            first_noun = next(j for j, k in enumerate(keys) if upos_of(k) == "NOUN")
            keys[first_noun] = rng.choice(nouns)
        if rng.random() < (0.85 if i == gold else 0.1):
            keys = _with_cue(rng, keys, concept(*rng.choice(PLAUSIBLE_CUES)).key)
        choices.append(keys)
    return topic, context, choices, gold


def _copa(ctx: _Ctx, rng: random.Random, index: int) -> dict:
    _, context, choices, gold = _mc_parts(rng, 2)
    return {
        "premise": _text(context, ctx.lex),
        "choice1": _text(choices[0], ctx.lex),
        "choice2": _text(choices[1], ctx.lex),
        "question": rng.choice(("cause", "effect")),
        "label": gold,
        "idx": index,
    }


def _question(rng: random.Random, *keys: str) -> list[str]:
    return [concept("what", "PRON").key, *keys, word(rng, "VERB"), concept("?", "PUNCT").key]


def _siqa(ctx: _Ctx, rng: random.Random, index: int) -> dict:
    _, context, choices, gold = _mc_parts(rng, 3)
    question = _question(rng, concept("will", "AUX").key, word(rng, "PRON"))
    return {
        "context": _text(context, ctx.lex),
        "question": _text(question, ctx.lex),
        "answerA": _text(choices[0], ctx.lex),
        "answerB": _text(choices[1], ctx.lex),
        "answerC": _text(choices[2], ctx.lex),
        "label": str(gold + 1),
    }


def _hellaswag(ctx: _Ctx, rng: random.Random, index: int) -> dict:
    topic, context, choices, gold = _mc_parts(rng, 4)
    ctx_a, ctx_b = _text(context, ctx.lex), _text(grammar.noun_phrase(rng).keys, ctx.lex)
    activity = ctx.lex.word(concept(TOPICS[topic]["NOUN"][0], "NOUN").key)
    return {
        "ind": index,
        "activity_label": activity,
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": f"{ctx_a} {ctx_b}",
        "endings": [_text(c, ctx.lex) for c in choices],
        "label": str(gold),
    }


def _cosmosqa(ctx: _Ctx, rng: random.Random, index: int) -> dict:
    _, context, choices, gold = _mc_parts(rng, 4, context_sentences=2)
    question = _question(rng, concept("may", "AUX").key, word(rng, "PRON"))
    row = {
        "id": f"{ctx.id_prefix}{index:06d}",
        "context": _text(context, ctx.lex),
        "question": _text(question, ctx.lex),
    }
    row.update({f"answer{i}": _text(c, ctx.lex) for i, c in enumerate(choices)})
    row["label"] = gold
    return row


def _commonsenseqa(ctx: _Ctx, rng: random.Random, index: int) -> dict:
    letters = ctx.spec.label_names
    topic = rng.choice(sorted(TOPICS))
    context = grammar.sentence(rng, topic, random_entities=False).keys
    gold = rng.randrange(len(letters))
    others = rng.sample([t for t in sorted(TOPICS) if t != topic], len(letters) - 1)
    answers = []
    for i in range(len(letters)):
        field = topic if i == gold else others.pop()
        answers.append(ctx.lex.word(concept(rng.choice(TOPICS[field]["NOUN"]), "NOUN").key))
    question = [concept("what", "PRON").key] + context[:-1] + [concept("?", "PUNCT").key]
    noun = next((k for k in context if upos_of(k) == "NOUN"), context[0])
    return {
        "id": f"{ctx.id_prefix}{index:06d}",
        "question": _text(question, ctx.lex),
        "question_concept": ctx.lex.word(noun),
        "choices": {"label": list(letters), "text": answers},
        "answerKey": letters[gold],
    }


def _tatoeba(ctx: _Ctx, rng: random.Random, index: int) -> dict:
    keys = grammar.sentence(rng, rng.choice(sorted(TOPICS))).keys
    english = language_lexicon("en", seed=ctx.seed)
    return {
        "source_sentence": _text(keys, ctx.lex),
        "target_sentence": _text(keys, english),
        "source_lang": ctx.lang,
        "target_lang": "en",
    }


# --------------------------------------------------------------------------------------------------
# Mewsli-X: entities with descriptions, mentions of them in context
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class _Entity:
    entity_id: str
    kind: str
    keys: tuple[str, ...]


@lru_cache(maxsize=8)
def _entities(seed: int) -> tuple[tuple[_Entity, ...], tuple[_Entity, ...]]:
    """Every distinct name as an entity, split in two: (training entities, evaluation entities).

    Mewsli-X is 'doubly zero-shot': the WikiNews evaluation mentions link to other entities than
    the English Wikipedia training pairs; the candidate pool holds both.
    """
    names = [("PER", f"{f} {l}") for f in FIRST_NAMES for l in LAST_NAMES]
    names += [("ORG", f"{h} {t}") for h in ORG_HEADS for t in ORG_TAILS]
    names += [("LOC", loc) for loc in LOCATIONS]
    rng = seeded_rng("mewslix-entities", seed)
    rng.shuffle(names)
    entities = tuple(
        _Entity(
            entity_id=f"Q{1000 + stable_hash(seed, name) % 9_000_000}",
            kind=kind,
            keys=tuple(concept(p, "PROPN").key for p in name.split()),
        )
        for kind, name in names
    )
    if len({e.entity_id for e in entities}) != len(entities):
        raise RuntimeError("synthetic Mewsli-X entity ids collide; change the id scheme")
    half = len(entities) // 2
    return entities[:half], entities[half:]


def _description(entity: _Entity, lex: Lexicon) -> str:
    rng = seeded_rng("mewslix-description", entity.entity_id)
    topic = rng.choice(sorted(TOPICS))
    keys = list(entity.keys) + [
        concept("is", "AUX").key,
        concept("a", "DET").key,
        word(rng, "ADJ"),
        word(rng, "NOUN", topic),
        concept("in", "ADP").key,
    ]
    keys += entity_keys(rng, "LOC") if entity.kind != "LOC" else [word(rng, "NOUN", "geography")]
    return _text(keys + [concept(".", "PUNCT").key], lex)


def _mention(rng: random.Random, entity: _Entity, lex: Lexicon) -> str:
    """The Mewsli-X baseline query string: 'name: left { name } right' (xtreme utils_mewslix)."""
    sent = grammar.sentence(
        rng,
        rng.choice(sorted(TOPICS)),
        random_entities=False,
        subject="PER" if entity.kind != "LOC" else None,
        place="LOC" if entity.kind == "LOC" else None,
    )
    start, end, _ = sent.entities[0]
    keys = sent.keys[:start] + list(entity.keys) + sent.keys[end:]
    n = len(entity.keys)
    words = render(keys, lex)
    name = " ".join(words[start : start + n])
    marked = " ".join(words[:start] + ["{", name, "}"] + words[start + n :])
    return f"{name}: {marked}"


def _mewslix(ctx: _Ctx, rng: random.Random, index: int) -> dict:
    train_entities, eval_entities = _entities(ctx.seed)
    # English Wikipedia pairs (train and English dev) vs WikiNews mentions (every other file).
    pairs = ctx.lang == "en" and ctx.split in ("train", "dev")
    entity = rng.choice(train_entities if pairs else eval_entities)
    row = {
        "id": f"{ctx.id_prefix}{index:06d}",
        "mention": _mention(rng, entity, ctx.lex),
        "entity_id": entity.entity_id,
    }
    if pairs:
        row["entity"] = _description(entity, ctx.lex)
    return row


def mewslix_candidates(seed: int, languages: tuple[str, ...]) -> list[dict]:
    """The candidate pool: every entity with its description, a third of them not in English
    (Mewsli-X describes each entity in a randomly chosen language)."""
    train_entities, eval_entities = _entities(seed)
    rows = []
    for entity in sorted(train_entities + eval_entities, key=lambda e: e.entity_id):
        lang = "en"
        if stable_hash("description-language", seed, entity.entity_id) % 3 == 0:
            lang = languages[stable_hash("which-language", seed, entity.entity_id) % len(languages)]
        rows.append(
            {
                "entity_id": entity.entity_id,
                "description": _description(entity, language_lexicon(lang, seed=seed)),
                "description_language": lang,
            }
        )
    return rows


_GENERATORS: dict[str, Callable[..., dict]] = {
    "squad": _squad,
    "lareqa": _squad,
    "copa": _copa,
    "siqa": _siqa,
    "hellaswag": _hellaswag,
    "cosmosqa": _cosmosqa,
    "commonsenseqa": _commonsenseqa,
    "tatoeba": _tatoeba,
    "mewslix": _mewslix,
}


def generate_rows(spec: TaskSpec, lang: str, split: str, *, size: int, seed: int = 0) -> list[dict]:
    """`size` rows of one task, language and split, in the task's row schema."""
    key = stream_key(spec, lang, split)
    if key.startswith("ref:"):  # named after the hub source, so tasks sharing it share the ids too
        ref = spec.data[split][lang]
        prefix = re.sub(r"[^a-z0-9]+", "-", f"{ref.hf_id} {ref.config or ''} {ref.split}".lower()).strip("-") + "-"
    elif key.startswith("parallel:"):
        prefix = f"{spec.name}-{split}-"
    else:
        prefix = f"{spec.name}-{lang}-{split}-"
    ctx = _Ctx(spec=spec, lang=lang, split=split, lex=language_lexicon(lang, seed=seed), seed=seed, id_prefix=prefix)
    rows = []
    for index in range(size):
        rng = seeded_rng(seed, key, index)
        if spec.format == "classification":
            rows.append(_classification(ctx, rng))
        elif spec.schema == "ccg":
            rows.append(_ccg(ctx, rng))
        elif spec.format == "tagging":
            rows.append(_tagging(ctx, rng))
        elif spec.schema in _GENERATORS:
            rows.append(_GENERATORS[spec.schema](ctx, rng, index))
        else:
            raise ValueError(
                f"task {spec.name!r}: no synthetic generator for schema {spec.schema!r} "
                f"(format {spec.format}); known: {sorted(_GENERATORS)} and classification/tagging schemas"
            )
    return rows


# --------------------------------------------------------------------------------------------------
# Writing the benchmark
# --------------------------------------------------------------------------------------------------
def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def read_manifest(out: str | os.PathLike) -> dict | None:
    """The manifest of a complete benchmark in `out`, or None when there is none (or it is partial)."""
    path = Path(out) / MANIFEST
    return read_json(path) if path.is_file() else None


def write_benchmark(
    out: str | os.PathLike,
    settings: SynthSettings = SynthSettings(),
    *,
    tasks: tuple[str, ...] | None = None,
    force: bool = False,
) -> dict:
    """Write the synthetic benchmark for `tasks` (default: every registered task) into `out`.

    Idempotent: a complete benchmark with the same settings and tasks is left as it is. A different
    one is refused unless `force` (then it is rewritten, manifest first removed). Returns the manifest.
    """
    from hpcxlt.tasks.registry import TASKS, get_task

    settings.check()
    names = tuple(tasks) if tasks is not None else tuple(TASKS)
    specs = [get_task(name) for name in names]
    out = Path(out)
    wanted = {
        "generator": "hpcxlt.demo.synth",
        "version": SYNTH_VERSION,
        **asdict(settings),
        "task_names": sorted(names),
    }
    existing = read_manifest(out)
    if existing is not None:
        if {k: existing.get(k) for k in wanted} == wanted:
            return existing
        if not force:
            raise FileExistsError(
                f"{out} holds a synthetic benchmark made with other settings "
                f"({ {k: existing.get(k) for k in wanted if existing.get(k) != wanted[k]} }); "
                "pass force=True (--force) to rewrite it, or choose another folder"
            )
        (out / MANIFEST).unlink()
    files: dict[str, dict[str, dict[str, int]]] = {}
    for spec in specs:
        files[spec.name] = {}
        for split, langs in spec.split_languages().items():  # the files the task's release has
            size = settings.train_size if split == "train" else settings.eval_size
            for lang in langs:
                rows = generate_rows(spec, lang, split, size=size, seed=settings.seed)
                write_text_atomic(out / spec.name / lang / f"{split}.jsonl", _jsonl(rows))
                files[spec.name].setdefault(split, {})[lang] = len(rows)
        if spec.candidates is not None:
            rows = mewslix_candidates(settings.seed, spec.languages)
            write_text_atomic(out / spec.name / CANDIDATES_FILE, _jsonl(rows))
            files[spec.name]["candidates"] = {"*": len(rows)}
    manifest = {**wanted, "files": files}
    write_json_atomic(out / MANIFEST, manifest)
    return manifest
