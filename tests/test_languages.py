"""Language table: names, Joshi et al. 2020 classes, and the low/high resource split."""

from __future__ import annotations

import dataclasses

import pytest

from hpcxlt.tasks import TASKS
from hpcxlt.tasks.languages import (
    LANGUAGES,
    LOW_RESOURCE_MAX_CLASS,
    UNCERTAIN,
    UnknownLanguageError,
    codes_in_group,
    language,
    resource_group,
)


@pytest.mark.parametrize(
    "code, group",
    [
        ("en", "high"),
        ("de", "high"),
        ("hi", "high"),
        ("id", "high"),
        ("ta", "high"),
        ("sw", "low"),
        ("yo", "low"),
        ("te", "low"),
        ("qu", "low"),
        ("pcm", "low"),
        ("wo", "low"),
    ],
)
def test_low_high_split_of_hand_checked_languages(code, group):
    assert resource_group(code) == group


def test_threshold_is_joshi_class_two():
    assert LOW_RESOURCE_MAX_CLASS == 2
    assert language("mr").joshi_class == 2 and resource_group("mr") == "low"
    assert language("af").joshi_class == 3 and resource_group("af") == "high"
    # The six class examples of Joshi et al. 2020's Table 1 that the registry uses.
    assert {
        c: language(c).joshi_class
        for c in ("en", "es", "de", "ja", "fr", "ru", "hu", "vi", "nl", "ko", "id", "uk", "af", "he", "zu")
    } == {
        "en": 5,
        "es": 5,
        "de": 5,
        "ja": 5,
        "fr": 5,
        "ru": 4,
        "hu": 4,
        "vi": 4,
        "nl": 4,
        "ko": 4,
        "id": 3,
        "uk": 3,
        "af": 3,
        "he": 3,
        "zu": 2,
    }


def test_table_holds_exactly_the_codes_the_registry_uses():
    used = {c for spec in TASKS.values() for c in (*spec.languages, *spec.train_languages)}
    assert used == set(LANGUAGES)
    assert set(UNCERTAIN) <= set(LANGUAGES)
    for code, lang in LANGUAGES.items():
        assert lang.code == code and lang.name and 0 <= lang.joshi_class <= 5


def test_unknown_code_names_close_matches():
    with pytest.raises(UnknownLanguageError) as err:
        language("EN")
    assert "'en'" in str(err.value)
    with pytest.raises(UnknownLanguageError, match="'de'"):
        language("German")
    with pytest.raises(ValueError, match="unknown language code 'zz'"):
        resource_group("zz")


def test_groups_partition_the_table():
    low, high = codes_in_group("low"), codes_in_group("high")
    assert set(low) | set(high) == set(LANGUAGES) and not set(low) & set(high)
    with pytest.raises(ValueError, match="'mid'"):
        codes_in_group("mid")


def test_language_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        language("en").joshi_class = 0  # type: ignore[misc]
