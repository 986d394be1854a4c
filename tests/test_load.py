import json

import pytest

from hpcxlt.config.schema import DataConfig
from hpcxlt.data.load import (
    DataNotFoundError,
    available,
    load_candidates,
    load_split,
    local_file,
    source_fingerprint,
)
from hpcxlt.demo.synth import SynthSettings, write_benchmark
from hpcxlt.tasks.registry import get_task


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "load-bench"
    write_benchmark(
        out, SynthSettings(train_size=20, eval_size=8), tasks=("xnli", "xquad", "panx", "mewslix", "sib200")
    )
    return out


def local(root, **caps):
    return DataConfig(source="local", root=str(root), **caps)


def test_local_jsonl_rows_and_caps(root):
    xnli = get_task("xnli")
    rows = load_split(xnli, "de", "test", local(root))
    assert len(rows) == 8 and rows.column_names == ["premise", "hypothesis", "label"]
    assert len(load_split(xnli, "en", "train", local(root, max_train_examples=5))) == 5
    assert len(load_split(xnli, "de", "test", local(root, max_train_examples=5))) == 8  # train cap only
    assert len(load_split(xnli, "de", "test", local(root, max_eval_examples=3))) == 3
    qa = load_split(get_task("xquad"), "el", "test", local(root))[0]
    assert qa["context"][qa["answers"]["answer_start"][0] :].startswith(qa["answers"]["text"][0])
    assert len(load_candidates(get_task("mewslix"), local(root))) > 100
    assert available(xnli, local(root))["train"] == ("en",)
    assert set(available(xnli, local(root))["test"]) == set(xnli.languages)


def test_missing_files_name_what_was_looked_for_and_what_exists(root, tmp_path):
    xnli = get_task("xnli")
    with pytest.raises(DataNotFoundError) as err:
        load_split(xnli, "de", "train", local(root))
    assert "task 'xnli', language 'de', split 'train'" in str(err.value)
    assert "dev.jsonl" in str(err.value) and "test.jsonl" in str(err.value)  # what the folder holds
    with pytest.raises(DataNotFoundError, match=r"holds .*de/.*en/"):
        load_split(xnli, "qu", "test", local(root))  # lists the languages present
    with pytest.raises(DataNotFoundError, match="hpcxlt synth"):
        load_split(xnli, "de", "test", local(tmp_path / "empty"))
    with pytest.raises(DataNotFoundError, match="data.root is not set"):
        load_split(xnli, "de", "test", DataConfig(source="local", root=""))


def test_hub_offline_error_names_task_and_data_set(monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(DataNotFoundError) as err:
        load_split(get_task("xnli"), "de", "test", DataConfig(source="hub"))
    message = str(err.value)
    assert "task 'xnli'" in message and "'facebook/xnli'" in message and "config 'de'" in message
    assert "data.source: local" in message
    with pytest.raises(DataNotFoundError, match="has no 'dev' data for language 'de'; it has: en"):
        load_split(get_task("udpos"), "de", "dev", DataConfig(source="hub"))


def test_other_local_formats(tmp_path):
    panx, xnli, xquad = get_task("panx"), get_task("xnli"), get_task("xquad")
    (tmp_path / "panx" / "de").mkdir(parents=True)
    (tmp_path / "panx" / "de" / "test.conll").write_text(
        "de:Anna\tB-PER\nde:wohnt\tO\nde:in\tO\nde:Berlin\tB-LOC\n\nde:Ja\tO\n", encoding="utf-8"
    )
    rows = load_split(panx, "de", "test", local(tmp_path))
    assert rows["tokens"] == [["Anna", "wohnt", "in", "Berlin"], ["Ja"]]
    assert rows["ner_tags"] == [["B-PER", "O", "O", "B-LOC"], ["O"]]
    (tmp_path / "xnli" / "fr").mkdir(parents=True)
    (tmp_path / "xnli" / "fr" / "test.tsv").write_text(
        "premise\thypothesis\tlabel\nil pleut\til fait beau\tcontradiction\n"
    )
    assert load_split(xnli, "fr", "test", local(tmp_path))[0]["label"] == "contradiction"
    squad = {
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": "Paris is big.",
                        "qas": [
                            {"id": "q1", "question": "What is big?", "answers": [{"text": "Paris", "answer_start": 0}]}
                        ],
                    }
                ],
            }
        ]
    }
    (tmp_path / "xquad" / "es").mkdir(parents=True)
    (tmp_path / "xquad" / "es" / "test.json").write_text(json.dumps(squad))
    row = load_split(xquad, "es", "test", local(tmp_path))[0]
    assert row["id"] == "q1" and row["answers"] == {"text": ["Paris"], "answer_start": [0]}
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"premise": ["a"], "hypothesis": ["b"], "label": [1]}), tmp_path / "xnli" / "fr" / "dev.parquet"
    )
    assert load_split(xnli, "fr", "dev", local(tmp_path))[0]["label"] == 1


def test_rows_without_gold_label_are_skipped(tmp_path):
    (tmp_path / "mnli" / "en").mkdir(parents=True)
    rows = [{"premise": "p", "hypothesis": "h", "label": label} for label in (0, -1, 2)]
    (tmp_path / "mnli" / "en" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_split(get_task("mnli"), "en", "dev", local(tmp_path))["label"] == [0, 2]


def test_source_fingerprint_follows_content_and_caps(root, tmp_path):
    xnli = get_task("xnli")
    cfg = local(root)
    fingerprint = source_fingerprint(xnli, "de", "test", cfg)
    assert fingerprint == source_fingerprint(xnli, "de", "test", cfg)
    assert fingerprint != source_fingerprint(xnli, "de", "test", local(root, max_eval_examples=2))
    copy = tmp_path / "xnli" / "de"
    copy.mkdir(parents=True)
    text = local_file(xnli, "de", "test", cfg).read_text()
    (copy / "test.jsonl").write_text(text)
    assert source_fingerprint(xnli, "de", "test", local(tmp_path)) == fingerprint  # same content, other place
    (copy / "test.jsonl").write_text(text.replace('"label": 0', '"label": 1', 1))
    assert source_fingerprint(xnli, "de", "test", local(tmp_path)) != fingerprint
