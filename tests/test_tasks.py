"""The task registry: XTREME-R targets, intermediate tasks and their data references."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from hpcxlt.tasks import TASKS, UnknownLanguageError, get_task, intermediate_tasks, language, target_tasks
from hpcxlt.tasks.languages import resource_group
from hpcxlt.tasks.registry import SAFE_NAME, SCHEMA_COLUMNS, UnknownTaskError, check_spec
from hpcxlt.tasks.spec import SPLITS

# Languages exactly as listed in ../shared/notes/research.md (XTREME-R table), in its order.
XTREME_R = {
    "xnli": "ar bg de el en es fr hi ru sw th tr ur vi zh",
    "xcopa": "et ht id it qu sw ta th tr vi zh",
    "udpos": "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh "
    "lt pl uk wo ro",
    "panx": "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw yo my "
    "zh kk tr et fi hu qu pl uk az lt pa gu ro",
    "xquad": "en es de el ru tr ar vi th zh hi ro",
    "mlqa": "en es de ar hi vi zh",
    "tydiqa": "en ar bn fi id ko ru sw te",
    "tatoeba": "ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja ka ko th sw zh kk tr "
    "et fi hu az lt pl uk ro",
    "mewslix": "ar de en es fa ja pl ro ta tr uk",
    "lareqa": "ar de el en es hi ru th tr vi zh",
}
COUNTS = {
    "xnli": 15,
    "xcopa": 11,
    "udpos": 38,
    "panx": 48,
    "xquad": 12,
    "mlqa": 7,
    "tydiqa": 9,
    "tatoeba": 41,
    "mewslix": 11,
    "lareqa": 11,
}
# (format, metric, category) per target, from the same table and the official scorer's grouping.
TARGET_KIND = {
    "xnli": ("classification", "accuracy", "classification"),
    "xcopa": ("multiple_choice", "accuracy", "classification"),
    "udpos": ("tagging", "seqeval_f1", "structured_prediction"),
    "panx": ("tagging", "seqeval_f1", "structured_prediction"),
    "xquad": ("qa", "squad", "qa"),
    "mlqa": ("qa", "mlqa", "qa"),
    "tydiqa": ("qa", "squad", "qa"),
    "tatoeba": ("retrieval", "accuracy", "retrieval"),
    "mewslix": ("retrieval", "map_at_20", "retrieval"),
    "lareqa": ("retrieval", "map_at_20", "retrieval"),
}
PHANG_NINE = ("anli+", "ccg", "commonsenseqa", "cosmosqa", "hellaswag", "mnli", "qqp", "squad", "sst2")


def test_all_ten_xtreme_r_targets_with_the_research_note_languages():
    assert [t.name for t in target_tasks()] == list(XTREME_R)
    for name, langs in XTREME_R.items():
        spec = get_task(name)
        assert spec.languages == tuple(langs.split()), name
        assert len(spec.languages) == COUNTS[name], name
    union = set().union(*(t.languages for t in target_tasks()))
    assert len(union) == 50  # XTREME-R covers 50 languages


@pytest.mark.parametrize("name", list(TARGET_KIND))
def test_target_format_metric_and_category_agree(name):
    spec = get_task(name)
    assert (spec.format, spec.metric, spec.category) == TARGET_KIND[name]
    assert spec.role == "target"


def test_targets_train_on_english_except_tatoeba():
    for spec in target_tasks():
        if spec.name == "tatoeba":
            assert spec.train_languages == () and not spec.has_training_data()
            assert set(spec.data) == {"test"}
        else:
            assert spec.train_languages == ("en",) and spec.has_training_data()
            assert set(spec.data["train"]) == {"en"}


def test_every_language_code_of_every_task_resolves():
    for spec in TASKS.values():
        for code in (*spec.languages, *spec.train_languages, *(l for refs in spec.data.values() for l in refs)):
            assert language(code).code == code, (spec.name, code)


def test_every_split_a_task_claims_has_a_data_ref_per_language():
    for spec in TASKS.values():
        assert set(spec.data) <= set(SPLITS), spec.name
        for split, refs in spec.data.items():
            assert refs, (spec.name, split)
            for lang, ref in refs.items():
                assert ref.hf_id and ref.split, (spec.name, split, lang)
        if spec.has_training_data() and spec.data:
            assert set(spec.data["train"]) == set(spec.train_languages), spec.name
        if spec.role == "target":
            assert set(spec.data["test"]) == set(spec.languages), spec.name


def test_real_hub_configs_of_the_targets():
    xnli, udpos, panx, tatoeba = (get_task(n) for n in ("xnli", "udpos", "panx", "tatoeba"))
    assert (xnli.data["train"]["en"].hf_id, xnli.data["train"]["en"].config) == ("nyu-mll/glue", "mnli")
    assert xnli.data["dev"]["en"].split == "validation_matched"
    assert (xnli.data["test"]["sw"].hf_id, xnli.data["test"]["sw"].config) == ("facebook/xnli", "sw")
    assert udpos.data["test"]["de"].config == "udpos.German"
    assert udpos.data["train"]["en"].config == "udpos.English"
    assert panx.data["test"]["de"].config == "PAN-X.de"
    assert tatoeba.data["test"]["de"].config == "tatoeba.deu"
    assert tatoeba.data["test"]["zh"].config == "tatoeba.cmn"
    assert get_task("mlqa").data["test"]["de"].config == "MLQA.de.de"
    assert get_task("xquad").data["test"]["el"].config == "XQuAD.el"
    assert get_task("xcopa").data["test"]["qu"].hf_id == "cambridgeltl/xcopa"
    lareqa_th = get_task("lareqa").data["test"]["th"]  # the official release file, not the hub copy
    assert lareqa_th.url.endswith("/xquad-r/th.json") and len(lareqa_th.sha256) == 64
    assert get_task("mewslix").candidates is not None


def test_languages_missing_from_google_xtreme_come_from_other_copies_in_the_same_schema():
    # Tatoeba az/lt/pl/uk/ro exist only in mteb's copy, whose columns are renamed to the tatoeba schema.
    az = get_task("tatoeba").data["test"]["az"]
    assert az.hf_id == "mteb/tatoeba-bitext-mining" and az.config == "aze-eng"
    assert set(az.rename.values()) == {"source_sentence", "target_sentence"}
    assert get_task("panx").data["test"]["qu"].hf_id == "unimelb-nlp/wikiann"
    assert get_task("xquad").data["test"]["ro"].hf_id == "google/xquad"
    # TyDiQA-GoldP keeps all languages in one config; each language is selected by id prefix.
    tydiqa = get_task("tydiqa")
    assert tydiqa.data["test"]["sw"].id_prefix == "swahili-"
    assert tydiqa.data["train"]["en"].id_prefix == "english-"


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(UnknownTaskError) as err:
        get_task("xnl")
    message = str(err.value)
    assert "'xnli'" in message  # close match
    for name in TASKS:
        assert name in message
    assert isinstance(err.value, ValueError)


def test_names_are_safe_identifiers():
    for name, spec in TASKS.items():
        assert name == spec.name
        assert SAFE_NAME.match(name), name
    assert "anli+" in TASKS  # Phang et al.'s own name is kept


def test_phang_intermediate_tasks_and_siqa_are_registered():
    names = [t.name for t in intermediate_tasks()]
    assert set(PHANG_NINE) | {"siqa"} <= set(names)
    for name in PHANG_NINE:
        spec = get_task(name)
        assert spec.role == "intermediate" and spec.category is None
        assert spec.languages == ("en",) and spec.train_languages == ("en",)
    anli = get_task("anli+").data["train"]["en"]
    assert anli.hf_id == "facebook/anli"
    assert {r.hf_id for r in anli.concat} == {"nyu-mll/glue", "stanfordnlp/snli"}
    assert get_task("ccg").data == {}  # CCGbank is licensed: local files only


def test_low_resource_intermediate_tasks():
    expected_sizes = {"masakhaner2": 20, "afrisenti": 14, "indicxnli": 11, "tydiqa_lowres": 8}
    for name, size in expected_sizes.items():
        spec = get_task(name)
        assert len(spec.train_languages) == size, name
        assert spec.data["train"].keys() == set(spec.train_languages)
    assert "B-DATE" in get_task("masakhaner2").label_names
    lowres_tydiqa = {c for c in get_task("tydiqa_lowres").languages if resource_group(c) == "low"}
    assert lowres_tydiqa == {"sw", "te"}
    # WikiANN languages: all low-resource and disjoint from PAN-X (the same corpus), so panx stays zero-shot.
    wikiann = get_task("wikiann_lowres").languages
    assert all(resource_group(c) == "low" for c in wikiann)
    assert not set(wikiann) & set(get_task("panx").languages)
    # SIB-200: exactly the low-resource XTREME-R languages, with FLORES-200 config names.
    sib = get_task("sib200")
    xtreme_low = {c for t in target_tasks() for c in t.languages if resource_group(c) == "low"}
    assert set(sib.languages) == xtreme_low
    assert sib.data["train"]["sw"].config == "swh_Latn"


def test_columns_and_label_names_follow_the_real_schemas():
    for spec in TASKS.values():
        assert spec.schema in SCHEMA_COLUMNS, spec.name
        assert set(spec.columns.values()) <= set(SCHEMA_COLUMNS[spec.schema]), spec.name
    assert dict(get_task("xnli").columns) == {"text": "premise", "text_pair": "hypothesis", "label": "label"}
    assert get_task("xnli").label_names == ("entailment", "neutral", "contradiction")
    assert get_task("panx").label_names == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
    upos = get_task("udpos").label_names
    assert len(upos) == 17 and upos[0] == "ADJ" and upos[-1] == "X"
    assert get_task("udpos").columns["tags"] == "pos_tags"
    assert len(get_task("hellaswag").label_names) == 4 and len(get_task("commonsenseqa").label_names) == 5
    assert dict(get_task("sib200").columns) == {"text": "text", "label": "category"}
    assert get_task("afrisenti").columns["text"] == "tweet"


def test_check_spec_names_task_and_field_of_a_broken_spec():
    xquad = get_task("xquad")
    with pytest.raises(ValueError, match=r"task 'xquad': metric 'accuracy' does not fit format 'qa'"):
        check_spec(dataclasses.replace(xquad, metric="accuracy"))
    with pytest.raises(ValueError, match=r"task 'xquad': category"):
        check_spec(dataclasses.replace(xquad, category="retrieval"))
    with pytest.raises(UnknownLanguageError, match="'xx'"):
        check_spec(dataclasses.replace(xquad, languages=(*xquad.languages, "xx")))
    with pytest.raises(ValueError, match=r"data\['test'\]"):
        check_spec(dataclasses.replace(xquad, languages=(*xquad.languages, "sw")))
    with pytest.raises(ValueError, match="name must match"):
        check_spec(dataclasses.replace(xquad, name="XQuAD v1"))


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        TASKS["mine"] = get_task("xnli")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_task("xnli").metric = "f1"  # type: ignore[misc]


def test_importing_the_registry_pulls_in_no_heavy_library():
    code = (
        "import sys, hpcxlt.tasks; heavy = {'torch', 'transformers', 'datasets', 'deepspeed', 'submitit', "
        "'mpi4py', 'pandas', 'matplotlib'}; print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
