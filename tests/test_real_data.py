"""Every folder of ../shared/data/real/ (real public releases, original formats) loads through the local
source with the counts of its source, converts as XTREME does, and survives featurization.

The expected counts are facts about the releases (../shared/data/real/README.md): XCOPA 100 validation
and 500 test rows per language; XQuAD 1,190 questions per language; LAReQA's official candidates are the
`sentences` of each XQuAD-R paragraph; XTREME's own UD-POS conversion of German PUD is the
`de_pud-ud-test.xtreme-gold.tsv` file made with google-research/xtreme's scripts.
"""

from __future__ import annotations

import json
import re

import pytest

from hpcxlt.config.schema import DataConfig
from hpcxlt.data import schemas
from hpcxlt.data.featurize import featurize
from hpcxlt.data.load import load_split
from hpcxlt.tasks.registry import MASAKHANER_LABELS, UPOS_LABELS, get_task
from tests.real_data import AFRISENTI, LAREQA_LANGS, MASAKHANER, SIB200, XCOPA_LANGS, XQUAD_LANGS, real_dir, real_root


@pytest.fixture(scope="module")
def data_cfg(tmp_path_factory) -> DataConfig:
    return DataConfig(source="local", root=str(real_root(tmp_path_factory.mktemp("real"))))


def _token_blocks(path) -> list[tuple[list[str], list[str]]]:
    """(tokens, tags) of a `token TAG` file from the file's own structure, not the loader's rules: a
    sentence is a run of non-blank lines, every non-blank line is one token, its tag after the last
    space. (MasakhaNER has no comment lines: `# O` is a hashtag token.)"""
    text = open(path, encoding="utf-8").read()
    blocks = [block for block in re.split(r"\n[ \t]*\n", text.strip("\n")) if block.strip()]
    pairs = [[line.rsplit(" ", 1) for line in block.split("\n")] for block in blocks]
    return [([tok for tok, _ in block], [tag for _, tag in block]) for block in pairs]


def _pandas_rows(path) -> list[dict[str, str]]:
    """Rows as the publishers' code reads them: SIB-200's util_textclass.py and AfriSenti's starter kit
    both call pandas.read_csv(path, sep='\\t') (texts kept as strings: no 'NA' -> NaN here)."""
    import pandas

    return pandas.read_csv(path, sep="\t", dtype=str, keep_default_na=False).to_dict("records")


@pytest.mark.parametrize("lang", XCOPA_LANGS)
def test_xcopa_release_files_load_with_their_counts(data_cfg, lang):
    spec = get_task("xcopa")
    dev, test = load_split(spec, lang, "dev", data_cfg), load_split(spec, lang, "test", data_cfg)
    assert (len(dev), len(test)) == (100, 500)
    first, choices, label = schemas.choice_fields(spec, test[0])
    assert len(choices) == 2 and label in (0, 1)
    assert first.endswith(schemas.COPA_PROMPTS[test[0]["question"]])


@pytest.mark.parametrize("lang", XQUAD_LANGS)
def test_xquad_release_files_load_all_1190_questions_with_answers_at_their_offsets(data_cfg, lang):
    rows = load_split(get_task("xquad"), lang, "test", data_cfg)
    assert len(rows) == 1190 and len(set(rows["id"])) == 1190
    for row in rows:
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"]):
            assert row["context"][start : start + len(text)] == text, row["id"]


@pytest.mark.parametrize("lang", LAREQA_LANGS)
def test_lareqa_candidates_are_the_official_sentences(data_cfg, lang):
    release = json.load(open(real_dir() / "lareqa" / "xquad-r" / f"{lang}.json", encoding="utf-8"))
    # the official candidates: each paragraph's `sentence_breaks` cut from its context (utils_lareqa.py
    # in google-research/xtreme), as many as the release's `sentences`
    paragraphs = [paragraph for article in release["data"] for paragraph in article["paragraphs"]]
    official = [p["context"][s:e] for p in paragraphs for s, e in p["sentence_breaks"]]
    assert len(official) == sum(len(p["sentences"]) for p in paragraphs)
    spec = get_task("lareqa")
    rows = load_split(spec, lang, "test", data_cfg)
    queries, candidates = schemas.retrieval_items(spec, rows, lang)
    assert len(queries) == 1190
    assert len(candidates) == len(official) and [c["text"] for c in candidates] == official
    # every question has exactly one answer sentence, and it holds the answer text
    by_id = {row["id"]: row for row in rows}
    answering = {}
    for candidate in candidates:
        for key in candidate["keys"]:
            answering.setdefault(key, []).append(candidate["text"])
    assert set(answering) == set(by_id)
    assert all(len(sentences) == 1 for sentences in answering.values())


def test_lareqa_without_official_breaks_splits_differently(data_cfg):
    """The hub copy (google-research-datasets/xquad_r) drops `sentence_breaks`: the punctuation split is
    only an approximation, which is why the release JSON is the source of LAReQA's candidates."""
    spec = get_task("lareqa")
    rows = load_split(spec, "ar", "test", data_cfg)
    official = schemas.retrieval_items(spec, rows, "ar")[1]
    approximate = schemas.retrieval_items(spec, rows.remove_columns("sentence_breaks"), "ar")[1]
    assert len(official) != len(approximate)


def test_udpos_conversion_equals_xtremes_own_token_for_token(data_cfg):
    gold_text = (real_dir() / "udpos" / "de_pud-ud-test.xtreme-gold.tsv").read_text(encoding="utf-8")
    gold = [[line.split("\t") for line in block.split("\n")] for block in gold_text.strip("\n").split("\n\n")]
    rows = load_split(get_task("udpos"), "de", "test", data_cfg)
    assert len(rows) == len(gold) == 1000
    assert rows["tokens"] == [[token for token, _ in sentence] for sentence in gold]
    assert rows["pos_tags"] == [[tag for _, tag in sentence] for sentence in gold]
    # the multiword 'am' (an + dem) stays one word, tagged with its span head's UPOS
    assert ("am", "ADP") in zip(rows["tokens"][0], rows["pos_tags"][0])


@pytest.mark.parametrize(
    "lang, split, name",
    [("af", "dev", "af_afribooms-ud-dev"), ("af", "test", "af_afribooms-ud-test"), ("tl", "test", "tl_trg-ud-test")],
)
def test_other_ud_treebanks_load_every_sentence_with_known_tags(data_cfg, lang, split, name):
    conllu = real_dir() / "udpos" / f"{name}.conllu"
    rows = load_split(get_task("udpos"), lang, split, data_cfg)
    assert len(rows) == sum(line.startswith("# sent_id") for line in open(conllu, encoding="utf-8"))
    assert {tag for tags in rows["pos_tags"] for tag in tags} <= set(UPOS_LABELS)


@pytest.mark.parametrize("lang", sorted(MASAKHANER))
def test_masakhaner_release_files_load_with_known_tags(data_cfg, lang):
    spec = get_task("masakhaner2")
    for split in ("dev", "test"):
        rows = load_split(spec, lang, split, data_cfg)
        release = _token_blocks(real_dir() / "masakhaner2" / MASAKHANER[lang] / f"{split}.txt")
        assert len(rows) == len(release)
        for number, (row, (tokens, tags)) in enumerate(zip(rows, release)):
            assert (row["tokens"], row["ner_tags"]) == (tokens, tags), f"sentence {number}"
        assert {tag for tags in rows["ner_tags"] for tag in tags} <= set(MASAKHANER_LABELS)
        assert {"B-PER", "B-LOC", "B-DATE"} <= {tag for tags in rows["ner_tags"] for tag in tags}


@pytest.mark.parametrize("lang", sorted(SIB200))
def test_sib200_release_files_load_with_labels_by_name(data_cfg, lang):
    spec = get_task("sib200")
    labels = (real_dir() / "sib200" / SIB200[lang] / "labels.txt").read_text(encoding="utf-8").split()
    assert set(labels) == set(spec.label_names)  # the registry's names are the release's
    for split in ("dev", "test"):
        rows = load_split(spec, lang, split, data_cfg)
        release = _pandas_rows(real_dir() / "sib200" / SIB200[lang] / f"{split}.tsv")
        assert len(rows) == len(release)
        assert rows["text"] == [row["text"] for row in release]
        ids = [schemas.classification_fields(spec, row)[2] for row in rows]
        assert [spec.label_names[i] for i in ids] == [row["category"] for row in release]


@pytest.mark.parametrize("lang", AFRISENTI)
def test_afrisenti_labels_map_by_name(data_cfg, lang):
    spec = get_task("afrisenti")
    rows = load_split(spec, lang, "dev", data_cfg)
    release = _pandas_rows(real_dir() / "afrisenti" / f"{lang}_dev.tsv")
    assert rows["tweet"] == [row["tweet"] for row in release]
    words = rows["label"]
    assert words == [row["label"] for row in release]
    assert set(words) == {"positive", "neutral", "negative"}
    ids = [schemas.classification_fields(spec, row)[2] for row in rows]
    assert [spec.label_names[i] for i in ids] == words


def test_a_file_missing_a_schema_column_is_refused_naming_task_language_file_and_columns(tmp_path):
    from hpcxlt.data.schemas import SchemaError

    folder = tmp_path / "sib200" / "sw"
    folder.mkdir(parents=True)
    (folder / "dev.tsv").write_text("index_id\ttopic\ttext\n1\tsports\tMpira\n", encoding="utf-8")
    with pytest.raises(SchemaError) as err:
        load_split(get_task("sib200"), "sw", "dev", DataConfig(source="local", root=str(tmp_path)))
    message = str(err.value)
    assert "task 'sib200', language 'sw', split 'dev'" in message and str(folder / "dev.tsv") in message
    assert "['category']" in message and "found ['index_id', 'topic', 'text']" in message


@pytest.fixture(scope="module")
def xquad_tokenizer(data_cfg):
    """A Unigram tokenizer of the XLM-R kind trained on the real XQuAD contexts of every language (no hub:
    the real XLM-R vocabulary is not reachable here): word-sized pieces with punctuation apart, like
    XLM-R's SentencePiece on these texts."""
    from hpcxlt.demo.tiny import train_tokenizer

    lines = []
    for lang in XQUAD_LANGS:
        rows = load_split(get_task("xquad"), lang, "test", data_cfg)
        lines += sorted(set(rows["context"])) + list(rows["question"])
    return train_tokenizer(lines, vocab_size=16000, split_punctuation=True)


def _surviving(spec, rows, tokenizer) -> float:
    """% of questions whose gold answer comes back from featurize -> postprocess_qa when the model puts
    all its weight on the start/end tokens the featurizer labels for training (exact match)."""
    import numpy as np

    from hpcxlt.data.qa_answers import postprocess_qa
    from hpcxlt.evaluate.metrics import squad_em_f1

    train = featurize(spec, rows, tokenizer, train=True, max_length=384, doc_stride=128)
    evaluation = featurize(spec, rows, tokenizer, train=False, max_length=384, doc_stride=128)
    assert len(train) == len(evaluation)
    start = np.zeros((len(evaluation), 384))
    end = np.zeros((len(evaluation), 384))
    for i, (s, e) in enumerate(zip(train["start_positions"], train["end_positions"])):
        if s > 0:  # the window holds the answer
            start[i, s] = end[i, e] = 10.0
    answers = postprocess_qa(rows, evaluation, start, end, max_answer_length=384)
    return squad_em_f1({row["id"]: row["answers"]["text"] for row in rows}, answers)["exact_match"]


@pytest.mark.slow
def test_xquad_gold_answers_survive_featurize_and_postprocess(data_cfg, xquad_tokenizer):
    """Over all languages >= 99.5% of the gold answers survive (XTREME's QA windows: 384 tokens, stride
    128); no language below 99%. What is lost are answers that start inside a whitespace word (Arabic
    'وجورج' = 'and George', answer 'جورج'), which a subword model can only return when its tokenizer
    splits there; docs/data.md records the rates."""
    spec = get_task("xquad")
    rates = {}
    for lang in XQUAD_LANGS:
        rates[lang] = _surviving(spec, load_split(spec, lang, "test", data_cfg), xquad_tokenizer)
    print("gold answers surviving featurize -> postprocess_qa (%):", {k: round(v, 2) for k, v in rates.items()})
    assert sum(rates.values()) / len(rates) >= 99.5 and min(rates.values()) >= 99.0, rates


# The official scorer's own averages on its mock submission: google-research/xtreme evaluate_test.py
# (TASK2AVG_SCORES / XTREME_R_TASK2AVG_SCORES). The mock covers XTREME's language lists, so it is
# scored with --partial (XTREME-R's added languages have no files there).
OFFICIAL_MOCK_AVERAGES = {
    "xnli": {"accuracy": 30.666666666666668},
    "panx": {"f1": 57.50793650793652, "precision": 54.729166666666664, "recall": 62.750000000000014},
    "tatoeba": {"accuracy": 53.611111111111114},
    "xquad": {"exact_match": 77.27272727272727, "f1": 79.9586776859504},
    "mlqa": {"exact_match": 57.142857142857146, "f1": 81.76870748299321},
    "tydiqa": {"exact_match": 88.88888888888889, "f1": 97.22222222222223},
    "mewslix": {"map_at_20": 14.39025156130419},
}
OFFICIAL_UDPOS_F1_SEQEVAL_0 = 70.21746048354693  # the same file, scored under seqeval 0.0.x


def test_score_equals_the_official_scorer_on_its_own_mock_submission(capsys):
    from hpcxlt.cli import main

    mock = real_dir() / "xtreme-mock"
    capsys.readouterr()
    assert main(["score", str(mock / "predictions"), "--labels", str(mock / "labels"), "--json", "--partial"]) == 0
    result = json.loads(capsys.readouterr().out)
    for task, averages in OFFICIAL_MOCK_AVERAGES.items():
        for metric, value in averages.items():
            assert result["tasks"][task]["averages"][metric] == pytest.approx(value, abs=1e-9), (task, metric)
    # UD-POS depends on the seqeval release (hpcxlt.evaluate.metrics.seqeval_f1): recorded with the result
    from importlib.metadata import version

    assert result["versions"]["seqeval"] == version("seqeval")
    udpos = result["tasks"]["udpos"]["averages"]["f1"]
    if version("seqeval").startswith("0."):
        assert udpos == pytest.approx(OFFICIAL_UDPOS_F1_SEQEVAL_0, abs=1e-9)
    else:  # SCONJ/CCONJ read as one type 'CONJ' by seqeval >= 1.0
        assert udpos == pytest.approx(70.3980581069904, abs=1e-9) and udpos != pytest.approx(
            OFFICIAL_UDPOS_F1_SEQEVAL_0
        )


def test_xtremes_own_udpos_tsv_read_as_a_conll_file_gives_its_lines(tmp_path):
    """XTREME's preprocessed `token<TAB>tag` file (the gold German PUD conversion) through the `.conll` reader:
    every non-empty line one token, sentences at the empty lines, counted from the file's own structure."""
    release = real_dir() / "udpos" / "de_pud-ud-test.xtreme-gold.tsv"
    folder = tmp_path / "udpos" / "de"
    folder.mkdir(parents=True)
    (folder / "test.conll").write_bytes(release.read_bytes())
    rows = load_split(get_task("udpos"), "de", "test", DataConfig(source="local", root=str(tmp_path)))
    blocks = [b for b in release.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    expected = [[line.split("\t") for line in b.strip("\n").split("\n")] for b in blocks]
    assert len(rows) == len(expected)
    assert rows["tokens"] == [[f[0] for f in b] for b in expected]
    assert rows["pos_tags"] == [[f[-1] for f in b] for b in expected]
