import numpy as np
import pytest

from hpcxlt.config.schema import DataConfig
from hpcxlt.data.features import load_candidate_features, load_features, tag_names
from hpcxlt.data.featurize import feature_lengths, featurize
from hpcxlt.data.load import load_split
from hpcxlt.data.qa_answers import postprocess_qa
from hpcxlt.data.schemas import IGNORE, RETRIEVAL_POOLS
from hpcxlt.demo.synth import SynthSettings, write_benchmark
from hpcxlt.demo.tiny import TinySpec, build_tiny
from hpcxlt.tasks.registry import TASKS, get_task

LANGS = ("en", "de", "ru", "zh", "sw", "yo", "ar", "hi", "bm", "az", "am", "as", "ja", "et", "th")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from transformers import AutoTokenizer

    base = tmp_path_factory.getbasetemp()
    tiny = build_tiny(base / "features-tiny", TinySpec(vocab_size=600, sentences_per_language=30), languages=LANGS)
    bench = base / "features-bench"
    write_benchmark(bench, SynthSettings(train_size=24, eval_size=10))
    return AutoTokenizer.from_pretrained(tiny), bench


def cfg(bench, cache):
    return DataConfig(source="local", root=str(bench), cache_dir=str(cache))


def test_every_task_featurizes_every_split(world, tmp_path):
    tokenizer, bench = world
    expected = {
        "classification": {"input_ids", "attention_mask", "labels"},
        "multiple_choice": {"input_ids", "attention_mask", "labels"},
        "tagging": {"input_ids", "attention_mask", "labels"},
        "qa": {"input_ids", "attention_mask", "start_positions", "end_positions"},
    }
    for name, spec in TASKS.items():
        for split, langs in spec.split_languages().items():
            fs = load_features(spec, langs[-1], split, tokenizer, cfg(bench, tmp_path), max_length=48, doc_stride=16)
            columns = set(fs.features.column_names)
            if spec.format == "retrieval":
                prefixed = {"query_input_ids", "cand_input_ids"} if split == "train" else {"role", "keys", "item_id"}
                assert prefixed <= columns, (name, split)
            else:
                assert expected[spec.format] <= columns, (name, split, columns)
            assert len(fs.features) > 0 and max(feature_lengths(fs.features)) <= 48
            if spec.format == "multiple_choice":
                assert all(len(choices) == len(spec.label_names) for choices in fs.features["input_ids"])
                assert all(0 <= label < len(spec.label_names) for label in fs.features["labels"])
            if spec.format == "classification":
                assert all(0 <= label < len(spec.label_names) for label in fs.features["labels"])


def test_qa_windows_map_gold_positions_back_to_the_exact_answer_text(world, tmp_path):
    tokenizer, bench = world
    cases = (
        ("xquad", "zh", 40, 12),
        ("xquad", "en", 40, 12),
        ("mlqa", "de", 40, 12),
        ("tydiqa", "sw", 40, 12),
        ("xquad", "ru", 26, 8),
    )  # the last one also cuts long questions to fit the window
    for task, lang, max_length, doc_stride in cases:
        spec = get_task(task)
        # Short windows: most contexts need several, and most windows hold no answer.
        fs = load_features(
            spec, lang, "test", tokenizer, cfg(bench, tmp_path), max_length=max_length, doc_stride=doc_stride
        )
        features = fs.features
        assert len(features) > len(fs.examples)
        assert 0 in features["start_positions"]  # windows without the answer point at <s>
        width = max(len(ids) for ids in features["input_ids"])
        start = np.full((len(features), width), -5.0)
        end = np.full((len(features), width), -5.0)
        for i, (s, e) in enumerate(zip(features["start_positions"], features["end_positions"])):
            start[i, s] += 10 if s else 0
            end[i, e] += 10 if e else 0
        answers = postprocess_qa(fs.examples, features, start, end)
        assert answers == {ex["id"]: ex["answers"]["text"][0] for ex in fs.examples}, task


def test_postprocess_picks_the_best_valid_span_across_windows():
    import datasets

    examples = datasets.Dataset.from_list([{"id": "a", "context": "one two three"}])
    features = datasets.Dataset.from_list(
        [
            {"example_id": "a", "offset_mapping": [[-1, -1], [0, 3], [4, 7], [8, 13], [-1, -1]]},
            {"example_id": "a", "offset_mapping": [[-1, -1], [4, 7], [8, 13], [-1, -1], [-1, -1]]},
        ]
    )
    start = np.array([[9.0, 1, 0, 0, 9], [0, 0, 3, 0, 0]])  # window 0 best start is outside the context
    end = np.array([[9.0, 0, 2, 0, 9], [0, 0, 3, 0, 0]])
    # Window 0 can only pair 'one'..'two' (1 + 2 = 3); window 1 has 'three' (3 + 3 = 6).
    assert postprocess_qa(examples, features, start, end) == {"a": "three"}
    end[1] = [0, 0, 0, 0, 0]
    start[1] = [0, 0, 0, 0, 0]
    # One-token answers only: 'two' (0 + 2) beats 'one' (1 + 0); window 1 now scores 0 everywhere.
    assert postprocess_qa(examples, features, start, end, max_answer_length=1) == {"a": "two"}


def test_tagging_labels_sit_on_the_first_sub_word_of_each_word(world, tmp_path):
    tokenizer, bench = world
    spec = get_task("panx")
    fs = load_features(spec, "ru", "test", tokenizer, cfg(bench, tmp_path), max_length=128)
    for feature, row in zip(fs.features, fs.examples):
        labels, word_index = feature["labels"], feature["word_index"]
        firsts = [i for i, label in enumerate(labels) if label != IGNORE]
        assert [word_index[i] for i in firsts] == list(range(len(row["tokens"])))  # every word, in order
        assert [labels[i] for i in firsts] == row["ner_tags"]
        assert labels[0] == labels[-1] == IGNORE  # <s> and </s>
        pieces = tokenizer.convert_ids_to_tokens(feature["input_ids"])
        for i in firsts:  # a first sub-word starts its word
            assert row["tokens"][word_index[i]].startswith(pieces[i].lstrip("▁") or row["tokens"][word_index[i]][0])
    # Truncation drops the words beyond max_length, never misaligns the rest.
    short = load_features(spec, "ru", "test", tokenizer, cfg(bench, tmp_path), max_length=8)
    for feature, row in zip(short.features, short.examples):
        kept = [feature["labels"][i] for i, w in enumerate(feature["word_index"]) if w >= 0]
        assert kept == row["ner_tags"][: len(kept)]


def test_ccg_tag_names_come_from_the_training_data(world, tmp_path):
    tokenizer, bench = world
    ccg = get_task("ccg")
    names = tag_names(ccg, cfg(bench, tmp_path))
    assert "N" in names and "(S\\NP)/NP" in names and list(names) == sorted(names)
    fs = load_features(ccg, "en", "dev", tokenizer, cfg(bench, tmp_path), max_length=64)
    assert fs.label_names == names
    assert max(label for labels in fs.features["labels"] for label in labels) < len(names)


def test_retrieval_queries_find_their_answers_in_their_pool(world, tmp_path):
    tokenizer, bench = world
    data = cfg(bench, tmp_path)
    for task, lang in (("tatoeba", "de"), ("lareqa", "ar"), ("mewslix", "ja"), ("mewslix", "en")):
        spec = get_task(task)
        split = "dev" if (task, lang) == ("mewslix", "en") else "test"
        features = load_features(spec, lang, split, tokenizer, data, max_length=64).features
        candidates = [set(k) for k, r in zip(features["keys"], features["role"]) if r == 1]
        if RETRIEVAL_POOLS[spec.schema] == "candidates" and split == "test":
            assert not candidates  # WikiNews mentions search the shared pool
            candidates = [
                set(k) for k in load_candidate_features(spec, tokenizer, data, max_length=64).features["keys"]
            ]
        queries = [set(k) for k, r in zip(features["keys"], features["role"]) if r == 0]
        assert queries and all(any(q & c for c in candidates) for q in queries), task
    pairs = load_features(get_task("lareqa"), "en", "train", tokenizer, data, max_length=64).features
    assert len(pairs) == 24 and {"query_input_ids", "cand_attention_mask"} <= set(pairs.column_names)


class CountingTokenizer:
    """Delegates to a tokenizer and counts the calls that tokenize text."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_cache_tokenizes_once_and_only_reuses_equal_inputs(world, tmp_path):
    tokenizer, bench = world
    counting = CountingTokenizer(tokenizer)
    spec, data = get_task("xnli"), cfg(bench, tmp_path / "cache")
    first = load_features(spec, "de", "test", counting, data, max_length=64)
    assert not first.cache_hit and counting.calls > 0
    calls = counting.calls
    for _ in range(3):  # e.g. three seeds evaluating the same split
        again = load_features(spec, "de", "test", counting, data, max_length=64)
        assert again.cache_hit and again.cache_path == first.cache_path
        assert again.features["input_ids"] == first.features["input_ids"]
    assert counting.calls == calls  # not tokenized again
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path / "copy")  # e.g. the tokenizer a trained model folder carries
    assert load_features(
        spec, "de", "test", AutoTokenizer.from_pretrained(tmp_path / "copy"), data, max_length=64
    ).cache_hit
    assert not load_features(spec, "de", "test", counting, data, max_length=32).cache_hit  # other settings
    assert not load_features(spec, "fr", "test", counting, data, max_length=64).cache_hit  # other language
    capped = DataConfig(source="local", root=str(bench), cache_dir=str(tmp_path / "cache"), max_eval_examples=4)
    assert len(load_features(spec, "de", "test", counting, capped, max_length=64).features) == 4
    assert not any(p.name.startswith(".") for p in (tmp_path / "cache").iterdir())  # no half-written entries


def test_featurize_without_cache_matches_cached_features(world, tmp_path):
    tokenizer, bench = world
    spec, data = get_task("xcopa"), cfg(bench, tmp_path)
    cached = load_features(spec, "et", "test", tokenizer, data, max_length=64).features
    direct = featurize(spec, load_split(spec, "et", "test", data), tokenizer, train=False, max_length=64)
    assert direct["input_ids"] == cached["input_ids"] and direct["labels"] == cached["labels"]


def test_classification_features_equal_the_tokenizer_and_labels_are_checked_column_wise(world):
    import datasets

    tokenizer, _ = world
    spec = get_task("xnli")
    rows = datasets.Dataset.from_dict(
        {
            "premise": ["a man sleeps .", "two dogs run far away ."],
            "hypothesis": ["nobody sleeps .", "dogs move ."],
            "label": ["contradiction", "entailment"],
        }
    )
    features = featurize(spec, rows, tokenizer, train=True, max_length=8)
    reference = tokenizer(list(rows["premise"]), list(rows["hypothesis"]), truncation=True, max_length=8)
    assert features["input_ids"] == reference["input_ids"]
    assert features["attention_mask"] == reference["attention_mask"]
    assert features["labels"] == [spec.label_names.index("contradiction"), spec.label_names.index("entailment")]
    ids = featurize(
        spec, rows.remove_columns("label").add_column("label", [2, -1]), tokenizer, train=True, max_length=8
    )
    assert ids["labels"] == [2, IGNORE]
    for bad in (True, 7, "maybe"):  # True is not label 1; out of range; no such name
        rows_bad = datasets.Dataset.from_dict({"premise": ["x ."], "hypothesis": ["y ."], "label": [bad]})
        with pytest.raises(ValueError, match="task 'xnli'.*label"):
            featurize(spec, rows_bad, tokenizer, train=True, max_length=8)
