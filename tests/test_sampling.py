"""Multi-task sampling rules, realized proportions, per-rank batch slices and exact resume of the data position."""

from __future__ import annotations

import math
import random

import pytest

from hpcxlt.config import SamplingConfig
from hpcxlt.train.sampling import Mixture, Stream, epochs_to_steps, stream_probabilities

SIZES = {"mnli:en": 8000, "mnli:sw": 500, "squad:en": 2000, "squad:yo": 125}


def test_proportional_and_uniform():
    p = stream_probabilities(SIZES, SamplingConfig(rule="proportional"))
    assert p["mnli:en"] == pytest.approx(8000 / 10625)
    assert list(p) == list(SIZES)
    u = stream_probabilities(SIZES, SamplingConfig(rule="uniform"))
    assert set(u.values()) == {0.25}


def test_temperature_flattens_towards_uniform():
    p1 = stream_probabilities(SIZES, SamplingConfig(rule="temperature", temperature=1.0))
    p2 = stream_probabilities(SIZES, SamplingConfig(rule="temperature", temperature=2.0))
    p100 = stream_probabilities(SIZES, SamplingConfig(rule="temperature", temperature=100.0))
    assert p1 == pytest.approx(stream_probabilities(SIZES, SamplingConfig(rule="proportional")))
    # p ~ n^(1/2): sqrt(8000) / sqrt(125) = 8
    assert p2["mnli:en"] / p2["squad:yo"] == pytest.approx(8.0)
    assert p1["squad:yo"] < p2["squad:yo"] < p100["squad:yo"] < 0.25 + 1e-9
    assert max(p100.values()) - min(p100.values()) < 0.02


def test_fixed_weights_per_task_split_by_size_or_per_stream():
    p = stream_probabilities(SIZES, SamplingConfig(rule="weights", weights={"mnli": 3.0, "squad:yo": 1.0}))
    assert p["squad:en"] == 0.0
    assert p["squad:yo"] == pytest.approx(0.25)
    assert p["mnli:en"] == pytest.approx(0.75 * 8000 / 8500)
    with pytest.raises(ValueError, match=r"sampling.weights.xnli: names no stream"):
        stream_probabilities(SIZES, SamplingConfig(rule="weights", weights={"xnli": 1.0}))
    with pytest.raises(ValueError, match="weight 0"):
        stream_probabilities(SIZES, SamplingConfig(rule="weights", weights={"mnli": 0.0}))


def test_empty_streams_are_refused_by_name():
    with pytest.raises(ValueError, match="squad:yo"):
        stream_probabilities({**SIZES, "squad:yo": 0}, SamplingConfig())


def _streams(sizes: dict[str, int], batch: int) -> list[Stream]:
    streams = []
    for key, size in sizes.items():
        task, lang = key.split(":")
        rows = [{"id": f"{key}#{i}"} for i in range(size)]

        def epoch_batches(epoch: int, size: int = size, key: str = key) -> list[list[int]]:
            order = list(range(size))
            random.Random(f"{key}/{epoch}").shuffle(order)
            return [order[i : i + batch] for i in range(0, size, batch)]

        streams.append(
            Stream(
                task=task,
                lang=lang,
                dataset=rows,
                epoch_batches=epoch_batches,
                collate=lambda rows: {"ids": [r["id"] for r in rows]},
            )
        )
    return streams


def test_two_tasks_two_languages_temperature_mix_realizes_the_rule():
    sizes = {"nli:en": 4000, "nli:sw": 250, "qa:en": 1000, "qa:yo": 60}
    rule = SamplingConfig(rule="temperature", temperature=2.0)
    p = stream_probabilities(sizes, rule)
    mixture = Mixture(_streams(sizes, batch=4), p, seed=3, rule="temperature")
    draws = 4000
    for _ in range(draws):
        mixture.next()
    realized = mixture.realized()
    for key, prob in p.items():
        sigma = math.sqrt(prob * (1 - prob) / draws)
        assert abs(realized[key] - prob) < 4 * sigma + 1e-3, (key, realized[key], prob)
    assert mixture.task_counts() == {
        "nli": mixture.counts["nli:en"]["batches"] + mixture.counts["nli:sw"]["batches"],
        "qa": mixture.counts["qa:en"]["batches"] + mixture.counts["qa:yo"]["batches"],
    }
    # temperature up-samples the small streams: qa:yo (60 examples) went round many more epochs than nli:en
    epochs = {k: v["epoch"] for k, v in mixture.state_dict()["streams"].items()}
    assert epochs["qa:yo"] > 5 * max(1, epochs["nli:en"])


def test_ranks_draw_the_same_stream_and_split_each_global_batch():
    sizes = {"a:en": 40, "b:de": 24}
    p = stream_probabilities(sizes, SamplingConfig(rule="uniform"))
    ranks = [Mixture(_streams(sizes, batch=4), p, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(30):
        (s0, b0), (s1, b1) = (m.next() for m in ranks)
        assert s0.key == s1.key
        assert len(b0["ids"]) == len(b1["ids"]) == 2 and not set(b0["ids"]) & set(b1["ids"])


def test_every_example_once_per_epoch():
    sizes = {"a:en": 12}
    mixture = Mixture(_streams(sizes, batch=4), {"a:en": 1.0}, seed=0)
    seen = [i for _ in range(3) for i in mixture.next()[1]["ids"]]
    assert sorted(seen) == sorted(f"a:en#{i}" for i in range(12))
    assert mixture.state_dict()["streams"]["a:en"] == {"epoch": 0, "position": 3}
    mixture.next()
    assert mixture.state_dict()["streams"]["a:en"] == {"epoch": 1, "position": 1}


def test_resume_from_state_continues_the_exact_sequence():
    sizes = {"nli:en": 50, "nli:sw": 9, "qa:en": 30}
    p = stream_probabilities(sizes, SamplingConfig(rule="temperature", temperature=3.0))
    straight = Mixture(_streams(sizes, batch=4), p, seed=5)
    expected = [straight.next()[1]["ids"] for _ in range(60)]

    first = Mixture(_streams(sizes, batch=4), p, seed=5)
    got = [first.next()[1]["ids"] for _ in range(23)]
    state = first.state_dict()
    resumed = Mixture(_streams(sizes, batch=4), p, seed=5)
    resumed.load_state_dict(state)
    got += [resumed.next()[1]["ids"] for _ in range(37)]
    assert got == expected  # no batch seen twice, none skipped
    assert resumed.counts == straight.counts

    with pytest.raises(ValueError, match="streams"):
        Mixture(_streams({"nli:en": 50}, batch=4), {"nli:en": 1.0}, seed=5).load_state_dict(state)


def test_stream_too_small_for_the_world_is_a_clear_error():
    mixture = Mixture(_streams({"a:en": 1}, batch=4), {"a:en": 1.0}, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="a:en.*too small"):
        mixture.next()


def test_epochs_to_steps():
    assert epochs_to_steps({"a:en": 1000, "b:en": 600}, epochs=2, global_batch=32, grad_accum=2) == 50
    assert epochs_to_steps({"a:en": 3}, epochs=1, global_batch=32, grad_accum=8) == 1
