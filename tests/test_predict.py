"""Batched inference per format on the tiny XLM-R and the synthetic benchmark: order restored after
length-sorted batching, outputs equal to one-example-at-a-time inference, predictions in the official
submission format and lined up with the gold."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hpcxlt.data.featurize import input_limit
from hpcxlt.evaluate.predict import InferenceSettings, length_batches, predict_split, run_batches
from hpcxlt.tasks.registry import get_task
from tests.eval_assets import assets, data_config, eval_threads, tokenizer  # noqa: F401  (fixtures)


@pytest.fixture(scope="module", autouse=True)
def _threads(eval_threads):
    yield


def model_for(assets: Path, task: str):
    """The tiny encoder with a fresh (seeded) head for `task`, in eval mode."""
    import torch

    from hpcxlt.model.heads import build_model

    spec = get_task(task)
    torch.manual_seed(0)
    return build_model(spec.format, str(assets / "tiny"), label_names=spec.label_names or None).eval()


def rows(assets: Path, task: str, lang: str, split: str = "test") -> list[dict]:
    path = assets / "synth" / task / lang / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_rows(root: Path, task: str, lang: str, items: list[dict], split: str = "test") -> None:
    path = root / task / lang / f"{split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------
def test_length_batches_cover_every_index_once_longest_first():
    rng = random.Random(1)
    lengths = [rng.randint(1, 20) for _ in range(103)]
    batches = length_batches(lengths, 8)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(103))
    assert all(len(b) == 8 for b in batches[:-1]) and len(batches[-1]) == 103 % 8
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    # equal lengths keep input order
    for a, b in zip(flat, flat[1:]):
        if lengths[a] == lengths[b]:
            assert a < b
    assert length_batches(lengths, 8, sort_by_length=False) == [
        list(range(i, min(i + 8, 103))) for i in range(0, 103, 8)
    ]
    with pytest.raises(ValueError, match="batch_size"):
        length_batches(lengths, 0)


def test_length_sorted_batches_give_the_outputs_of_single_examples_in_input_order(assets, tokenizer):
    import torch

    from hpcxlt.data.features import load_features

    model = model_for(assets, "xnli")
    fs = load_features(get_task("xnli"), "de", "test", tokenizer, data_config(assets), max_length=128, train=False)
    logits = lambda m, batch: list(m(**batch).logits.float())  # noqa: E731
    kwargs = dict(pad_token_id=tokenizer.pad_token_id)
    sorted_out = torch.stack(run_batches(model, fs.features, logits, batch_size=7, **kwargs))
    fixed_out = torch.stack(run_batches(model, fs.features, logits, batch_size=7, sort_by_length=False, **kwargs))
    single = torch.stack(run_batches(model, fs.features, logits, batch_size=1, **kwargs))
    assert sorted_out.shape == (len(fs.features), 3)
    assert torch.allclose(sorted_out, single, atol=1e-5)
    assert torch.allclose(fixed_out, single, atol=1e-5)
    # the outputs differ between examples, so a mix-up of the order could not pass unnoticed
    assert len({tuple(row.round(decimals=4).tolist()) for row in single}) > len(single) // 2


def test_length_sorted_and_fixed_order_predictions_are_equal(assets, tokenizer):
    data = data_config(assets)
    for task, lang in (("xnli", "sw"), ("xcopa", "sw"), ("panx", "de"), ("xquad", "en")):
        model = model_for(assets, task)
        a = predict_split(get_task(task), lang, "test", model, tokenizer, data, InferenceSettings(batch_size=5))
        b = predict_split(
            get_task(task), lang, "test", model, tokenizer, data, InferenceSettings(batch_size=5, sort_by_length=False)
        )
        assert a.predictions == b.predictions, task
        assert a.labels == b.labels, task


# --------------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------------
def test_classification_gives_class_names_lined_up_with_the_gold(assets, tokenizer):
    spec = get_task("xnli")
    prediction = predict_split(spec, "de", "test", model_for(assets, "xnli"), tokenizer, data_config(assets))
    gold = [spec.label_names[r["label"]] for r in rows(assets, "xnli", "de")]
    assert prediction.labels == gold
    assert prediction.n_examples == len(gold) == len(prediction.predictions)
    assert set(prediction.predictions) <= set(spec.label_names)
    assert (prediction.task, prediction.lang, prediction.split) == ("xnli", "de", "test")


def test_multiple_choice_gives_the_index_of_a_choice(assets, tokenizer):
    prediction = predict_split(
        get_task("xcopa"), "sw", "test", model_for(assets, "xcopa"), tokenizer, data_config(assets)
    )
    assert prediction.labels == [r["label"] for r in rows(assets, "xcopa", "sw")]
    assert len(prediction.predictions) == len(prediction.labels)
    assert set(prediction.predictions) <= {0, 1}


def test_tagging_gives_each_word_the_tag_of_its_first_subword(assets, tokenizer):
    import torch

    spec = get_task("panx")
    model = model_for(assets, "panx")
    prediction = predict_split(
        spec, "en", "test", model, tokenizer, data_config(assets), InferenceSettings(batch_size=4)
    )
    examples = rows(assets, "panx", "en")
    assert prediction.labels == [[spec.label_names[t] for t in r["ner_tags"]] for r in examples]
    # the same words tagged one sentence at a time, without padding, straight from the tokenizer's word ids
    expected = []
    with torch.inference_mode():
        for r in examples:
            enc = tokenizer(r["tokens"], is_split_into_words=True, return_tensors="pt")
            ids = model(**enc).logits[0].argmax(-1).tolist()
            tags, seen = [], set()
            for position, word in enumerate(enc.word_ids(0)):
                if word is not None and word not in seen:
                    seen.add(word)
                    tags.append(spec.label_names[ids[position]])
            expected.append(tags)
    assert prediction.predictions == expected
    assert not prediction.notes


def test_tagging_reads_long_sentences_to_the_model_limit(assets, tokenizer, tmp_path):
    spec = get_task("panx")
    words = rows(assets, "panx", "en")[0]["tokens"]
    medium = (words * 60)[:150]  # more tokens than the training length (128), fewer than the model's 512
    long = (words * 80)[:700]  # more than 512 tokens: the tail has no prediction
    n_tokens = lambda ws: len(tokenizer(ws, is_split_into_words=True)["input_ids"])  # noqa: E731
    assert 128 < n_tokens(medium) <= 512 < n_tokens(long)
    write_rows(
        tmp_path / "data",
        "panx",
        "en",
        [{"tokens": medium, "ner_tags": [0] * len(medium)}, {"tokens": long, "ner_tags": [0] * len(long)}],
    )
    data = data_config(tmp_path, root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    prediction = predict_split(spec, "en", "test", model_for(assets, "panx"), tokenizer, data)
    assert [len(p) for p in prediction.predictions] == [150, 700]
    covered = {
        w
        for w in tokenizer(long, is_split_into_words=True, truncation=True, max_length=512).word_ids()
        if w is not None
    }
    uncovered = 700 - len(covered)
    assert len(prediction.notes) == 1 and prediction.notes[0].startswith(f"panx/en/test: {uncovered} words beyond")
    assert prediction.predictions[1][-uncovered:] == ["O"] * uncovered


def test_qa_answers_every_question_with_a_span_of_its_context(assets, tokenizer):
    prediction = predict_split(
        get_task("xquad"),
        "en",
        "test",
        model_for(assets, "xquad"),
        tokenizer,
        data_config(assets),
        InferenceSettings(max_length=64, doc_stride=16),
    )
    examples = rows(assets, "xquad", "en")
    assert prediction.labels == {r["id"]: r["answers"]["text"] for r in examples}
    assert set(prediction.predictions) == set(prediction.labels) and prediction.n_examples == len(examples)
    for r in examples:
        answer = prediction.predictions[r["id"]]
        assert answer and answer in r["context"]
    # the clustered bootstrap's paragraphs: two questions share a group exactly when they share a context
    ids = [r["id"] for r in examples]
    for i, first in enumerate(examples):
        for second in examples[i + 1 :]:
            same = prediction.groups[first["id"]] == prediction.groups[second["id"]]
            assert same == (first["context"] == second["context"])
    assert set(prediction.groups) == set(ids)


def test_a_head_of_another_task_is_refused(assets, tokenizer):
    with pytest.raises(ValueError, match="predicts 3 labels but the task has 7"):
        predict_split(get_task("panx"), "en", "test", model_for(assets, "xnli"), tokenizer, data_config(assets))


def test_examples_without_gold_labels_cannot_be_scored(assets, tokenizer, tmp_path):
    examples = rows(assets, "xcopa", "sw")[:4]
    examples[2]["label"] = -1
    write_rows(tmp_path / "data", "xcopa", "sw", examples)
    data = data_config(tmp_path, root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="1 of 4 examples have no gold label"):
        predict_split(get_task("xcopa"), "sw", "test", model_for(assets, "xcopa"), tokenizer, data)


def test_xlmr_inputs_hold_at_most_512_tokens(assets, tokenizer):
    assert input_limit(model_for(assets, "panx").config, tokenizer) == 512


def test_ccg_tags_follow_the_release_tag_map_and_unseen_dev_tags_count_as_errors(assets, tokenizer, tmp_path):
    """jiant scores CCG over its fixed supertag map; a dev tag the model cannot predict is an error, not
    a word left out of the accuracy."""
    from hpcxlt.data.features import tag_names
    from hpcxlt.model.heads import build_model

    spec = get_task("ccg")
    train = [{"tokens": ["Dogs", "bark"], "tags": ["N", "S\\NP"]}] * 3
    dev = [{"tokens": ["Cats", "sleep", "now"], "tags": ["N", "S\\NP", "(S\\NP)\\(S\\NP)"]}]
    write_rows(tmp_path, "ccg", "en", train, split="train")
    write_rows(tmp_path, "ccg", "en", dev, split="dev")
    cfg = data_config(assets, root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert tag_names(spec, cfg) == ("N", "S\\NP")  # from the training data
    (tmp_path / "ccg" / "tags_to_id.json").write_text(json.dumps({"S\\NP": 0, "N": 1, "NP": 2}))
    names = tag_names(spec, cfg)
    assert names == ("S\\NP", "N", "NP")  # the release's fixed map, in its id order
    import torch

    torch.manual_seed(0)
    model = build_model("tagging", str(assets / "tiny"), label_names=names).eval()
    prediction = predict_split(spec, "en", "dev", model, tokenizer, cfg)
    assert prediction.labels == [["N", "S\\NP", "(S\\NP)\\(S\\NP)"]]  # the unseen tag stays in the gold
    assert prediction.predictions[0][2] in names  # ... and no prediction can match it


# --------------------------------------------------------------------------------------------------
# Sharded between the ranks of a process group (a training job's dev evaluation)
# --------------------------------------------------------------------------------------------------
SHARDED_CASES = (("xnli", "en", 5), ("panx", "de", 7), ("xquad", "en", 3), ("xcopa", "sw", 64))
"""(task, language, batch size): batch counts odd, even and one batch for two ranks; every format."""


def _predictions(assets: Path, settings_of) -> tuple[dict, dict]:
    """Predictions of every SHARDED_CASES split, and the forward calls per split."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(assets / "tiny")
    predictions, forwards = {}, {}
    for task, lang, batch_size in SHARDED_CASES:
        model, calls = model_for(assets, task), []
        model.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        prediction = predict_split(
            get_task(task), lang, "test", model, tokenizer, data_config(assets), settings_of(batch_size)
        )
        predictions[task] = (prediction.labels, prediction.predictions)
        forwards[task] = len(calls)
    return predictions, forwards


def _sharded_rank(rank: int, world: int, assets: str, init_file: str, out: str) -> None:
    """One rank of a real gloo process group: sharded predictions, written to OUT/rank-R.pkl."""
    import pickle

    import torch

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = _predictions(
            Path(assets),
            lambda size: InferenceSettings(
                batch_size=size, max_length=64, doc_stride=16, sharded=True, inference_mode=False
            ),
        )
    finally:
        torch.distributed.destroy_process_group()
    Path(out, f"rank-{rank}.pkl").write_bytes(pickle.dumps(result))


def test_sharded_ranks_each_get_every_prediction_of_one_process_with_equal_forward_counts(assets, tmp_path):
    import math
    import pickle

    import torch.multiprocessing as mp

    single, single_forwards = _predictions(
        assets, lambda size: InferenceSettings(batch_size=size, max_length=64, doc_stride=16)
    )
    mp.spawn(_sharded_rank, args=(2, str(assets), str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [pickle.loads((tmp_path / f"rank-{rank}.pkl").read_bytes()) for rank in (0, 1)]
    for predictions, forwards in ranks:
        assert predictions == single  # every rank: all of them, in input order
        # each rank half the batches (rounded up: the rank with fewer repeats one), together no more than one process
        assert forwards == {task: math.ceil(n / 2) for task, n in single_forwards.items()}
    assert single_forwards["xcopa"] == 1 and single_forwards["xnli"] % 2 == 1  # both uneven cases happened
