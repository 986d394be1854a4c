"""Every language code the task registry uses: English name and Joshi et al. 2020 resource class.

Resource classes 0-5 come from the taxonomy of Joshi et al. 2020, "The State and Fate of Linguistic
Diversity and Inclusion in the NLP World" (ACL 2020), published as `lang2tax.txt` on
microsoft.github.io/linguisticdiversity: 0 "Left-Behinds", 1 "Scraping-Bys", 2 "Hopefuls",
3 "Rising Stars", 4 "Underdogs", 5 "Winners". The values below are the assignments of that file as
best known here (the file itself is not reachable from these machines); codes whose class could not
be checked, or that the file does not list at all, are named in `UNCERTAIN` with the reason.

Codes are ISO 639-1 where one exists, else ISO 639-3 (e.g. 'pcm', 'luo'), as in `TaskSpec.languages`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

LOW_RESOURCE_MAX_CLASS = 2
"""Joshi classes 0-2 count as low-resource, 3-5 as high-resource (the usual split in follow-up work)."""

RESOURCE_GROUPS = ("low", "high")


@dataclass(frozen=True, kw_only=True)
class Language:
    """One language of the registry."""

    code: str
    """ISO 639-1 code where one exists, else ISO 639-3."""
    name: str
    """English name."""
    joshi_class: int
    """Resource class 0 (no resources) to 5 (English-like) of Joshi et al. 2020."""


class UnknownLanguageError(ValueError):
    """A language code that is not in the table; the message lists close matches."""


# code: (English name, Joshi class). Grouped by class to make the table easy to check.
_TABLE: dict[str, tuple[str, int]] = {
    # class 5
    "ar": ("Arabic", 5),
    "de": ("German", 5),
    "en": ("English", 5),
    "es": ("Spanish", 5),
    "fr": ("French", 5),
    "ja": ("Japanese", 5),
    "zh": ("Chinese (Mandarin)", 5),
    # class 4
    "eu": ("Basque", 4),
    "fa": ("Persian", 4),
    "fi": ("Finnish", 4),
    "hi": ("Hindi", 4),
    "hu": ("Hungarian", 4),
    "it": ("Italian", 4),
    "ko": ("Korean", 4),
    "nl": ("Dutch", 4),
    "pl": ("Polish", 4),
    "pt": ("Portuguese", 4),
    "ru": ("Russian", 4),
    "tr": ("Turkish", 4),
    "vi": ("Vietnamese", 4),
    # class 3
    "af": ("Afrikaans", 3),
    "bg": ("Bulgarian", 3),
    "bn": ("Bengali", 3),
    "el": ("Greek", 3),
    "et": ("Estonian", 3),
    "he": ("Hebrew", 3),
    "id": ("Indonesian", 3),
    "ka": ("Georgian", 3),
    "kk": ("Kazakh", 3),
    "lt": ("Lithuanian", 3),
    "ms": ("Malay", 3),
    "ro": ("Romanian", 3),
    "ta": ("Tamil", 3),
    "th": ("Thai", 3),
    "tl": ("Tagalog", 3),
    "uk": ("Ukrainian", 3),
    "ur": ("Urdu", 3),
    # class 2
    "am": ("Amharic", 2),
    "ha": ("Hausa", 2),
    "mr": ("Marathi", 2),
    "pa": ("Punjabi", 2),
    "sw": ("Swahili", 2),
    "ti": ("Tigrinya", 2),
    "tn": ("Tswana", 2),
    "wo": ("Wolof", 2),
    "xh": ("Xhosa", 2),
    "yo": ("Yoruba", 2),
    "zu": ("Zulu", 2),
    # class 1
    "as": ("Assamese", 1),
    "ay": ("Aymara", 1),
    "az": ("Azerbaijani", 1),
    "bm": ("Bambara", 1),
    "ee": ("Ewe", 1),
    "gn": ("Guarani", 1),
    "gu": ("Gujarati", 1),
    "ht": ("Haitian Creole", 1),
    "ig": ("Igbo", 1),
    "ilo": ("Ilocano", 1),
    "jv": ("Javanese", 1),
    "km": ("Khmer", 1),
    "kn": ("Kannada", 1),
    "ky": ("Kyrgyz", 1),
    "lg": ("Luganda", 1),
    "ln": ("Lingala", 1),
    "mg": ("Malagasy", 1),
    "ml": ("Malayalam", 1),
    "my": ("Burmese", 1),
    "ne": ("Nepali", 1),
    "ny": ("Chichewa", 1),
    "om": ("Oromo", 1),
    "or": ("Odia", 1),
    "qu": ("Quechua", 1),
    "rw": ("Kinyarwanda", 1),
    "sd": ("Sindhi", 1),
    "sn": ("Shona", 1),
    "so": ("Somali", 1),
    "su": ("Sundanese", 1),
    "te": ("Telugu", 1),
    "tg": ("Tajik", 1),
    "tk": ("Turkmen", 1),
    "ts": ("Tsonga", 1),
    "tw": ("Twi", 1),
    # class 0
    "arq": ("Algerian Arabic", 0),
    "ary": ("Moroccan Arabic", 0),
    "bbj": ("Ghomala'", 0),
    "fon": ("Fon", 0),
    "luo": ("Luo (Dholuo)", 0),
    "mos": ("Mossi", 0),
    "pcm": ("Nigerian Pidgin", 0),
    "si": ("Sinhala", 0),
}

UNCERTAIN: Mapping[str, str] = MappingProxyType(
    {
        # Why these classes are less sure than the rest; none of them would change the low/high group.
        "ht": "sources disagree between class 1 and 2 for Haitian Creole",
        "si": "class 0 as usually cited; some sources give 1",
        "arq": "Arabic dialect not listed separately in lang2tax; class 0 assumed",
        "ary": "Arabic dialect not listed separately in lang2tax; class 0 assumed",
        "bbj": "not listed in lang2tax; class 0 assumed (no NLP resources before MasakhaNER 2.0)",
        "luo": "not listed in lang2tax under this name; class 0 assumed",
        "mos": "not listed in lang2tax under this name; class 0 assumed",
        "pcm": "not listed in lang2tax; class 0 assumed",
    }
)
"""Codes whose class is an assumption or disputed, with the reason."""

LANGUAGES: Mapping[str, Language] = MappingProxyType(
    {code: Language(code=code, name=name, joshi_class=cls) for code, (name, cls) in _TABLE.items()}
)
"""code -> Language for every code used in the registry."""


def _close_matches(code: str) -> list[str]:
    """Codes near `code`, also matching it against English names ('German' -> 'de')."""
    wanted = code.strip().lower()
    by_name = {lang.name.lower(): lang.code for lang in LANGUAGES.values()}
    hits = difflib.get_close_matches(wanted, list(LANGUAGES), n=5, cutoff=0.5)
    hits += [by_name[n] for n in difflib.get_close_matches(wanted, list(by_name), n=3, cutoff=0.7)]
    return list(dict.fromkeys(hits))


def language(code: str) -> Language:
    """The Language for `code`; raises UnknownLanguageError naming close matches."""
    try:
        return LANGUAGES[code]
    except (KeyError, TypeError):
        near = _close_matches(str(code))
        hint = f"; did you mean {', '.join(repr(c) for c in near)}?" if near else ""
        raise UnknownLanguageError(
            f"unknown language code {code!r}{hint} "
            f"({len(LANGUAGES)} codes are known: see hpcxlt.tasks.languages.LANGUAGES)"
        ) from None


def resource_group(code: str) -> str:
    """'low' for Joshi classes 0..LOW_RESOURCE_MAX_CLASS, else 'high'."""
    return "low" if language(code).joshi_class <= LOW_RESOURCE_MAX_CLASS else "high"


def codes_in_group(group: str) -> tuple[str, ...]:
    """All known codes of one resource group ('low' or 'high'), sorted."""
    if group not in RESOURCE_GROUPS:
        raise ValueError(f"resource group must be one of {RESOURCE_GROUPS}, got {group!r}")
    return tuple(sorted(c for c in LANGUAGES if resource_group(c) == group))
