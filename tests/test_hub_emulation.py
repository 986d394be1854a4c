"""The hub path without the network: the registry's own DataRefs, read by the same `datasets.load_dataset`
call, from local folders laid out as the hub repositories (`data.hub_mirror`), filled with rows in the
exact real schemas (real release files where ../shared/data/real has them)."""

from __future__ import annotations

import csv

import pytest

from hpcxlt.config.schema import DataConfig
from hpcxlt.data import schemas
from hpcxlt.data.load import DataNotFoundError, load_split
from hpcxlt.tasks.registry import NLI_LABELS, PARQUET, SIB200_CONFIGS, get_task
from tests.hub_mirror import write_repo, write_script_repo
from tests.real_data import real_dir


def _nli_features(*extra):
    import datasets

    columns = {
        "premise": datasets.Value("string"),
        "hypothesis": datasets.Value("string"),
        "label": datasets.ClassLabel(names=list(NLI_LABELS)),
    }
    return datasets.Features({**columns, **dict(extra)})


def _tsv(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    import datasets

    root = tmp_path_factory.mktemp("hub")
    # ANLI (facebook/anli): uid, premise, hypothesis, label, reason; splits train_r1..3, dev_r1..3
    anli = datasets.Features({"uid": datasets.Value("string"), **_nli_features(), "reason": datasets.Value("string")})
    rounds = {}
    for r in (1, 2, 3):
        for split in ("train", "dev"):
            rounds[f"{split}_r{r}"] = datasets.Dataset.from_dict(
                {
                    "uid": [f"{split}{r}a", f"{split}{r}b"],
                    "premise": [f"ANLI {split} {r} premise"] * 2,
                    "hypothesis": ["It rains.", "It is dry."],
                    "label": [0, 2],
                    "reason": ["", "contradicts"],
                },
                features=anli,
            )
    write_repo(root, "facebook/anli", {"default": rounds})
    # GLUE MNLI (nyu-mll/glue, config mnli): premise, hypothesis, label, idx
    mnli = _nli_features(("idx", datasets.Value("int32")))
    write_repo(
        root,
        "nyu-mll/glue",
        {
            "mnli": {
                "train": datasets.Dataset.from_dict(
                    {
                        "premise": ["MNLI premise"] * 3,
                        "hypothesis": ["a", "b", "c"],
                        "label": [0, 1, 2],
                        "idx": [0, 1, 2],
                    },
                    features=mnli,
                )
            }
        },
    )
    # SNLI (stanfordnlp/snli): premise, hypothesis, label; -1 where annotators did not agree
    write_repo(
        root,
        "stanfordnlp/snli",
        {
            "plain_text": {
                "train": datasets.Dataset.from_dict(
                    {"premise": ["SNLI premise"] * 3, "hypothesis": ["x", "y", "z"], "label": [1, -1, 0]},
                    features=_nli_features(),
                )
            }
        },
    )
    # SIB-200 (Davlan/sib200): a script repository; its parquet conversion from the real release files
    write_script_repo(root, "Davlan/sib200")
    sib = datasets.Features(
        {"index_id": datasets.Value("int64"), "category": datasets.Value("string"), "text": datasets.Value("string")}
    )
    converted = {}
    for code in ("swh_Latn", "yor_Latn"):
        rows = _tsv(real_dir() / "sib200" / code / "dev.tsv")
        converted[code] = {
            "validation": datasets.Dataset.from_dict(
                {
                    "index_id": [int(r["index_id"]) for r in rows],
                    "category": [r["category"] for r in rows],
                    "text": [r["text"] for r in rows],
                },
                features=sib,
            )
        }
    write_repo(root, "Davlan/sib200", converted, revision=PARQUET)
    # AfriSenti (shmuhammad/AfriSenti-twitter-sentiment): ClassLabel order [positive, negative, neutral]
    # (its dataset_infos.json), filled from the real SemEval dev file
    afrisenti = datasets.Features(
        {"tweet": datasets.Value("string"), "label": datasets.ClassLabel(names=["positive", "negative", "neutral"])}
    )
    rows = _tsv(real_dir() / "afrisenti" / "ha_dev.tsv")
    write_repo(
        root,
        "shmuhammad/AfriSenti-twitter-sentiment",
        {
            "hau": {
                "validation": datasets.Dataset.from_dict(
                    {
                        "tweet": [r["tweet"] for r in rows],
                        "label": [afrisenti["label"].str2int(r["label"]) for r in rows],
                    },
                    features=afrisenti,
                )
            }
        },
        revision=PARQUET,
    )
    # Mewsli-X (izhx/mewsli-x): English dev pairs {mention, entity} (config wikipedia_pairs)
    write_repo(
        root,
        "izhx/mewsli-x",
        {
            "wikipedia_pairs": {
                "validation": datasets.Dataset.from_dict(
                    {
                        "mention": [
                            "Obama [SEP] Obama visited Berlin.",
                            "Berlin [SEP] He flew to Berlin.",
                            "Paris [SEP] Paris in May.",
                        ],
                        "entity": [
                            "Barack Obama: 44th president",
                            "Berlin: capital of Germany",
                            "Paris: capital of France",
                        ],
                    }
                )
            }
        },
    )
    return DataConfig(source="hub", hub_mirror=str(root))


def test_anli_plus_joins_anli_mnli_and_snli_despite_their_different_columns(mirror):
    rows = load_split(get_task("anli+"), "en", "train", mirror)
    assert rows.column_names == ["premise", "hypothesis", "label"]
    assert len(rows) == 6 + 3 + 2  # SNLI's unlabelled row dropped
    assert rows["premise"][:2] == ["ANLI train 1 premise"] * 2 and rows["premise"][-1] == "SNLI premise"
    assert rows.features["label"].names == list(NLI_LABELS) and rows["label"][6:9] == [0, 1, 2]
    assert len(load_split(get_task("anli+"), "en", "dev", mirror)) == 6


def test_a_script_only_repository_is_read_at_its_parquet_revision(mirror):
    spec = get_task("sib200")
    assert spec.data["dev"]["sw"].revision == PARQUET
    rows = load_split(spec, "sw", "dev", mirror)
    release = _tsv(real_dir() / "sib200" / SIB200_CONFIGS["sw"] / "dev.tsv")
    assert len(rows) == len(release) and rows["category"] == [r["category"] for r in release]
    assert [spec.label_names[schemas.classification_fields(spec, row)[2]] for row in rows] == rows["category"]
    # the same repository at its default revision holds only the script, which `datasets` refuses
    from dataclasses import replace

    script_only = replace(spec, data={"dev": {"sw": replace(spec.data["dev"]["sw"], revision=None)}})
    with pytest.raises(DataNotFoundError, match="refs/convert/parquet"):
        load_split(script_only, "sw", "dev", mirror)


def test_afrisenti_hub_labels_are_mapped_by_name(mirror):
    spec = get_task("afrisenti")
    rows = load_split(spec, "ha", "dev", mirror)
    release = _tsv(real_dir() / "afrisenti" / "ha_dev.tsv")
    assert rows.features["label"].names == list(spec.label_names) != ["positive", "negative", "neutral"]
    assert [spec.label_names[i] for i in rows["label"]] == [r["label"] for r in release]


def test_an_unknown_hub_label_is_refused_naming_data_set_and_labels(tmp_path):
    import datasets

    from hpcxlt.data.schemas import SchemaError
    from tests.hub_mirror import write_repo as write

    features = datasets.Features(
        {"tweet": datasets.Value("string"), "label": datasets.ClassLabel(names=["pos", "neg"])}
    )
    write(
        tmp_path,
        "shmuhammad/AfriSenti-twitter-sentiment",
        {"hau": {"validation": datasets.Dataset.from_dict({"tweet": ["a"], "label": [0]}, features=features)}},
        revision=PARQUET,
    )
    with pytest.raises(SchemaError, match=r"AfriSenti-twitter-sentiment.*\['pos', 'neg'\].*not among"):
        load_split(get_task("afrisenti"), "ha", "dev", DataConfig(source="hub", hub_mirror=str(tmp_path)))


def test_mewslix_english_dev_pairs_evaluate_against_their_own_entities(mirror):
    spec = get_task("mewslix")
    rows = load_split(spec, "en", "dev", mirror)
    queries, candidates = schemas.retrieval_items(spec, rows, "en")
    assert [q["keys"] for q in queries] == [[c["item_id"]] for c in candidates]  # each pair's entity is its gold
    assert [c["text"] for c in candidates] == rows["entity"]


def test_a_missing_mirror_copy_names_the_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"no copy of 'nyu-mll/glue'.*expected the folder"):
        load_split(get_task("mnli"), "en", "train", DataConfig(source="hub", hub_mirror=str(tmp_path)))


# -- official release files outside the hub (LAReQA) ------------------------------------------------
def test_the_pinned_lareqa_hashes_are_those_of_the_real_release_files():
    import hashlib

    from tests.real_data import LAREQA_LANGS

    spec = get_task("lareqa")
    for lang in LAREQA_LANGS:
        data = (real_dir() / "lareqa" / "xquad-r" / f"{lang}.json").read_bytes()
        assert hashlib.sha256(data).hexdigest() == spec.data["test"][lang].sha256, lang


@pytest.fixture
def release_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return tmp_path


def _from_file(lang: str, **changes):
    """The registry's LAReQA reference with its URL pointing at the real file here (no network)."""
    from dataclasses import replace

    spec = get_task("lareqa")
    url = (real_dir() / "lareqa" / "xquad-r" / f"{lang}.json").as_uri()
    ref = replace(spec.data["test"][lang], url=url, **changes)
    return replace(spec, data={**spec.data, "test": {lang: ref}})


def test_a_release_file_is_fetched_only_by_prepare_and_checked_against_its_hash(release_cache):
    from dataclasses import replace

    from hpcxlt.data.release import downloads_allowed

    spec = _from_file("de")
    hub = DataConfig(source="hub")
    with pytest.raises(DataNotFoundError, match=r"has not fetched: run `hpcxlt prepare"):
        load_split(spec, "de", "test", hub)  # a job never downloads
    with downloads_allowed():
        rows = load_split(spec, "de", "test", hub)
    assert len(rows) == 1190 and "sentence_breaks" in rows.column_names
    assert len(load_split(spec, "de", "test", hub)) == 1190  # the checked copy is kept for later reads
    wrong = replace(spec, data={"test": {"de": replace(spec.data["test"]["de"], sha256="0" * 64)}})
    with downloads_allowed(), pytest.raises(DataNotFoundError, match=r"has SHA-256 16fb0f4b.*pins 0000"):
        load_split(wrong, "de", "test", hub)


def test_tatoeba_rows_of_the_old_loader_lose_their_trailing_newline():
    spec = get_task("tatoeba")
    rows = [
        {"source_sentence": "Ich bin müde.\n", "target_sentence": "I am tired.\n"},
        {"source_sentence": "Danke!\n", "target_sentence": "Thanks!\n"},
    ]  # google/xtreme tatoeba.deu rows
    queries, candidates = schemas.retrieval_items(spec, rows, "de")
    assert [q["text"] for q in queries] == ["Ich bin müde.", "Danke!"]
    assert [c["text"] for c in candidates] == ["I am tired.", "Thanks!"]
    assert schemas.retrieval_pairs(spec, rows[0]) == ("Ich bin müde.", "I am tired.")


@pytest.mark.parametrize("lang,code", [("sw", "swh_Latn"), ("yo", "yor_Latn")])
def test_sib200_hub_and_local_paths_read_the_same_rows(tmp_path, lang, code):
    """The hub's parquet conversion of a SIB-200 release file (columns index_id, category, text: what
    pandas.read_csv reads, the publishers' reader) and the release file itself read through the local
    source give the same rows, quotes included (swh has quoted fields)."""
    import datasets
    import pandas

    release = real_dir() / "sib200" / code / "dev.tsv"
    frame = pandas.read_csv(release, sep="\t", dtype=str, keep_default_na=False)
    ref_config = code
    write_repo(
        tmp_path / "mirror",
        "Davlan/sib200",
        {ref_config: {"validation": datasets.Dataset.from_pandas(frame)}},
        revision=PARQUET,
    )
    local = tmp_path / "local" / "sib200" / lang
    local.mkdir(parents=True)
    (local / "dev.tsv").write_bytes(release.read_bytes())
    spec = get_task("sib200")
    hub = load_split(spec, lang, "dev", DataConfig(source="hub", hub_mirror=str(tmp_path / "mirror")))
    mine = load_split(spec, lang, "dev", DataConfig(source="local", root=str(tmp_path / "local")))
    assert len(hub) == len(mine) == len(frame)
    assert hub["text"] == mine["text"] == list(frame["text"])
    labels = [schemas.classification_fields(spec, row)[2] for row in hub]
    assert labels == [schemas.classification_fields(spec, row)[2] for row in mine]
