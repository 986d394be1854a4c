"""The real public files of ../shared/data/real/ (read there, never copied), laid out for the local source.

`real_root(tmp)` builds `<tmp>/<task>/<lang>/<split>.<ext>` out of symbolic links to the release files,
exactly as a user would arrange their own copies (docs/data.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.paths import ROOT

REAL = ROOT.parent / "shared" / "data" / "real"

# (task, registry language, split) -> release file, relative to REAL
XCOPA_LANGS = ("et", "id", "it", "sw", "tr", "vi", "zh")
XQUAD_LANGS = ("ar", "de", "el", "en", "es", "ro", "ru", "tr", "vi")
LAREQA_LANGS = ("ar", "de", "el", "en", "es", "ru", "tr", "vi")
MASAKHANER = {"ha": "hau", "sw": "swa", "yo": "yor"}
SIB200 = {"en": "eng_Latn", "ha": "hau_Latn", "sw": "swh_Latn", "yo": "yor_Latn"}
AFRISENTI = ("ha", "sw", "yo")


def layout() -> dict[tuple[str, str, str], str]:
    files: dict[tuple[str, str, str], str] = {}
    for lang in XCOPA_LANGS:
        files["xcopa", lang, "dev"] = f"xcopa/{lang}/val.{lang}.jsonl"
        files["xcopa", lang, "test"] = f"xcopa/{lang}/test.{lang}.jsonl"
    for lang in XQUAD_LANGS:
        files["xquad", lang, "test"] = f"xquad/xquad.{lang}.json"
    for lang in LAREQA_LANGS:
        files["lareqa", lang, "test"] = f"lareqa/xquad-r/{lang}.json"
    files["udpos", "de", "test"] = "udpos/de_pud-ud-test.conllu"
    files["udpos", "af", "dev"] = "udpos/af_afribooms-ud-dev.conllu"
    files["udpos", "af", "test"] = "udpos/af_afribooms-ud-test.conllu"
    files["udpos", "tl", "test"] = "udpos/tl_trg-ud-test.conllu"
    for lang, code in MASAKHANER.items():
        for split in ("dev", "test"):
            files["masakhaner2", lang, split] = f"masakhaner2/{code}/{split}.txt"
    for lang, code in SIB200.items():
        for split in ("dev", "test"):
            files["sib200", lang, split] = f"sib200/{code}/{split}.tsv"
    for lang in AFRISENTI:
        files["afrisenti", lang, "dev"] = f"afrisenti/{lang}_dev.tsv"
    return files


def real_dir() -> Path:
    """../shared/data/real; a missing folder fails the test (CI always has it beside the clone)."""
    if not (REAL / "README.md").is_file():
        pytest.fail(f"{REAL} is missing: the real-data tests read ../shared/data/real beside the project")
    return REAL


def real_root(tmp: Path) -> Path:
    """A local data root of links to the real release files."""
    real = real_dir()
    for (task, lang, split), name in layout().items():
        source = real / name
        target = tmp / task / lang / f"{split}{source.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(source)
    return tmp
