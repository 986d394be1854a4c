"""Synthetic languages: one deterministic lexicon per language code, derived from an English base.

Every concept of the base vocabulary has a word class (a Universal POS tag) and an English form. A
language keeps the English form for a share of the concepts (more for high-resource languages: the
stand-in for what multilingual pre-training aligns well) and invents its own word for the rest, from
its own letters and syllables, written in its own script. A model trained on English therefore
transfers to another language through the shared words only: possible, but imperfect, and worse
for low-resource languages, which is the shape of zero-shot cross-lingual transfer.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Topic fields: the nouns and verbs of one subject. Topic classification and multiple choice use
# them (the right answer stays on the topic of its context); everything else uses them as plain words.
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "food": {
        "NOUN": ("bread", "soup", "apple", "cheese", "kitchen", "cook", "dinner", "rice", "oven", "bakery"),
        "VERB": ("eats", "cooks", "tastes", "bakes"),
    },
    "travel": {
        "NOUN": ("train", "station", "ticket", "hotel", "airport", "journey", "suitcase", "passport", "map", "bus"),
        "VERB": ("travels", "drives", "boards", "visits"),
    },
    "health": {
        "NOUN": ("doctor", "hospital", "medicine", "fever", "nurse", "patient", "clinic", "vaccine", "injury", "diet"),
        "VERB": ("heals", "treats", "examines", "recovers"),
    },
    "sports": {
        "NOUN": ("ball", "team", "match", "goal", "coach", "stadium", "player", "race", "trophy", "league"),
        "VERB": ("plays", "wins", "scores", "trains"),
    },
    "politics": {
        "NOUN": (
            "minister",
            "election",
            "vote",
            "parliament",
            "law",
            "party",
            "president",
            "senate",
            "campaign",
            "policy",
        ),
        "VERB": ("elects", "governs", "debates", "signs"),
    },
    "science": {
        "NOUN": (
            "laboratory",
            "experiment",
            "computer",
            "scientist",
            "data",
            "telescope",
            "theory",
            "robot",
            "planet",
            "energy",
        ),
        "VERB": ("measures", "tests", "observes", "computes"),
    },
    "entertainment": {
        "NOUN": ("film", "music", "song", "actor", "concert", "theatre", "guitar", "dancer", "festival", "album"),
        "VERB": ("sings", "dances", "performs", "records"),
    },
    "geography": {
        "NOUN": ("river", "mountain", "island", "desert", "coast", "valley", "lake", "forest", "border", "region"),
        "VERB": ("crosses", "climbs", "explores", "maps"),
    },
}

# Words of each class that belong to no topic.
CLASS_WORDS: dict[str, tuple[str, ...]] = {
    "NOUN": (
        "house",
        "friend",
        "child",
        "letter",
        "window",
        "table",
        "village",
        "city",
        "road",
        "door",
        "garden",
        "book",
        "teacher",
        "student",
        "market",
        "school",
        "boat",
        "bridge",
        "dog",
        "bird",
    ),
    "VERB": (
        "sees",
        "finds",
        "brings",
        "takes",
        "builds",
        "opens",
        "carries",
        "watches",
        "likes",
        "buys",
        "sells",
        "helps",
        "paints",
        "follows",
        "meets",
        "leaves",
        "wants",
        "shows",
        "calls",
        "reads",
    ),
    "ADJ": (
        "big",
        "small",
        "old",
        "new",
        "red",
        "green",
        "quiet",
        "busy",
        "bright",
        "dark",
        "long",
        "short",
        "warm",
        "cold",
        "heavy",
        "young",
    ),
    "ADV": ("quickly", "slowly", "often", "rarely", "today", "yesterday", "always", "soon", "here", "there"),
    "AUX": ("will", "can", "must", "may", "should", "is"),
    "DET": ("the", "a", "this", "that", "every", "some"),
    "ADP": ("in", "on", "near", "with", "from", "to", "under", "behind"),
    "PRON": ("he", "she", "they", "we", "it", "someone"),
    "CCONJ": ("and", "but", "or"),
    "SCONJ": ("because", "while", "although", "if"),
    "PART": ("not", "only"),
    "NUM": ("one", "two", "three", "four", "five", "six", "seven", "ten", "twenty", "hundred"),
    "INTJ": ("oh", "wow", "hey", "yes"),
    "X": ("etc", "ok"),
}

# Cue words: the words that decide a label. Keyed by lower-cased label name, so every task with the
# same labels (mnli, snli, anli, xnli; sst2 and the sentiment sets) shares them, as the real tasks
# share their meaning. Labels not listed here get invented cue words of their own (see cue_concepts).
CUES: dict[str, tuple[tuple[str, str], ...]] = {
    "entailment": (("indeed", "ADV"), ("certainly", "ADV"), ("also", "ADV")),
    "neutral": (("perhaps", "ADV"), ("maybe", "ADV"), ("possibly", "ADV")),
    "contradiction": (("never", "ADV"), ("no", "DET"), ("nobody", "PRON")),
    "positive": (("good", "ADJ"), ("wonderful", "ADJ"), ("excellent", "ADJ"), ("happy", "ADJ")),
    "negative": (("bad", "ADJ"), ("terrible", "ADJ"), ("awful", "ADJ"), ("sad", "ADJ")),
    "paraphrase": (("likewise", "ADV"), ("similarly", "ADV")),
    "duplicate": (("likewise", "ADV"), ("similarly", "ADV")),
    "not_duplicate": (("otherwise", "ADV"), ("instead", "ADV")),
    "different": (("otherwise", "ADV"), ("instead", "ADV")),
    "not_paraphrase": (("otherwise", "ADV"), ("instead", "ADV")),
}

# Words that make a multiple-choice answer plausible: usually on the right answer, seldom on a wrong
# one (real multiple-choice sets have such answer-only cues too; shared cues are one reason
# HellaSwag / SIQA training helps XCOPA).
PLAUSIBLE_CUES: tuple[tuple[str, str], ...] = (("naturally", "ADV"), ("usually", "ADV"), ("therefore", "ADV"))

# Question words of the QA tasks, by the entity type that answers them.
QUESTION_WORDS: dict[str, tuple[tuple[str, str], ...]] = {
    "PER": (("who", "PRON"),),
    "ORG": (("which", "DET"), ("organization", "NOUN")),
    "LOC": (("where", "ADV"),),
    "DATE": (("when", "ADV"),),
    "THING": (("what", "PRON"),),  # multiple-choice questions
}

# Entities, shared by NER, QA answers and entity linking. Names are kept across languages far more
# often than ordinary words (they are transliterated, not translated), like in real text.
FIRST_NAMES = (
    "Anna",
    "Omar",
    "Lena",
    "Kofi",
    "Mira",
    "Ravi",
    "Sofia",
    "Tomas",
    "Amina",
    "Jonas",
    "Yuki",
    "Pedro",
    "Fatima",
    "Ivan",
    "Chen",
    "Nadia",
    "Ali",
    "Elena",
    "Kwame",
    "Lucia",
)
LAST_NAMES = (
    "Smith",
    "Okafor",
    "Novak",
    "Haddad",
    "Tanaka",
    "Silva",
    "Kowalski",
    "Mensah",
    "Ivanova",
    "Garcia",
    "Nguyen",
    "Schmidt",
    "Rossi",
    "Kaya",
    "Patel",
    "Dubois",
)
LOCATIONS = (
    "Lorton",
    "Vesmar",
    "Kaldera",
    "Brunwick",
    "Talossa",
    "Merovia",
    "Ostrand",
    "Pelago",
    "Corvin",
    "Dunmore",
    "Saravel",
    "Thessin",
    "Umbria",
    "Zenith Bay",
    "New Harlow",
    "Port Amsel",
)
ORG_HEADS = ("Acme", "Nordic", "Global", "Summit", "Pioneer", "Atlas", "Vertex", "Orion", "Harbor", "Crescent")
ORG_TAILS = ("Corporation", "Bank", "University", "Institute", "Airlines", "Council", "Foundation", "Group")
MONTHS = ("January", "March", "May", "July", "September", "November")
PUNCT = (".", ",", "!", "?", ";")
SYM = ("%", "$", "+", "=")

# Letters from which invented words are built, and per-script stand-ins for them: languages written
# in another script render their invented words in it (shared words and names stay as they are).
LETTERS = "aeioubdfghklmnprstvz"
SCRIPT_STARTS = {
    "Cyrillic": 0x0430,
    "Greek": 0x03B1,
    "Arabic": 0x0628,
    "Hebrew": 0x05D0,
    "Devanagari": 0x0915,
    "Bengali": 0x0995,
    "Tamil": 0x0B95,
    "Telugu": 0x0C15,
    "Malayalam": 0x0D15,
    "Thai": 0x0E01,
    "Georgian": 0x10D0,
    "Hangul": 0xAC00,
    "Han": 0x4E00,
    "Kana": 0x30A2,
    "Ethiopic": 0x1200,
    "Myanmar": 0x1000,
    "Armenian": 0x0561,
    "Gujarati": 0x0A95,
    "Gurmukhi": 0x0A15,
    "Kannada": 0x0C95,
    "Oriya": 0x0B15,
    "Sinhala": 0x0D9A,
    "Khmer": 0x1780,
}
# ISO codes written in a non-Latin script (fact: the script each language is usually written in).
SCRIPTS = {
    "ru": "Cyrillic",
    "bg": "Cyrillic",
    "uk": "Cyrillic",
    "kk": "Cyrillic",
    "mk": "Cyrillic",
    "sr": "Cyrillic",
    "be": "Cyrillic",
    "ky": "Cyrillic",
    "mn": "Cyrillic",
    "tg": "Cyrillic",
    "tt": "Cyrillic",
    "el": "Greek",
    "ar": "Arabic",
    "fa": "Arabic",
    "ur": "Arabic",
    "ps": "Arabic",
    "ug": "Arabic",
    "sd": "Arabic",
    "ckb": "Arabic",
    "arz": "Arabic",
    "ary": "Arabic",
    "he": "Hebrew",
    "yi": "Hebrew",
    "hi": "Devanagari",
    "mr": "Devanagari",
    "ne": "Devanagari",
    "sa": "Devanagari",
    "mai": "Devanagari",
    "bho": "Devanagari",
    "bn": "Bengali",
    "as": "Bengali",
    "ta": "Tamil",
    "te": "Telugu",
    "ml": "Malayalam",
    "th": "Thai",
    "ka": "Georgian",
    "ko": "Hangul",
    "zh": "Han",
    "yue": "Han",
    "ja": "Kana",
    "am": "Ethiopic",
    "ti": "Ethiopic",
    "my": "Myanmar",
    "hy": "Armenian",
    "gu": "Gujarati",
    "pa": "Gurmukhi",
    "kn": "Kannada",
    "or": "Oriya",
    "si": "Sinhala",
    "km": "Khmer",
}


def stable_hash(*parts: object) -> int:
    """A hash that is the same in every process and Python version (unlike hash())."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def seeded_rng(*parts: object) -> random.Random:
    """A random generator whose stream is fixed by `parts` (seed, task, split, ...)."""
    return random.Random(stable_hash(*parts))


@dataclass(frozen=True, kw_only=True)
class Concept:
    """One word meaning of the base vocabulary."""

    key: str
    """Unique id, the English form plus its class (e.g. 'bread/NOUN')."""
    english: str
    """English surface form (may hold a space for multi-word names)."""
    upos: str
    """Universal POS tag of the word."""
    topic: str | None = None
    """Topic field the word belongs to, if any."""
    name: bool = False
    """True for parts of proper names, which are kept across languages more often."""


def _build_concepts() -> dict[str, Concept]:
    concepts: dict[str, Concept] = {}

    def add(word: str, upos: str, *, topic: str | None = None, name: bool = False) -> None:
        key = f"{word}/{upos}"
        if key not in concepts:
            concepts[key] = Concept(key=key, english=word, upos=upos, topic=topic, name=name)

    for topic, classes in TOPICS.items():
        for upos, words in classes.items():
            for word in words:
                add(word, upos, topic=topic)
    for upos, words in CLASS_WORDS.items():
        for word in words:
            add(word, upos)
    for cues in (*CUES.values(), *QUESTION_WORDS.values(), PLAUSIBLE_CUES):
        for word, upos in cues:
            add(word, upos)
    for group in (FIRST_NAMES, LAST_NAMES, LOCATIONS, ORG_HEADS, ORG_TAILS, MONTHS):
        for word in group:
            for part in word.split():
                add(part, "PROPN", name=True)
    for word in PUNCT:
        add(word, "PUNCT")
    for word in SYM:
        add(word, "SYM")
    return concepts


CONCEPTS: dict[str, Concept] = _build_concepts()


def concept(word: str, upos: str) -> Concept:
    """The concept for an English word of a class; KeyError names the word when it is unknown."""
    try:
        return CONCEPTS[f"{word}/{upos}"]
    except KeyError:
        raise KeyError(f"no concept {word!r} of class {upos} in the synthetic base vocabulary") from None


def resource_share(resource_class: int | None) -> float:
    """Share of the base vocabulary a language keeps in English form, by Joshi et al. (2020) class 0-5.

    30% for the 'left-behinds' (class 0) up to 70% for the 'winners' (class 5); 50% when unknown.
    """
    if resource_class is None:
        return 0.5
    return 0.3 + 0.08 * max(0, min(5, resource_class))


def _script_letters(script: str) -> str:
    """20 letters of `script` standing in for LETTERS (assigned, non-combining letters only)."""
    out: list[str] = []
    code = SCRIPT_STARTS[script]
    while len(out) < len(LETTERS):
        char = chr(code)
        if unicodedata.category(char) in ("Lo", "Ll", "Lu") and not unicodedata.combining(char):
            out.append(char)
        code += 1
    return "".join(out)


class Lexicon:
    """The words of one synthetic language: concept -> surface form, and back."""

    def __init__(self, lang: str, *, share: float, seed: int = 0):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share for language {lang!r} must be in [0, 1], got {share}")
        self.lang = lang
        self.share = share
        self.seed = seed
        self.script = "Latin" if lang == "en" else SCRIPTS.get(lang, "Latin")
        rng = seeded_rng("phonology", seed, lang)
        consonants = [c for c in LETTERS if c not in "aeiou"]
        self._consonants = rng.sample(consonants, 10)
        self._vowels = rng.sample("aeiou", 4)
        self._suffix = {upos: self._syllable(rng) for upos in ("NOUN", "VERB", "ADJ")}
        table = _script_letters(self.script) if self.script != "Latin" else LETTERS
        self._to_script = str.maketrans(LETTERS, table)
        self.words: dict[str, str] = {}
        taken: set[str] = set()
        for key in sorted(CONCEPTS):
            form = self._form(CONCEPTS[key], taken)
            taken.add(form)
            self.words[key] = form

    def _syllable(self, rng: random.Random) -> str:
        syllable = rng.choice(self._consonants) + rng.choice(self._vowels)
        return syllable + (rng.choice(self._consonants) if rng.random() < 0.3 else "")

    def _form(self, item: Concept, taken: set[str]) -> str:
        if self.lang == "en" or item.upos in ("PUNCT", "SYM"):
            return item.english
        draw = stable_hash("share", self.seed, self.lang, item.key) / 2**64
        # Names are kept far more often: transliteration keeps them recognisable.
        keep = min(1.0, self.share + 0.4) if item.name else self.share
        if draw < keep:
            return item.english
        rng = seeded_rng("word", self.seed, self.lang, item.key)
        for _ in range(100):
            n_syllables = 1 if item.upos in ("DET", "ADP", "PRON", "CCONJ", "PART", "AUX") else rng.choice((2, 2, 3))
            word = "".join(self._syllable(rng) for _ in range(n_syllables)) + self._suffix.get(item.upos, "")
            # Capitals exist in Latin only (other scripts' case mapping would leave the table).
            word = word.capitalize() if item.name and self.script == "Latin" else word.translate(self._to_script)
            # An invented word must not collide with another word of this language or with English.
            if word not in taken and word.lower() not in _ENGLISH_LOWER:
                return word
        raise RuntimeError(f"could not invent a distinct word for {item.key!r} in {self.lang!r}")

    def word(self, key: str) -> str:
        """Surface form of a concept key (e.g. 'bread/NOUN')."""
        return self.words[key]

    def render(self, keys: list[str]) -> list[str]:
        """Surface forms of a sequence of concept keys (one token each)."""
        return [self.words[key] for key in keys]


_ENGLISH_LOWER = frozenset(c.english.lower() for c in CONCEPTS.values())


@lru_cache(maxsize=256)
def lexicon(lang: str, *, seed: int = 0, resource_class: int | None = None) -> Lexicon:
    """The (cached) lexicon of a language; English keeps every word."""
    share = 1.0 if lang == "en" else resource_share(resource_class)
    return Lexicon(lang, share=share, seed=seed)


def language_lexicon(lang: str, *, seed: int = 0) -> Lexicon:
    """The lexicon of a registry language, its share set by its Joshi class (50% if unknown)."""
    from hpcxlt.tasks.languages import LANGUAGES

    known = LANGUAGES.get(lang)
    return lexicon(lang, seed=seed, resource_class=known.joshi_class if known else None)
