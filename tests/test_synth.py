import json

import pytest

from hpcxlt.cli import main
from hpcxlt.demo.lexicon import CONCEPTS, language_lexicon
from hpcxlt.demo.synth import MANIFEST, SynthSettings, generate_rows, read_manifest, write_benchmark
from hpcxlt.tasks.registry import SCHEMA_COLUMNS, TASKS, get_task

SMALL = SynthSettings(train_size=30, eval_size=12)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "synth-every-task"
    write_benchmark(out, SMALL)
    return out


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_registered_task_gets_every_split_and_language_it_has_on_the_hub(bench):
    manifest = read_manifest(bench)
    assert set(manifest["files"]) == set(TASKS)
    for name, spec in TASKS.items():
        for split, langs in spec.split_languages().items():
            assert langs, (name, split)
            for lang in langs:
                rows = _rows(bench / name / lang / f"{split}.jsonl")
                assert len(rows) == (SMALL.train_size if split == "train" else SMALL.eval_size)
    # Targets: English training data only; every evaluation language has test data.
    for spec in TASKS.values():
        if spec.role == "target":
            assert spec.split_languages().get("train", ("en",)) == ("en",)
            assert set(spec.split_languages()["test"]) == set(spec.languages)
    # CCG has no hub data: it still gets train and dev in English.
    assert get_task("ccg").split_languages() == {"train": ("en",), "dev": ("en",)}
    assert (bench / "mewslix" / "candidates.jsonl").is_file()


def test_rows_follow_the_real_schemas(bench):
    for name, spec in TASKS.items():
        for split, langs in spec.split_languages().items():
            row = _rows(bench / name / langs[0] / f"{split}.jsonl")[0]
            if spec.columns:
                assert set(spec.columns.values()) <= set(row), (name, row)
            elif spec.schema == "mewslix":
                assert {"mention", "entity_id"} <= set(row)
            else:
                expected = set(SCHEMA_COLUMNS[spec.schema]) - ({"title"} if name == "xquad" else set())
                assert expected <= set(row), (name, sorted(row))
    copa = _rows(bench / "xcopa" / "et" / "test.jsonl")[0]
    assert copa["question"] in ("cause", "effect") and copa["label"] in (0, 1)
    siqa = _rows(bench / "siqa" / "en" / "train.jsonl")[0]
    assert siqa["label"] in ("1", "2", "3")  # 1-based strings, as on the hub
    hellaswag = _rows(bench / "hellaswag" / "en" / "train.jsonl")[0]
    assert len(hellaswag["endings"]) == 4 and hellaswag["label"] in ("0", "1", "2", "3")
    csqa = _rows(bench / "commonsenseqa" / "en" / "train.jsonl")[0]
    assert csqa["choices"]["label"] == ["A", "B", "C", "D", "E"] and csqa["answerKey"] in "ABCDE"
    sib = _rows(bench / "sib200" / "yo" / "train.jsonl")[0]
    assert sib["category"] in get_task("sib200").label_names  # sib200 stores class names
    assert "title" not in _rows(bench / "xquad" / "de" / "test.jsonl")[0]  # XQuAD rows have none
    candidate = _rows(bench / "mewslix" / "candidates.jsonl")[0]
    assert {"entity_id", "description"} <= set(candidate)


def test_labels_and_tags_are_valid_ids_and_qa_answers_are_exact_spans(bench):
    for name, spec in TASKS.items():
        for split, langs in spec.split_languages().items():
            for row in _rows(bench / name / langs[-1] / f"{split}.jsonl"):
                if spec.format == "classification":
                    label = row[spec.columns["label"]]
                    assert label in spec.label_names or 0 <= label < len(spec.label_names)
                elif spec.format == "tagging":
                    tokens, tags = row[spec.columns["tokens"]], row[spec.columns["tags"]]
                    assert len(tokens) == len(tags) and all(" " not in t for t in tokens)
                    if spec.label_names:
                        assert all(0 <= t < len(spec.label_names) for t in tags)
                elif spec.format == "qa" or spec.schema == "lareqa":
                    (text,), (start,) = row["answers"]["text"], row["answers"]["answer_start"]
                    assert row["context"][start : start + len(text)] == text and text


def test_ner_tags_are_iob2_over_entity_names(bench):
    names = get_task("panx").label_names
    seen = set()
    for row in _rows(bench / "panx" / "en" / "train.jsonl"):
        previous = "O"
        for token, tag in zip(row["tokens"], (names[t] for t in row["ner_tags"])):
            if tag.startswith("I-"):
                assert previous[2:] == tag[2:]  # I- continues an entity of the same type
            if tag != "O":
                assert token[0].isupper()
                seen.add(tag[2:])
            previous = tag
    assert seen == {"PER", "ORG", "LOC"}


def test_generation_is_deterministic_and_seeded():
    spec = get_task("xnli")
    assert generate_rows(spec, "de", "test", size=5, seed=3) == generate_rows(spec, "de", "test", size=5, seed=3)
    assert generate_rows(spec, "de", "test", size=5, seed=3) != generate_rows(spec, "de", "test", size=5, seed=4)


def test_evaluation_sets_are_parallel_and_shared_hub_sources_are_equal():
    xnli = get_task("xnli")
    de, sw = generate_rows(xnli, "de", "test", size=20), generate_rows(xnli, "sw", "test", size=20)
    assert [r["label"] for r in de] == [r["label"] for r in sw]  # same examples, other words
    assert [r["premise"] for r in de] != [r["premise"] for r in sw]
    # xnli trains on MNLI: its English training rows are mnli's; SQuAD trains xquad and lareqa alike.
    assert generate_rows(xnli, "en", "train", size=10) == generate_rows(get_task("mnli"), "en", "train", size=10)
    assert generate_rows(get_task("xquad"), "en", "train", size=5) == generate_rows(
        get_task("lareqa"), "en", "train", size=5
    )
    # ...but intermediate tasks in several languages draw their own rows per language.
    sib = get_task("sib200")
    assert generate_rows(sib, "yo", "train", size=5) != generate_rows(sib, "sw", "train", size=5)


def test_languages_share_part_of_the_english_words_more_for_high_resource_ones():
    def shared(lang):
        lex, en = language_lexicon(lang), language_lexicon("en")
        return sum(lex.words[k] == en.words[k] for k in CONCEPTS) / len(CONCEPTS)

    assert shared("en") == 1.0
    assert 0.55 < shared("de") < 0.9  # Joshi class 5
    assert 0.25 < shared("yo") < 0.6  # class 2
    assert shared("de") > shared("yo") > shared("pcm")  # class 5 > 2 > 0
    ru = language_lexicon("ru")
    assert any("\u0400" <= c <= "\u04ff" for w in ru.words.values() for c in w)  # Cyrillic words


def test_manifest_makes_reruns_idempotent_and_refuses_other_settings(tmp_path):
    out = tmp_path / "bench"
    first = write_benchmark(out, SMALL, tasks=("xnli", "panx"))
    stamp = (out / "xnli" / "de" / "test.jsonl").stat().st_mtime_ns
    assert write_benchmark(out, SMALL, tasks=("xnli", "panx")) == first
    assert (out / "xnli" / "de" / "test.jsonl").stat().st_mtime_ns == stamp  # not rewritten
    with pytest.raises(FileExistsError, match="other settings"):
        write_benchmark(out, SynthSettings(train_size=31, eval_size=12), tasks=("xnli", "panx"))
    rewritten = write_benchmark(out, SynthSettings(train_size=31, eval_size=12), tasks=("xnli",), force=True)
    assert rewritten["train_size"] == 31 and list(rewritten["files"]) == ["xnli"]
    # Without the manifest (a crash mid-way), the folder is not a benchmark and is written again.
    (out / MANIFEST).unlink()
    assert read_manifest(out) is None
    assert write_benchmark(out, SMALL, tasks=("xnli",))["train_size"] == SMALL.train_size


def test_cli_writes_a_benchmark_and_reports_bad_input(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", str(out), "--task", "sst2", "--train-size", "5", "--eval-size", "3", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"] == 1 and summary["files"] == 2 and summary["rows"] == 8
    assert len(_rows(out / "sst2" / "en" / "train.jsonl")) == 5
    assert main(["synth", str(out), "--task", "nosuchtask"]) == 2
    assert "unknown task 'nosuchtask'" in capsys.readouterr().err
    assert main(["synth", str(out), "--train-size", "0"]) == 2
    assert "train_size must be > 0" in capsys.readouterr().err
