"""Every task hpcxlt knows: the ten XTREME-R targets and the intermediate tasks, with their real data.

Facts (languages, metrics, hub ids) follow ../shared/notes/research.md, Ruder et al. 2021 (XTREME-R),
Phang et al. 2020 and the data set cards named in each spec's `source`.

Row schemas
-----------
`TaskSpec.schema` names the shape of one row, on the hub and in local `<task>/<lang>/<split>.jsonl`
files alike (after `DataRef.rename`). `SCHEMA_COLUMNS` lists each schema's columns. For
classification and tagging, `TaskSpec.columns` maps a role to the column holding it:

  roles 'text', 'text_pair' (optional), 'label'  - classification (format 'classification')
  roles 'tokens', 'tags'                         - tagging (format 'tagging')

A label/tag is an int id into `label_names` on the hub; a string equal to one of `label_names` means
the same (sib200 stores class names). Rows whose label is -1 have no gold label (SNLI) and are skipped.
QA, multiple-choice and retrieval schemas are fixed per schema name (`columns` is empty):

  'squad'          id, title (absent in XQuAD), context, question, answers{text: [str], answer_start: [int]}
  'lareqa'         XQuAD-R rows, same columns as 'squad'; the question retrieves the sentence holding
                   its answer from the pooled sentences of all languages' contexts
  'copa'           premise, choice1, choice2, question ('cause'|'effect'), label (0|1)
  'siqa'           context, question, answerA, answerB, answerC, label ('1'|'2'|'3', 1-based string)
  'hellaswag'      ctx, endings [4 str], label ('0'..'3' string)
  'cosmosqa'       context, question, answer0..answer3, label (0..3)
  'commonsenseqa'  question, choices{label: ['A'..'E'], text: [5 str]}, answerKey ('A'..'E')
  'tatoeba'        source_sentence (non-English), target_sentence (English); each source retrieves its
                   own target among all targets of the language
  'mewslix'        mention rows: mention, entity_id (gold); English training pairs: mention, entity;
                   candidate pool (`TaskSpec.candidates`): entity_id, description
  'ccg'            tokens, tags as CCG supertag strings (label set = tags of the training data)

For multiple choice, `label_names` names the choices in index order (its length is the number of
choices). Mewsli-X column names follow the community mirror izhx/mewsli-x as used by Alibaba-NLP's
mGTE scripts; check them against the hub before the first real run.

Names are safe identifiers ([a-z0-9][a-z0-9_+-]*). 'anli+' keeps Phang et al.'s name; cell keys and
run-directory paths use names as they are, and '+' is legal in POSIX paths and Slurm job names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from hpcxlt.tasks.languages import language
from hpcxlt.tasks.spec import CATEGORIES, FORMATS, METRICS, ROLES, SPLITS, DataRef, TaskSpec

SAFE_NAME = re.compile(r"^[a-z0-9][a-z0-9_+-]*$")

SCHEMA_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "nli": ("premise", "hypothesis", "label"),
        "qqp": ("question1", "question2", "label"),
        "sst2": ("sentence", "label"),
        "sib200": ("text", "category"),
        "afrisenti": ("tweet", "label"),
        "tagging": ("tokens", "ner_tags", "pos_tags"),  # a tagging row has tokens and one of the two tag columns
        "ccg": ("tokens", "tags"),
        "squad": ("id", "title", "context", "question", "answers"),
        "lareqa": ("id", "title", "context", "question", "answers"),
        "copa": ("premise", "choice1", "choice2", "question", "label"),
        "siqa": ("context", "question", "answerA", "answerB", "answerC", "label"),
        "hellaswag": ("ctx", "endings", "label"),
        "cosmosqa": ("context", "question", "answer0", "answer1", "answer2", "answer3", "label"),
        "commonsenseqa": ("question", "choices", "answerKey"),
        "tatoeba": ("source_sentence", "target_sentence"),
        "mewslix": ("mention", "entity", "entity_id", "description"),
    }
)
"""Schema name -> the columns its rows use (see the module docstring for their meaning)."""

NLI_LABELS = ("entailment", "neutral", "contradiction")
PANX_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
MASAKHANER_LABELS = PANX_LABELS + ("B-DATE", "I-DATE")
# The 17 Universal POS tags in the order of the UD guidelines (= google/xtreme udpos ClassLabel order).
UPOS_LABELS = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
)
# Davlan/sib200 data/*/labels.txt order.
SIB200_LABELS = ("science/technology", "travel", "politics", "sports", "health", "entertainment", "geography")
# AfriSenti's label *names* (the SemEval-2023 release stores words: `label` = positive/neutral/negative).
# The hub copy's dataset_infos.json orders its ClassLabel [positive, negative, neutral]: hub labels are
# mapped to these by name (hpcxlt.data.hub), never by position, so this order is only ours.
AFRISENTI_LABELS = ("positive", "neutral", "negative")

NLI_COLUMNS = MappingProxyType({"text": "premise", "text_pair": "hypothesis", "label": "label"})
NER_COLUMNS = MappingProxyType({"tokens": "tokens", "tags": "ner_tags"})
XTREME = "google/xtreme"
# Repositories that ship only a loading script, which `datasets` >= 4.0 no longer executes: they are read
# at the hub's automatic parquet conversion (same config and split names).
PARQUET = "refs/convert/parquet"


def _langs(spaced: str) -> tuple[str, ...]:
    return tuple(spaced.split())


def _per_lang(langs: Iterable[str], make) -> dict[str, DataRef]:
    return {lang: make(lang) for lang in langs}


def _by_config(hf_id: str, configs: Mapping[str, str], split: str, revision: str | None = None) -> dict[str, DataRef]:
    """One DataRef per registry language for a data set whose config names differ from our codes."""
    return {
        lang: DataRef(hf_id=hf_id, config=config, split=split, revision=revision) for lang, config in configs.items()
    }


# ---------------------------------------------------------------------------------------------
# XTREME-R targets (languages exactly as in research.md, in its order)
# ---------------------------------------------------------------------------------------------
XNLI_LANGS = _langs("ar bg de el en es fr hi ru sw th tr ur vi zh")
XCOPA_LANGS = _langs("et ht id it qu sw ta th tr vi zh")
UDPOS_LANGS = _langs(
    "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko mr nl pt ru ta te th tl tr ur vi yo zh lt pl uk wo ro"
)
PANX_LANGS = _langs(
    "ar he vi id jv ms tl eu ml ta te af nl en de el bn hi mr ur fa fr it pt es bg ru ja ka "
    "ko th sw yo my zh kk tr et fi hu qu pl uk az lt pa gu ro"
)
XQUAD_LANGS = _langs("en es de el ru tr ar vi th zh hi ro")
MLQA_LANGS = _langs("en es de ar hi vi zh")
TYDIQA_LANGS = _langs("en ar bn fi id ko ru sw te")
TATOEBA_LANGS = _langs(
    "ar he vi id jv tl eu ml ta te af nl de el bn hi mr ur fa fr it pt es bg ru ja ka ko "
    "th sw zh kk tr et fi hu az lt pl uk ro"
)
MEWSLIX_LANGS = _langs("ar de en es fa ja pl ro ta tr uk")
LAREQA_LANGS = _langs("ar de el en es hi ru th tr vi zh")

# google/xtreme names its udpos configs by English language name (UD v2.5, 33 languages). The card's
# config list once spelled 'udpos.Afrikans' while dataset_info says 'udpos.Afrikaans'; the parquet
# copy follows dataset_info.
UDPOS_XTREME_NAMES = {
    "af": "Afrikaans",
    "ar": "Arabic",
    "bg": "Bulgarian",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "et": "Estonian",
    "eu": "Basque",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "kk": "Kazakh",
    "ko": "Korean",
    "mr": "Marathi",
    "nl": "Dutch",
    "pt": "Portuguese",
    "ru": "Russian",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "tl": "Tagalog",
    "tr": "Turkish",
    "ur": "Urdu",
    "vi": "Vietnamese",
    "yo": "Yoruba",
    "zh": "Chinese",
}
# Tatoeba in google/xtreme uses ISO 639-3 (and 'cmn', 'pes', 'swh' for zh, fa, sw); az, lt, pl, uk, ro
# were added by XTREME-R and are not in google/xtreme, so they come from mteb/tatoeba-bitext-mining
# (same LASER Tatoeba v1 pairs; 'sentence1' is the non-English side).
TATOEBA_ISO3 = {
    "ar": "ara",
    "he": "heb",
    "vi": "vie",
    "id": "ind",
    "jv": "jav",
    "tl": "tgl",
    "eu": "eus",
    "ml": "mal",
    "ta": "tam",
    "te": "tel",
    "af": "afr",
    "nl": "nld",
    "de": "deu",
    "el": "ell",
    "bn": "ben",
    "hi": "hin",
    "mr": "mar",
    "ur": "urd",
    "fa": "pes",
    "fr": "fra",
    "it": "ita",
    "pt": "por",
    "es": "spa",
    "bg": "bul",
    "ru": "rus",
    "ja": "jpn",
    "ka": "kat",
    "ko": "kor",
    "th": "tha",
    "sw": "swh",
    "zh": "cmn",
    "kk": "kaz",
    "tr": "tur",
    "et": "est",
    "fi": "fin",
    "hu": "hun",
    "az": "aze",
    "lt": "lit",
    "pl": "pol",
    "uk": "ukr",
    "ro": "ron",
}
TATOEBA_NOT_IN_XTREME = ("az", "lt", "pl", "uk", "ro")
# PAN-X in google/xtreme covers XTREME's 40 languages; the 8 XTREME-R additions come from the same
# WikiANN partition of Rahimi et al. 2019 in unimelb-nlp/wikiann (same columns and tag ids).
PANX_NOT_IN_XTREME = ("qu", "pl", "uk", "az", "lt", "pa", "gu", "ro")
# UD v2.7 treebanks for the 5 XTREME-R udpos additions: community mirror izhx/xtreme-r-udpos
# (per-language configs; columns assumed tokens/pos_tags like google/xtreme - verify, and map tags by
# name if its ClassLabel order differs). Mixing v2.5 and v2.7 follows the official data as closely as
# the hub allows; izhx/xtreme-r-udpos also holds all 38 languages in v2.7.
UDPOS_NOT_IN_XTREME = ("lt", "pl", "uk", "wo", "ro")
# TyDiQA-GoldP ids start with the lower-case English language name.
TYDIQA_ID_PREFIX = {
    "en": "english",
    "ar": "arabic",
    "bn": "bengali",
    "fi": "finnish",
    "id": "indonesian",
    "ko": "korean",
    "ru": "russian",
    "sw": "swahili",
    "te": "telugu",
}

SQUAD_TRAIN = DataRef(hf_id="rajpurkar/squad", split="train")
# XQuAD-en is a subset of SQuAD v1.1 dev, so this dev set is for monitoring, not for reporting.
SQUAD_DEV = DataRef(hf_id="rajpurkar/squad", split="validation")


def _panx(lang: str, split: str) -> DataRef:
    if lang in PANX_NOT_IN_XTREME:
        return DataRef(hf_id="unimelb-nlp/wikiann", config=lang, split=split)
    return DataRef(hf_id=XTREME, config=f"PAN-X.{lang}", split=split)


def _udpos(lang: str, split: str) -> DataRef:
    if lang in UDPOS_NOT_IN_XTREME:
        return DataRef(hf_id="izhx/xtreme-r-udpos", config=lang, split=split)
    return DataRef(hf_id=XTREME, config=f"udpos.{UDPOS_XTREME_NAMES[lang]}", split=split)


def _tatoeba(lang: str) -> DataRef:
    if lang in TATOEBA_NOT_IN_XTREME:
        return DataRef(
            hf_id="mteb/tatoeba-bitext-mining",
            config=f"{TATOEBA_ISO3[lang]}-eng",
            split="test",
            rename={"sentence1": "source_sentence", "sentence2": "target_sentence"},
        )
    # google/xtreme has a single split ('validation') per Tatoeba language; XTREME reports it as test.
    return DataRef(hf_id=XTREME, config=f"tatoeba.{TATOEBA_ISO3[lang]}", split="validation")


def _xquad(lang: str) -> DataRef:
    # XQuAD has one split ('validation'); Romanian (added by XTREME-R) is only in google/xquad.
    if lang == "ro":
        return DataRef(hf_id="google/xquad", config="xquad.ro", split="validation")
    return DataRef(hf_id=XTREME, config=f"XQuAD.{lang}", split="validation")


# LAReQA's official XQuAD-R files (google-research-datasets/lareqa, xquad-r/<lang>.json at the commit that
# last changed them), with the `sentence_breaks` that define the official candidates; the hub copy
# google-research-datasets/xquad_r drops them. SHA-256 of each file at that commit.
LAREQA_RELEASE = (
    "https://raw.githubusercontent.com/google-research-datasets/lareqa/"
    "5405d2a77e83d5ccb47623a3f9e5604c3f103193/xquad-r/{lang}.json"
)
LAREQA_SHA256 = {
    "ar": "c52922d3b8ac1ae03ed5ac38647ad59870dca3dda2beefe18ecdc30729acb69d",
    "de": "16fb0f4bf4916154b585a20c24c66074591c9718a1affe764ff4697572328949",
    "el": "163fd43ee785a30eb534ae2061e9eaa766a7ee4e8ffce5e4b422480c150f64b6",
    "en": "7b0954f39297c27a31fef610f0883337dd2907fa8699151dc922afdd0fa12ffe",
    "es": "f8e836b2d91009c4363e04315f7ede363eedbbb49c67dda60de6c4aa782f58de",
    "hi": "ea45ba8ae4513d1533b222bebdc02a90bc319c055d3aeea68584a053d2e92872",
    "ru": "7f4dff853538b9a5fcc28c070b8bb983a5c5d190ac747b8e005a1ada9cab18f1",
    "th": "c3a041864c3a9fb0b4dd91cfdf99cf36b411b3e704c58a303c97bc6dc786cfe4",
    "tr": "f3e8c13002bbce154a4578f535f7533cb70f3da08840e6b62735935baec7bd94",
    "vi": "e35926bf5cc6fc6ecbdfca49467aabeb454f08d152d7818143a906bd31dde995",
    "zh": "80c2cde7b9c2fb134c303cbb52f2ba396ead9eb0014aec43993543d2ba9e93ed",
}


def _lareqa_release(lang: str) -> DataRef:
    return DataRef(
        hf_id="google-research-datasets/lareqa", url=LAREQA_RELEASE.format(lang=lang), sha256=LAREQA_SHA256[lang]
    )


def _tydiqa(lang: str, split: str) -> DataRef:
    return DataRef(hf_id=XTREME, config="tydiqa", split=split, id_prefix=f"{TYDIQA_ID_PREFIX[lang]}-")


def _target(
    name: str,
    *,
    format: str,
    metric: str,
    category: str,
    languages: tuple[str, ...],
    train: DataRef | None,
    dev: Mapping[str, DataRef],
    test: Mapping[str, DataRef],
    source: str,
    columns: Mapping[str, str] = MappingProxyType({}),
    label_names: tuple[str, ...] = (),
    schema: str,
    candidates: DataRef | None = None,
    parallel_key: str | None = None,
) -> TaskSpec:
    data: dict[str, Mapping[str, DataRef]] = {}
    if train is not None:
        data["train"] = {"en": train}
    if dev:
        data["dev"] = dict(dev)
    data["test"] = dict(test)
    return TaskSpec(
        name=name,
        role="target",
        format=format,
        metric=metric,
        category=category,
        languages=languages,
        train_languages=("en",) if train is not None else (),
        columns=columns,
        label_names=label_names,
        schema=schema,
        data=data,
        source=source,
        candidates=candidates,
        parallel_key=parallel_key,
    )


TARGETS: tuple[TaskSpec, ...] = (
    _target(
        "xnli",
        format="classification",
        metric="accuracy",
        category="classification",
        languages=XNLI_LANGS,
        train=DataRef(hf_id="nyu-mll/glue", config="mnli", split="train"),
        dev={
            "en": DataRef(hf_id="nyu-mll/glue", config="mnli", split="validation_matched"),
            **_per_lang(
                (l for l in XNLI_LANGS if l != "en"),
                lambda l: DataRef(hf_id="facebook/xnli", config=l, split="validation"),
            ),
        },
        test=_per_lang(XNLI_LANGS, lambda l: DataRef(hf_id="facebook/xnli", config=l, split="test")),
        columns=NLI_COLUMNS,
        label_names=NLI_LABELS,
        schema="nli",
        # parallel: the 5,010 English test pairs professionally translated into each language, the same
        # order in every language's file (Conneau et al. 2018, sec. 3)
        parallel_key="position",
        source="Conneau et al. 2018 (XNLI); train MNLI (Williams et al. 2018); XTREME-R, Ruder et al. 2021",
    ),
    _target(
        # English training data is COPA (SuperGLUE). XTREME-R's baseline first fine-tunes on SIQA, then
        # COPA; with intermediate-task training the 'siqa' arm plays that first step.
        "xcopa",
        format="multiple_choice",
        metric="accuracy",
        category="classification",
        languages=XCOPA_LANGS,
        # aps/super_glue and cambridgeltl/xcopa are script repositories (super_glue.py, xcopa.py): read at
        # the parquet conversion, which the hub keeps for every public data set.
        train=DataRef(hf_id="aps/super_glue", config="copa", split="train", revision=PARQUET),
        dev={
            "en": DataRef(hf_id="aps/super_glue", config="copa", split="validation", revision=PARQUET),
            **_per_lang(
                XCOPA_LANGS,
                lambda l: DataRef(hf_id="cambridgeltl/xcopa", config=l, split="validation", revision=PARQUET),
            ),
        },
        test=_per_lang(
            XCOPA_LANGS, lambda l: DataRef(hf_id="cambridgeltl/xcopa", config=l, split="test", revision=PARQUET)
        ),
        label_names=("choice1", "choice2"),
        schema="copa",
        # parallel: COPA's 500 test examples translated into each language, in COPA's order (Ponti et al. 2020, sec. 2)
        parallel_key="position",
        source="Ponti et al. 2020 (XCOPA); train COPA, Roemmele et al. 2011 via SuperGLUE; XTREME-R",
    ),
    _target(
        # Dev is English only: several udpos languages (e.g. Thai, Tagalog, Yoruba) have test data only.
        "udpos",
        format="tagging",
        metric="seqeval_f1",
        category="structured_prediction",
        languages=UDPOS_LANGS,
        train=_udpos("en", "train"),
        dev={"en": _udpos("en", "validation")},
        test=_per_lang(UDPOS_LANGS, lambda l: _udpos(l, "test")),
        columns=MappingProxyType({"tokens": "tokens", "tags": "pos_tags"}),
        label_names=UPOS_LABELS,
        schema="tagging",
        source="Universal Dependencies v2.5 (google/xtreme) + v2.7 for XTREME-R additions; XTREME-R",
    ),
    _target(
        "panx",
        format="tagging",
        metric="seqeval_f1",
        category="structured_prediction",
        languages=PANX_LANGS,
        train=_panx("en", "train"),
        dev=_per_lang(PANX_LANGS, lambda l: _panx(l, "validation")),
        test=_per_lang(PANX_LANGS, lambda l: _panx(l, "test")),
        columns=NER_COLUMNS,
        label_names=PANX_LABELS,
        schema="tagging",
        source="WikiANN, Pan et al. 2017, partition of Rahimi et al. 2019; XTREME-R",
    ),
    _target(
        "xquad",
        format="qa",
        metric="squad",
        category="qa",
        languages=XQUAD_LANGS,
        train=SQUAD_TRAIN,
        dev={"en": SQUAD_DEV},
        test=_per_lang(XQUAD_LANGS, _xquad),
        schema="squad",
        # parallel: 240 SQuAD v1.1 dev paragraphs and their 1,190 questions professionally translated; every
        # language keeps SQuAD's question ids (Artetxe et al. 2020; seen in ../shared's xquad.<lang>.json)
        parallel_key="id",
        source="Artetxe et al. 2020 (XQuAD); train SQuAD v1.1, Rajpurkar et al. 2016; XTREME-R",
    ),
    _target(
        "mlqa",
        format="qa",
        metric="mlqa",
        category="qa",
        languages=MLQA_LANGS,
        train=SQUAD_TRAIN,
        dev=_per_lang(MLQA_LANGS, lambda l: DataRef(hf_id=XTREME, config=f"MLQA.{l}.{l}", split="validation")),
        test=_per_lang(MLQA_LANGS, lambda l: DataRef(hf_id=XTREME, config=f"MLQA.{l}.{l}", split="test")),
        # in part parallel: "QA instances parallel between 4 different languages on average" (MLQA README); keyed
        # by question id, an id found in one language only is drawn on its own
        parallel_key="id",
        schema="squad",
        source="Lewis et al. 2020 (MLQA); train SQuAD v1.1; XTREME-R",
    ),
    _target(
        # GoldP has train and dev only; dev is the test set, so there is no separate dev split.
        "tydiqa",
        format="qa",
        metric="squad",
        category="qa",
        languages=TYDIQA_LANGS,
        train=_tydiqa("en", "train"),
        dev={},
        test=_per_lang(TYDIQA_LANGS, lambda l: _tydiqa(l, "validation")),
        schema="squad",
        source="Clark et al. 2020 (TyDi QA, gold passage task); XTREME-R",
    ),
    _target(
        # No training: evaluated straight from the intermediate checkpoint (Phang et al. 2020).
        "tatoeba",
        format="retrieval",
        metric="accuracy",
        category="retrieval",
        languages=TATOEBA_LANGS,
        train=None,
        dev={},
        test=_per_lang(TATOEBA_LANGS, _tatoeba),
        schema="tatoeba",
        source="Artetxe & Schwenk 2019 (LASER Tatoeba v1); XTREME-R",
    ),
    _target(
        # izhx/mewsli-x: 'wikipedia_pairs' = English Wikipedia training pairs, one config per language for
        # the WikiNews mentions (validation = Mewsli-X dev, test), 'candidate_entities' = the shared pool.
        "mewslix",
        format="retrieval",
        metric="map_at_20",
        category="retrieval",
        languages=MEWSLIX_LANGS,
        train=DataRef(hf_id="izhx/mewsli-x", config="wikipedia_pairs", split="train"),
        dev={
            "en": DataRef(hf_id="izhx/mewsli-x", config="wikipedia_pairs", split="validation"),
            **_per_lang(
                (l for l in MEWSLIX_LANGS if l != "en"),
                lambda l: DataRef(hf_id="izhx/mewsli-x", config=l, split="validation"),
            ),
        },
        test=_per_lang(MEWSLIX_LANGS, lambda l: DataRef(hf_id="izhx/mewsli-x", config=l, split="test")),
        schema="mewslix",
        candidates=DataRef(hf_id="izhx/mewsli-x", config="candidate_entities", split="test"),
        source="Mewsli-X, Ruder et al. 2021 (XTREME-R), community mirror izhx/mewsli-x",
    ),
    _target(
        "lareqa",
        format="retrieval",
        metric="map_at_20",
        category="retrieval",
        languages=LAREQA_LANGS,
        train=SQUAD_TRAIN,
        dev={"en": SQUAD_DEV},
        test=_per_lang(LAREQA_LANGS, _lareqa_release),
        # parallel: XQuAD-R is XQuAD (same 1,190 question ids in every language, seen in ../shared's xquad-r files)
        parallel_key="id",
        schema="lareqa",
        source="Roy et al. 2020 (LAReQA, XQuAD-R); train SQuAD v1.1; XTREME-R",
    ),
)


# ---------------------------------------------------------------------------------------------
# Intermediate tasks. They carry train (and dev where one exists); their test sets are never used.
# ---------------------------------------------------------------------------------------------
def _intermediate(
    name: str,
    *,
    format: str,
    metric: str,
    schema: str,
    train: Mapping[str, DataRef],
    dev: Mapping[str, DataRef],
    source: str,
    columns: Mapping[str, str] = MappingProxyType({}),
    label_names: tuple[str, ...] = (),
    local_languages: tuple[str, ...] = (),
) -> TaskSpec:
    # `local_languages`: training languages of a task whose data exists only as local files (no hub refs).
    data = {split: dict(refs) for split, refs in (("train", train), ("dev", dev)) if refs}
    langs = tuple(train) or local_languages
    return TaskSpec(
        name=name,
        role="intermediate",
        format=format,
        metric=metric,
        category=None,
        languages=langs,
        train_languages=langs,
        columns=columns,
        label_names=label_names,
        schema=schema,
        data=data,
        source=source,
    )


def _en(ref: DataRef) -> dict[str, DataRef]:
    return {"en": ref}


PHANG = "Phang et al. 2020, English Intermediate-Task Training Improves Zero-Shot Cross-Lingual Transfer Too"

ENGLISH_INTERMEDIATES: tuple[TaskSpec, ...] = (
    _intermediate(
        "anli+",
        format="classification",
        metric="accuracy",
        schema="nli",
        train=_en(
            DataRef(
                hf_id="facebook/anli",
                split="train_r1+train_r2+train_r3",
                concat=(
                    DataRef(hf_id="nyu-mll/glue", config="mnli", split="train"),
                    DataRef(hf_id="stanfordnlp/snli", split="train"),
                ),
            )
        ),
        dev=_en(DataRef(hf_id="facebook/anli", split="dev_r1+dev_r2+dev_r3")),
        columns=NLI_COLUMNS,
        label_names=NLI_LABELS,
        source=f"{PHANG}; ANLI (Nie et al. 2020) + MNLI + SNLI (Bowman et al. 2015)",
    ),
    _intermediate(
        # CCGbank (LDC2005T13) is licensed: there is no hub copy, so `data` is empty and the task runs only
        # from local files (data.source: local, <root>/ccg/en/{train,dev}.jsonl with tokens + supertags).
        "ccg",
        format="tagging",
        metric="accuracy",
        schema="ccg",
        train={},
        dev={},
        local_languages=("en",),
        columns=MappingProxyType({"tokens": "tokens", "tags": "tags"}),
        source=f"{PHANG}; CCGbank, Hockenmaier & Steedman 2007 (LDC2005T13), token accuracy as in jiant",
    ),
    _intermediate(
        "commonsenseqa",
        format="multiple_choice",
        metric="accuracy",
        schema="commonsenseqa",
        train=_en(DataRef(hf_id="tau/commonsense_qa", split="train")),
        dev=_en(DataRef(hf_id="tau/commonsense_qa", split="validation")),
        label_names=("A", "B", "C", "D", "E"),
        source=f"{PHANG}; Talmor et al. 2019",
    ),
    _intermediate(
        "cosmosqa",
        format="multiple_choice",
        metric="accuracy",
        schema="cosmosqa",
        train=_en(DataRef(hf_id="allenai/cosmos_qa", split="train", revision=PARQUET)),
        dev=_en(DataRef(hf_id="allenai/cosmos_qa", split="validation", revision=PARQUET)),
        label_names=("answer0", "answer1", "answer2", "answer3"),
        source=f"{PHANG}; Huang et al. 2019",
    ),
    _intermediate(
        "hellaswag",
        format="multiple_choice",
        metric="accuracy",
        schema="hellaswag",
        train=_en(DataRef(hf_id="Rowan/hellaswag", split="train", revision=PARQUET)),
        dev=_en(DataRef(hf_id="Rowan/hellaswag", split="validation", revision=PARQUET)),
        label_names=("ending0", "ending1", "ending2", "ending3"),
        source=f"{PHANG}; Zellers et al. 2019",
    ),
    _intermediate(
        "mnli",
        format="classification",
        metric="accuracy",
        schema="nli",
        train=_en(DataRef(hf_id="nyu-mll/glue", config="mnli", split="train")),
        dev=_en(DataRef(hf_id="nyu-mll/glue", config="mnli", split="validation_matched")),
        columns=NLI_COLUMNS,
        label_names=NLI_LABELS,
        source=f"{PHANG}; Williams et al. 2018 via GLUE",
    ),
    _intermediate(
        "qqp",
        format="classification",
        metric="accuracy",
        schema="qqp",
        train=_en(DataRef(hf_id="nyu-mll/glue", config="qqp", split="train")),
        dev=_en(DataRef(hf_id="nyu-mll/glue", config="qqp", split="validation")),
        columns=MappingProxyType({"text": "question1", "text_pair": "question2", "label": "label"}),
        label_names=("not_duplicate", "duplicate"),
        source=f"{PHANG}; Quora Question Pairs via GLUE",
    ),
    _intermediate(
        "squad",
        format="qa",
        metric="squad",
        schema="squad",
        train=_en(SQUAD_TRAIN),
        dev=_en(SQUAD_DEV),
        source=f"{PHANG}; SQuAD v1.1, Rajpurkar et al. 2016",
    ),
    _intermediate(
        "sst2",
        format="classification",
        metric="accuracy",
        schema="sst2",
        train=_en(DataRef(hf_id="nyu-mll/glue", config="sst2", split="train")),
        dev=_en(DataRef(hf_id="nyu-mll/glue", config="sst2", split="validation")),
        columns=MappingProxyType({"text": "sentence", "label": "label"}),
        label_names=("negative", "positive"),
        source=f"{PHANG}; Socher et al. 2013 via GLUE",
    ),
    _intermediate(
        # Not one of Phang's nine: XTREME-R trains XCOPA models on SIQA before COPA.
        "siqa",
        format="multiple_choice",
        metric="accuracy",
        schema="siqa",
        train=_en(DataRef(hf_id="allenai/social_i_qa", split="train", revision=PARQUET)),
        dev=_en(DataRef(hf_id="allenai/social_i_qa", split="validation", revision=PARQUET)),
        label_names=("answerA", "answerB", "answerC"),
        source="Sap et al. 2019 (Social IQa); XTREME-R XCOPA recipe",
    ),
)

# MasakhaNER 2.0 config names are ISO 639-3; registry codes are ISO 639-1 where one exists.
MASAKHANER2_CONFIGS = {
    "bm": "bam",
    "bbj": "bbj",
    "ee": "ewe",
    "fon": "fon",
    "ha": "hau",
    "ig": "ibo",
    "rw": "kin",
    "lg": "lug",
    "luo": "luo",
    "mos": "mos",
    "ny": "nya",
    "pcm": "pcm",
    "sn": "sna",
    "sw": "swa",
    "tn": "tsn",
    "tw": "twi",
    "wo": "wol",
    "xh": "xho",
    "yo": "yor",
    "zu": "zul",
}
# WikiANN languages for 'wikiann_lowres': Joshi class 0-2, NOT among the 48 PAN-X target languages
# (PAN-X is this same WikiANN partition, so training on e.g. its Yoruba train split would turn the panx
# target from zero-shot into in-language supervised), and each close to XTREME-R target languages by
# family, script or region so transfer is plausible: Bantu/Niger-Congo and Cushitic/Semitic near sw, yo,
# wo, ar, he (am, ig, rw, so, ln); Austronesian near id, jv, ms, tl (mg, su, ilo); Indo-Aryan near hi,
# mr, bn, ur, pa, gu (ne, or, as, sd, si); Iranian/Turkic near fa, kk, tr, az (tg, ky, tk); Andean near
# qu (ay, gn); Mainland South-East Asian near th, vi, my (km). All have train/validation/test splits in
# unimelb-nlp/wikiann (Rahimi et al. 2019), most with only 100 training sentences.
WIKIANN_LOWRES_LANGS = _langs("am ig rw so ln mg su ilo ne or as sd si tg ky tk ay gn km")
# SIB-200 subset: every XTREME-R target language in Joshi class 0-2 (FLORES-200 config names).
SIB200_CONFIGS = {
    "az": "azj_Latn",
    "gu": "guj_Gujr",
    "ht": "hat_Latn",
    "jv": "jav_Latn",
    "ml": "mal_Mlym",
    "mr": "mar_Deva",
    "my": "mya_Mymr",
    "pa": "pan_Guru",
    "qu": "quy_Latn",
    "sw": "swh_Latn",
    "te": "tel_Telu",
    "wo": "wol_Latn",
    "yo": "yor_Latn",
}
# AfriSenti's 14 languages ('por' is Mozambican Portuguese). NaijaSenti (HausaNLP/NaijaSenti-Twitter:
# hau, ibo, pcm, yor) is part of AfriSenti, so it is not registered separately.
AFRISENTI_CONFIGS = {
    "am": "amh",
    "arq": "arq",
    "ary": "ary",
    "ha": "hau",
    "ig": "ibo",
    "rw": "kin",
    "om": "orm",
    "pcm": "pcm",
    "pt": "por",
    "sw": "swa",
    "ti": "tir",
    "ts": "tso",
    "tw": "twi",
    "yo": "yor",
}
INDICXNLI_LANGS = _langs("as bn gu hi kn ml mr or pa ta te")
# TyDiQA-GoldP training languages other than English. Low-resource (Joshi 0-2) among them: sw, te;
# bn, id (3) and fi, ko, ru (4), ar (5) are high. These are the tydiqa target's own languages and task,
# so an arm using this task is in-language supervised for tydiqa, not zero-shot: report it apart.
# There is no dev split: GoldP dev is the tydiqa target's test set.
TYDIQA_LOWRES_LANGS = _langs("sw te bn fi id ko ru ar")


def _wikiann(name: str, langs: tuple[str, ...]) -> TaskSpec:
    """A WikiANN NER intermediate task in `langs` (the low-resource one and its high-resource control)."""
    return _intermediate(
        name,
        format="tagging",
        metric="seqeval_f1",
        schema="tagging",
        train=_per_lang(langs, lambda l: DataRef(hf_id="unimelb-nlp/wikiann", config=l, split="train")),
        dev=_per_lang(langs, lambda l: DataRef(hf_id="unimelb-nlp/wikiann", config=l, split="validation")),
        columns=NER_COLUMNS,
        label_names=PANX_LABELS,
        source="WikiANN, Pan et al. 2017, partition of Rahimi et al. 2019 (unimelb-nlp/wikiann)",
    )


def _sib200(name: str, configs: dict[str, str]) -> TaskSpec:
    """A SIB-200 topic-classification intermediate task in the languages of `configs` (code -> config)."""
    return _intermediate(
        name,
        format="classification",
        metric="accuracy",
        schema="sib200",
        train=_by_config("Davlan/sib200", configs, "train", revision=PARQUET),
        dev=_by_config("Davlan/sib200", configs, "validation", revision=PARQUET),
        columns=MappingProxyType({"text": "text", "label": "category"}),
        label_names=SIB200_LABELS,
        source="Adelani et al. 2024, SIB-200 (Davlan/sib200)",
    )


LOWRES_INTERMEDIATES: tuple[TaskSpec, ...] = (
    _intermediate(
        "masakhaner2",
        format="tagging",
        metric="seqeval_f1",
        schema="tagging",
        train=_by_config("masakhane/masakhaner2", MASAKHANER2_CONFIGS, "train", revision=PARQUET),
        dev=_by_config("masakhane/masakhaner2", MASAKHANER2_CONFIGS, "validation", revision=PARQUET),
        columns=NER_COLUMNS,
        label_names=MASAKHANER_LABELS,
        source="Adelani et al. 2022, MasakhaNER 2.0 (masakhane/masakhaner2)",
    ),
    _wikiann("wikiann_lowres", WIKIANN_LOWRES_LANGS),
    _sib200("sib200", SIB200_CONFIGS),
    _intermediate(
        "afrisenti",
        format="classification",
        metric="accuracy",
        schema="afrisenti",
        train=_by_config("shmuhammad/AfriSenti-twitter-sentiment", AFRISENTI_CONFIGS, "train", revision=PARQUET),
        dev=_by_config("shmuhammad/AfriSenti-twitter-sentiment", AFRISENTI_CONFIGS, "validation", revision=PARQUET),
        columns=MappingProxyType({"text": "tweet", "label": "label"}),
        label_names=AFRISENTI_LABELS,
        source="Muhammad et al. 2023, AfriSenti (shmuhammad/AfriSenti-twitter-sentiment)",
    ),
    _intermediate(
        # Training data is MNLI machine-translated into 11 Indic languages; 'hi' overlaps the xnli target
        # languages, which makes that language translate-train rather than zero-shot.
        "indicxnli",
        format="classification",
        metric="accuracy",
        schema="nli",
        train=_per_lang(
            INDICXNLI_LANGS, lambda l: DataRef(hf_id="Divyanshu/indicxnli", config=l, split="train", revision=PARQUET)
        ),
        dev=_per_lang(
            INDICXNLI_LANGS,
            lambda l: DataRef(hf_id="Divyanshu/indicxnli", config=l, split="validation", revision=PARQUET),
        ),
        columns=NLI_COLUMNS,
        label_names=NLI_LABELS,
        source="Aggarwal et al. 2022, IndicXNLI (Divyanshu/indicxnli)",
    ),
    _intermediate(
        "tydiqa_lowres",
        format="qa",
        metric="squad",
        schema="squad",
        train=_per_lang(TYDIQA_LOWRES_LANGS, lambda l: _tydiqa(l, "train")),
        dev={},
        source="Clark et al. 2020, TyDi QA gold passage training data (google/xtreme tydiqa)",
    ),
)


# The matched high-resource control (configs/lowres.yaml `*_highres` arms): the same kinds of task as the
# low-resource intermediates, in six Joshi class-5 languages. They are XTREME-R target languages (every
# class 4-5 language of the registry is), so for those targets a highres arm is no longer zero-shot:
# WikiANN's de/fr/es/zh/ru/ar train splits are PAN-X's, and XNLI's train splits are MNLI machine-
# translated (translate-train). Read the per-language rows of those targets with that in mind.
HIGHRES_LANGS = _langs("de fr es zh ru ar")
SIB200_HIGHRES_CONFIGS = {
    "de": "deu_Latn",
    "fr": "fra_Latn",
    "es": "spa_Latn",
    "zh": "zho_Hans",
    "ru": "rus_Cyrl",
    "ar": "arb_Arab",
}

HIGHRES_INTERMEDIATES: tuple[TaskSpec, ...] = (
    _wikiann("wikiann_highres", HIGHRES_LANGS),
    _sib200("sib200_highres", SIB200_HIGHRES_CONFIGS),
    _intermediate(
        # XNLI's train split in each language is MNLI machine-translated (Conneau et al. 2018): the
        # high-resource counterpart of IndicXNLI (MNLI machine-translated into Indic languages).
        "xnli_mt_highres",
        format="classification",
        metric="accuracy",
        schema="nli",
        train=_per_lang(HIGHRES_LANGS, lambda l: DataRef(hf_id="facebook/xnli", config=l, split="train")),
        dev=_per_lang(HIGHRES_LANGS, lambda l: DataRef(hf_id="facebook/xnli", config=l, split="validation")),
        columns=NLI_COLUMNS,
        label_names=NLI_LABELS,
        source="Conneau et al. 2018, XNLI machine-translated training data (facebook/xnli)",
    ),
)


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------
class UnknownTaskError(ValueError):
    """A task name that is not registered; the message lists the valid names."""


# Which category and metrics a target of each format may have (XTREME-R's grouping).
FORMAT_CATEGORY = MappingProxyType(
    {
        "classification": "classification",
        "multiple_choice": "classification",
        "tagging": "structured_prediction",
        "qa": "qa",
        "retrieval": "retrieval",
    }
)
FORMAT_METRICS = MappingProxyType(
    {
        "classification": ("accuracy",),
        "multiple_choice": ("accuracy",),
        "tagging": ("seqeval_f1", "accuracy"),
        "qa": ("squad", "mlqa"),
        "retrieval": ("accuracy", "map_at_20"),
    }
)
ROLE_COLUMNS = MappingProxyType({"classification": ("text", "label"), "tagging": ("tokens", "tags")})
OPTIONAL_ROLES = MappingProxyType({"classification": ("text_pair",)})


def check_spec(spec: TaskSpec) -> None:
    """Raise ValueError naming the task and field when `spec` breaks a registry rule."""

    def fail(field: str, problem: str) -> None:
        raise ValueError(f"task {spec.name!r}: {field} {problem}")

    if not SAFE_NAME.match(spec.name):
        fail("name", f"must match {SAFE_NAME.pattern}")
    for field, value, allowed in (
        ("role", spec.role, ROLES),
        ("format", spec.format, FORMATS),
        ("metric", spec.metric, METRICS),
    ):
        if value not in allowed:
            fail(field, f"is {value!r}; allowed: {', '.join(allowed)}")
    if spec.metric not in FORMAT_METRICS[spec.format]:
        fail("metric", f"{spec.metric!r} does not fit format {spec.format!r} ({FORMAT_METRICS[spec.format]})")
    if spec.role == "target":
        if spec.category not in CATEGORIES or spec.category != FORMAT_CATEGORY[spec.format]:
            fail(
                "category", f"is {spec.category!r}; a {spec.format} target belongs to {FORMAT_CATEGORY[spec.format]!r}"
            )
    elif spec.category is not None:
        fail("category", "must be None for intermediate tasks")
    if not spec.languages or len(set(spec.languages)) != len(spec.languages):
        fail("languages", "must be non-empty and without repeats")
    for code in (*spec.languages, *spec.train_languages):
        language(code)  # raises UnknownLanguageError
    if not set(spec.train_languages) <= set(spec.languages) and spec.role == "intermediate":
        fail("train_languages", "must be a subset of languages")
    if spec.schema not in SCHEMA_COLUMNS:
        fail("schema", f"is {spec.schema!r}; known: {', '.join(SCHEMA_COLUMNS)}")
    roles = ROLE_COLUMNS.get(spec.format, ())
    allowed_roles = (*roles, *OPTIONAL_ROLES.get(spec.format, ()))
    if set(roles) - set(spec.columns) or set(spec.columns) - set(allowed_roles):
        optional = OPTIONAL_ROLES.get(spec.format, ())
        fail(
            "columns",
            f"roles are {sorted(spec.columns)}; a {spec.format} task needs {list(roles)}"
            + (f" and may add {list(optional)}" if optional else ""),
        )
    if not set(spec.columns.values()) <= set(SCHEMA_COLUMNS[spec.schema]):
        fail("columns", f"{dict(spec.columns)} are not all columns of schema {spec.schema!r}")
    if spec.format in ("classification", "multiple_choice") and len(spec.label_names) < 2:
        fail("label_names", "needs at least two names")
    if spec.schema == "tagging" and not spec.label_names:
        fail("label_names", "must list the tag set of a 'tagging' schema task")
    if spec.format in ("qa", "retrieval") and spec.label_names:
        fail("label_names", "must be empty for qa and retrieval")
    for split, refs in spec.data.items():
        if split not in SPLITS:
            fail("data", f"has split {split!r}; allowed: {', '.join(SPLITS)}")
        if not refs or not set(refs) <= set(spec.languages) | set(spec.train_languages):
            fail(f"data[{split!r}]", f"languages {sorted(refs)} must be non-empty and known to the task")
    train = set(spec.data.get("train", {}))
    if spec.data and train != set(spec.train_languages):
        fail("data['train']", f"covers {sorted(train)} but train_languages is {list(spec.train_languages)}")
    if spec.role == "target" and set(spec.data.get("test", {})) != set(spec.languages):
        fail("data['test']", "must have a DataRef for every evaluation language")


def _build(specs: Iterable[TaskSpec]) -> Mapping[str, TaskSpec]:
    table: dict[str, TaskSpec] = {}
    for spec in specs:
        check_spec(spec)
        if spec.name in table:
            raise ValueError(f"task {spec.name!r} is registered twice")
        table[spec.name] = spec
    return MappingProxyType(table)


TASKS: Mapping[str, TaskSpec] = _build(
    (*TARGETS, *ENGLISH_INTERMEDIATES, *LOWRES_INTERMEDIATES, *HIGHRES_INTERMEDIATES)
)
"""name -> TaskSpec: XTREME-R targets first (XTREME-R order), then English, low-resource and high-resource intermediates."""


def get_task(name: str) -> TaskSpec:
    """The TaskSpec called `name`; raises UnknownTaskError listing the valid names."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        near = difflib.get_close_matches(str(name).lower(), list(TASKS), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""
        raise UnknownTaskError(f"unknown task {name!r}{hint}; valid tasks: {', '.join(TASKS)}") from None


def target_tasks() -> tuple[TaskSpec, ...]:
    """The ten XTREME-R target tasks in XTREME-R order."""
    return tuple(s for s in TASKS.values() if s.role == "target")


def intermediate_tasks() -> tuple[TaskSpec, ...]:
    """All intermediate tasks: Phang et al.'s nine and SIQA, then the low-resource multilingual ones."""
    return tuple(s for s in TASKS.values() if s.role == "intermediate")
