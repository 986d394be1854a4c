import pytest
import torch

from hpcxlt.data.collate import LengthGroupedBatchSampler, PadCollator, model_inputs


def test_pads_each_column_to_the_longest_in_the_batch_with_its_own_value():
    collate = PadCollator(pad_token_id=1)
    batch = collate(
        [
            {"input_ids": [0, 5, 2], "attention_mask": [1, 1, 1], "labels": [-100, 3, -100], "example_id": "a"},
            {"input_ids": [0, 2], "attention_mask": [1, 1], "labels": [-100, -100], "example_id": "b"},
        ]
    )
    assert batch["input_ids"].tolist() == [[0, 5, 2], [0, 2, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 3, -100], [-100, -100, -100]]
    assert batch["example_id"] == ["a", "b"]  # bookkeeping passes through
    assert set(model_inputs(batch)) == {"input_ids", "attention_mask", "labels"}


def test_multiple_of_8_choices_and_retrieval_sides():
    collate = PadCollator(pad_token_id=1, pad_to_multiple_of=8)
    batch = collate(
        [
            {"input_ids": [[0, 4, 2], [0, 2]], "attention_mask": [[1, 1, 1], [1, 1]], "labels": 1},
            {"input_ids": [[0, 2], [0, 6, 7, 8, 9, 2]], "attention_mask": [[1, 1], [1] * 6], "labels": 0},
        ]
    )
    assert batch["input_ids"].shape == (2, 2, 8) and batch["labels"].tolist() == [1, 0]
    assert batch["attention_mask"][0, 1].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    pairs = PadCollator(pad_token_id=1)(
        [
            {
                "query_input_ids": [0, 2],
                "query_attention_mask": [1, 1],
                "cand_input_ids": [0, 3, 4, 2],
                "cand_attention_mask": [1] * 4,
            },
            {
                "query_input_ids": [0, 5, 2],
                "query_attention_mask": [1] * 3,
                "cand_input_ids": [0, 2],
                "cand_attention_mask": [1, 1],
            },
        ]
    )
    assert pairs["query_input_ids"].shape == (2, 3) and pairs["cand_input_ids"].shape == (
        2,
        4,
    )  # each side its own length
    assert pairs["cand_input_ids"][1].tolist() == [0, 2, 1, 1]
    with pytest.raises(ValueError):
        PadCollator(pad_token_id=1, pad_to_multiple_of=0)


LENGTHS = [(i * 37) % 101 + 1 for i in range(500)]


def test_batches_cover_every_index_once_and_group_similar_lengths():
    sampler = LengthGroupedBatchSampler(LENGTHS, 16, seed=3, megabatch_batches=8)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(500))
    padded = sum(len(b) * max(LENGTHS[i] for i in b) for b in batches)
    # Random batches of the same size pad far more.
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(500, generator=generator).tolist()
    random_padded = sum(16 * max(LENGTHS[i] for i in order[j : j + 16]) for j in range(0, 500, 16))
    assert padded < 0.8 * random_padded
    assert batches != sorted(batches, key=lambda b: -max(LENGTHS[i] for i in b))  # batch order shuffled


def test_deterministic_per_seed_and_epoch_and_advances_epochs():
    a = LengthGroupedBatchSampler(LENGTHS, 16, seed=1)
    b = LengthGroupedBatchSampler(LENGTHS, 16, seed=1)
    assert list(a) == list(b)
    assert a.state_dict() == {"epoch": 1, "position": 0}  # a finished epoch moves on
    assert list(a) != list(LengthGroupedBatchSampler(LENGTHS, 16, seed=1))  # epoch 1 differs from epoch 0
    assert list(LengthGroupedBatchSampler(LENGTHS, 16, seed=2)) != list(LengthGroupedBatchSampler(LENGTHS, 16, seed=1))


def test_resume_from_state_skips_exactly_what_was_seen():
    full = LengthGroupedBatchSampler(LENGTHS, 16, seed=5)
    full.set_epoch(2)
    expected = list(full)
    first = LengthGroupedBatchSampler(LENGTHS, 16, seed=5)
    first.set_epoch(2)
    seen = []
    for batch in first:
        seen.append(batch)
        if len(seen) == 7:
            break
    state = first.state_dict()
    assert state == {"epoch": 2, "position": 7}
    resumed = LengthGroupedBatchSampler(LENGTHS, 16, seed=5)
    resumed.load_state_dict(state)
    assert len(resumed) == len(expected) - 7
    assert seen + list(resumed) == expected
    with pytest.raises(ValueError):
        resumed.load_state_dict({"epoch": 0, "position": -1})


def test_replicas_split_global_batches_evenly_and_resume_together():
    world = [LengthGroupedBatchSampler(LENGTHS, 16, seed=0, num_replicas=3, rank=r) for r in range(3)]
    streams = [list(s) for s in world]
    assert len({len(s) for s in streams}) == 1  # every rank takes the same number of steps
    globals_ = LengthGroupedBatchSampler(LENGTHS, 16, seed=0, num_replicas=3).epoch_batches(0)
    assert [streams[g % 3][g // 3] for g in range(len(globals_))] == globals_
    flat = [i for s in streams for b in s for i in b]
    assert len(flat) == len(set(flat))  # no index on two ranks
    rank1 = LengthGroupedBatchSampler(LENGTHS, 16, seed=0, num_replicas=3, rank=1)
    rank1.load_state_dict({"epoch": 0, "position": 6})  # two steps done by every rank
    assert list(rank1) == streams[1][2:]
    with pytest.raises(ValueError, match="multiple of num_replicas"):
        rank1.load_state_dict({"epoch": 0, "position": 5})


def test_drop_last_and_no_shuffle():
    sampler = LengthGroupedBatchSampler(list(range(1, 21)), 6, shuffle=False, drop_last=True, megabatch_batches=10)
    batches = list(sampler)
    assert [len(b) for b in batches] == [6, 6, 6]
    assert batches[0] == [19, 18, 17, 16, 15, 14]  # longest first within the megabatch
