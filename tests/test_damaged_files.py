"""Damaged release files: each either reads exactly the clean file's rows or is refused naming file and line.

The damaged files are made in a temporary folder from the real releases of ../shared/data/real (BOM,
CRLF, no final newline, truncation, an empty field, an extra tab, a label cut short, bytes that are not
UTF-8); the expected rows are the clean file's, read by the same loader, so hygiene may not change rows.
"""

from __future__ import annotations

import shutil

import pytest

from hpcxlt.config.schema import DataConfig
from hpcxlt.data.load import load_uncapped
from hpcxlt.data.readers import MAX_SHOWN, DataFileError
from hpcxlt.tasks.registry import get_task
from tests.real_data import real_dir

# (task, language, split, release file under ../shared/data/real, local suffix)
FILES = {
    "masakhaner2": ("masakhaner2", "ha", "dev", "masakhaner2/hau/dev.txt", ".txt"),
    "sib200": ("sib200", "sw", "dev", "sib200/swh_Latn/dev.tsv", ".tsv"),
    "afrisenti": ("afrisenti", "ha", "dev", "afrisenti/ha_dev.tsv", ".tsv"),
    "lareqa": ("lareqa", "de", "test", "lareqa/xquad-r/de.json", ".json"),
    "udpos": ("udpos", "af", "dev", "udpos/af_afribooms-ud-dev.conllu", ".conllu"),
    "xcopa": ("xcopa", "sw", "dev", "xcopa/sw/val.sw.jsonl", ".jsonl"),
    "udpos-xtreme": ("udpos", "de", "test", "udpos/de_pud-ud-test.xtreme-gold.tsv", ".conll"),
}


def _load(tmp_path, name: str, data: bytes | None = None):
    task, lang, split, release, suffix = FILES[name]
    root = tmp_path / name
    folder = root / task / lang
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}{suffix}"
    if data is None:
        shutil.copyfile(real_dir() / release, path)
    else:
        path.write_bytes(data)
    rows = load_uncapped(get_task(task), lang, split, DataConfig(source="local", root=str(root)))
    return rows.to_list(), path


def _release(name: str) -> bytes:
    return (real_dir() / FILES[name][3]).read_bytes()


def _refused(tmp_path, name: str, data: bytes, *expected: str) -> str:
    with pytest.raises(DataFileError) as err:
        _load(tmp_path, name, data)
    message = str(err.value)
    path = tmp_path / name / FILES[name][0] / FILES[name][1] / f"{FILES[name][2]}{FILES[name][4]}"
    assert message.startswith(f"{path}: ")
    for text in expected:
        assert text in message, message
    return message


@pytest.mark.parametrize("name", sorted(FILES))
def test_bom_crlf_and_no_final_newline_read_the_clean_rows(tmp_path, name):
    clean, _ = _load(tmp_path / "clean", name)
    data = _release(name)
    lf, crlf = data.replace(b"\r\n", b"\n"), data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    for damaged in (
        b"\xef\xbb\xbf" + data,
        lf,
        crlf,
        lf.rstrip(b"\n"),
        crlf.rstrip(b"\n"),
        b"\xef\xbb\xbf" + crlf.rstrip(b"\r\n"),
    ):
        rows, _ = _load(tmp_path / "damaged", name, damaged)
        assert rows == clean


def test_masakhaner_bom_does_not_become_part_of_the_first_token(tmp_path):
    rows, _ = _load(tmp_path, "masakhaner2", b"\xef\xbb\xbf" + _release("masakhaner2"))
    assert not rows[0]["tokens"][0].startswith("\ufeff")


def test_masakhaner_hashtag_lines_are_tokens(tmp_path):
    rows, _ = _load(tmp_path, "masakhaner2", b"# O\nKano B-LOC\n\nNa O\n# B-ORG\nBBC I-ORG\n")
    assert rows == [
        {"tokens": ["#", "Kano"], "ner_tags": ["O", "B-LOC"]},
        {"tokens": ["Na", "#", "BBC"], "ner_tags": ["O", "B-ORG", "I-ORG"]},
    ]


def test_masakhaner_line_with_an_empty_token_ends_the_sentence_as_the_publishers_reader_does(tmp_path):
    # masakhane-ner code/utils_ner.py strips the line; ' O' becomes 'O', shorter than 2 characters: a break
    rows, _ = _load(tmp_path, "masakhaner2", b"Kano B-LOC\n O\nNa O\n")
    assert rows == [{"tokens": ["Kano"], "ner_tags": ["B-LOC"]}, {"tokens": ["Na"], "ner_tags": ["O"]}]


def test_xtreme_tsv_hash_token_tagged_sym_is_a_token(tmp_path):
    rows, _ = _load(tmp_path, "udpos-xtreme", b"Precio\tNOUN\n#\tSYM\n5\tNUM\n\nOtra\tDET\n")
    assert rows == [
        {"tokens": ["Precio", "#", "5"], "pos_tags": ["NOUN", "SYM", "NUM"]},
        {"tokens": ["Otra"], "pos_tags": ["DET"]},
    ]


def test_a_conllu_comment_inside_a_sentence_reads_right(tmp_path):
    clean, _ = _load(tmp_path / "clean", "udpos")
    lines = _release("udpos").split(b"\n")
    first_word = next(i for i, line in enumerate(lines) if line[:1].isdigit())
    lines.insert(first_word + 1, b"# a comment inside the sentence")
    rows, _ = _load(tmp_path / "damaged", "udpos", b"\n".join(lines))
    assert rows == clean


def test_tsv_line_with_an_extra_tab_is_refused_by_line(tmp_path):
    lines = _release("sib200").split(b"\n")
    lines[5] += b"\textra"
    _refused(tmp_path, "sib200", b"\n".join(lines), "line 6: 4 field(s) where the header", "has 3")


@pytest.mark.parametrize(
    "name,column,cut,expected",
    [
        ("sib200", 1, b"geo", "category 'geo' is not one of"),
        ("afrisenti", 2, b"neg", "label 'neg' is not one of"),
        ("sib200", 2, b"", "column 'text' is empty"),
        ("afrisenti", 1, b"  ", "column 'tweet' is empty"),
    ],
)
def test_tsv_bad_field_is_refused_by_line(tmp_path, name, column, cut, expected):
    lines = _release(name).split(b"\n")
    fields = lines[3].split(b"\t")
    fields[column] = cut
    lines[3] = b"\t".join(fields)
    _refused(tmp_path, name, b"\n".join(lines), f"line 4: {expected}")


def test_tag_cut_short_is_refused_by_line(tmp_path):
    lines = _release("masakhaner2").split(b"\n")
    number = next(i for i, line in enumerate(lines) if line.endswith(b"B-PER"))
    lines[number] = lines[number][:-1]  # B-PE
    _refused(tmp_path, "masakhaner2", b"\n".join(lines), f"line {number + 1}: tag 'B-PE' is not one of")


def test_empty_conllu_form_is_refused_by_line(tmp_path):
    lines = _release("udpos").split(b"\n")
    number = next(i for i, line in enumerate(lines) if line[:1].isdigit() and b"-" not in line.split(b"\t")[0])
    fields = lines[number].split(b"\t")
    fields[1] = b""
    lines[number] = b"\t".join(fields)
    _refused(tmp_path, "udpos", b"\n".join(lines), f"line {number + 1}: empty FORM")


@pytest.mark.parametrize("name", ["lareqa", "xcopa"])
def test_truncated_json_is_refused_naming_the_line(tmp_path, name):
    data = _release(name)
    message = _refused(tmp_path, name, data[: len(data) // 2], "line ")
    assert "JSON" in message


def test_bytes_that_are_not_utf8_are_refused_by_line(tmp_path):
    lines = _release("masakhaner2").split(b"\n")
    lines[9] = b"\xff\xfe" + lines[9]
    _refused(tmp_path, "masakhaner2", b"\n".join(lines), "line 10: bytes", "not UTF-8")


def test_a_stray_carriage_return_is_refused_by_line(tmp_path):
    lines = _release("afrisenti").split(b"\n")
    lines[2] = lines[2].replace(b"\t", b"\r\t", 1)
    _refused(tmp_path, "afrisenti", b"\n".join(lines), "line 3: control character '\\r'")


def test_every_problem_of_a_file_at_once_capped_with_a_count(tmp_path):
    lines = _release("masakhaner2").split(b"\n")
    bad = [i for i, line in enumerate(lines) if line.endswith(b" O")][: MAX_SHOWN + 5]
    for i in bad:
        lines[i] = lines[i][:-2] + b" X"
    message = _refused(
        tmp_path, "masakhaner2", b"\n".join(lines), f"{len(bad)} problem(s)", "... and 5 more problem(s)"
    )
    assert message.count("tag 'X' is not one of") == MAX_SHOWN
