"""Sentences of the synthetic languages, built as concept sequences and rendered per language.

A sentence is a list of concept keys (so one sentence renders into every language: parallel data
for free) plus its entity spans. Each rendered token is one whitespace-separated word, which keeps
UPOS tags, NER tags and QA answer offsets exact in every language.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hpcxlt.demo.lexicon import (
    CLASS_WORDS,
    CONCEPTS,
    FIRST_NAMES,
    LAST_NAMES,
    LOCATIONS,
    MONTHS,
    ORG_HEADS,
    ORG_TAILS,
    TOPICS,
    Lexicon,
    concept,
)

ENTITY_TYPES = ("PER", "ORG", "LOC", "DATE")
YEARS = ("1990", "2004", "2012", "2021", "1887", "1969")


@dataclass(kw_only=True)
class Sentence:
    """A sentence as concept keys, with entity spans [start, end) over those keys."""

    keys: list[str] = field(default_factory=list)
    """Concept keys, one per word (years are kept as literal digits: 'NUM:1990')."""
    entities: list[tuple[int, int, str]] = field(default_factory=list)
    """(start, end, type) of each named entity, type in ENTITY_TYPES."""

    def extend(self, other: Sentence) -> None:
        offset = len(self.keys)
        self.keys.extend(other.keys)
        self.entities.extend((s + offset, e + offset, t) for s, e, t in other.entities)

    def add(self, *keys: str) -> None:
        self.keys.extend(keys)

    def add_entity(self, keys: list[str], kind: str) -> None:
        start = len(self.keys)
        self.keys.extend(keys)
        self.entities.append((start, len(self.keys), kind))


def upos_of(key: str) -> str:
    """The UPOS tag of a concept key."""
    return "NUM" if key.startswith("NUM:") else CONCEPTS[key].upos


def render(keys: list[str], lex: Lexicon) -> list[str]:
    """Words of `keys` in the lexicon's language."""
    return [key[4:] if key.startswith("NUM:") else lex.words[key] for key in keys]


def _names(words: str) -> list[str]:
    return [concept(part, "PROPN").key for part in words.split()]


def entity_keys(rng: random.Random, kind: str) -> list[str]:
    """Concept keys of a random named entity of a type."""
    if kind == "PER":
        first = rng.choice(FIRST_NAMES)
        return _names(first if rng.random() < 0.3 else f"{first} {rng.choice(LAST_NAMES)}")
    if kind == "ORG":
        return _names(f"{rng.choice(ORG_HEADS)} {rng.choice(ORG_TAILS)}")
    if kind == "LOC":
        return _names(rng.choice(LOCATIONS))
    if kind == "DATE":
        return _names(rng.choice(MONTHS)) + [f"NUM:{rng.choice(YEARS)}"]
    raise ValueError(f"unknown entity type {kind!r}; known: {', '.join(ENTITY_TYPES)}")


def _pools() -> dict[tuple[str, str | None], tuple[str, ...]]:
    pools: dict[tuple[str, str | None], tuple[str, ...]] = {}
    for upos, words in CLASS_WORDS.items():
        if upos in ("NOUN", "VERB"):
            # Plain nouns and verbs come from every topic too, so topic words are not rare words.
            words = words + tuple(w for fields in TOPICS.values() for w in fields[upos])
        pools[(upos, None)] = tuple(concept(w, upos).key for w in words)
    for topic, fields in TOPICS.items():
        for upos, words in fields.items():
            pools[(upos, topic)] = tuple(concept(w, upos).key for w in words)
    return pools


_POOLS = _pools()


def word(rng: random.Random, upos: str, topic: str | None = None) -> str:
    """A random concept key of a class (from a topic's words when the topic has that class)."""
    pool = _POOLS.get((upos, topic)) or _POOLS[(upos, None)]
    return pool[int(rng.random() * len(pool))]


def noun_phrase(rng: random.Random, topic: str | None = None, *, entity: str | None = None) -> Sentence:
    """[DET] [ADJ] NOUN, a pronoun, or a named entity of type `entity`."""
    phrase = Sentence()
    if entity is not None:
        phrase.add_entity(entity_keys(rng, entity), entity)
        return phrase
    if topic is None and rng.random() < 0.1:
        phrase.add(word(rng, "PRON"))
        return phrase
    phrase.add(word(rng, "DET"))
    if rng.random() < 0.4:
        phrase.add(word(rng, "ADJ"))
    if rng.random() < 0.1:
        phrase.add(word(rng, "NUM"))
    phrase.add(word(rng, "NOUN", topic))
    return phrase


def clause(
    rng: random.Random, topic: str | None = None, *, subject: str | None = None, place: str | None = None
) -> Sentence:
    """Subject, verb, object and an optional place or time: the core of every sentence.

    `subject` / `place` force a named entity of that type in that slot.
    """
    out = Sentence()
    if rng.random() < 0.1:
        out.add(word(rng, "INTJ"), concept(",", "PUNCT").key)
    out.extend(noun_phrase(rng, topic, entity=subject))
    if rng.random() < 0.15:
        out.add(word(rng, "AUX"))
    if rng.random() < 0.1:
        out.add(word(rng, "PART"))
    out.add(word(rng, "VERB", topic))
    out.extend(noun_phrase(rng, topic))
    if place is not None or rng.random() < 0.4:
        out.add(word(rng, "ADP"))
        out.extend(noun_phrase(rng, topic, entity=place) if place else noun_phrase(rng, topic))
    if rng.random() < 0.3:
        out.add(word(rng, "ADV"))
    if rng.random() < 0.05:
        out.add(word(rng, "NUM"), concept(rng.choice(("%", "$")), "SYM").key)
    return out


def sentence(
    rng: random.Random,
    topic: str | None = None,
    *,
    subject: str | None = None,
    place: str | None = None,
    random_entities: bool = True,
    end: str = ".",
) -> Sentence:
    """One sentence ending in `end`, with entities of the given types as subject and place.

    Without `subject`, one in five sentences still gets a random named subject unless
    `random_entities` is False (QA contexts control their entities exactly).
    """
    if subject is None and random_entities and rng.random() < 0.2:
        subject = rng.choice(ENTITY_TYPES[:3])
    out = clause(rng, topic, subject=subject, place=place)
    if rng.random() < 0.25:
        out.add(word(rng, rng.choice(("CCONJ", "SCONJ"))))
        out.extend(clause(rng, topic))
    out.add(concept(end, "PUNCT").key)
    return out
