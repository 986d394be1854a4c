"""Batching: dynamic padding, and length-grouped batches that resume exactly where they stopped.

`PadCollator` pads each batch to its own longest sequence (optionally rounded up to a multiple of
8 for tensor cores). `LengthGroupedBatchSampler` draws megabatches of K batches at random, sorts
each by length (so a batch holds similar lengths and little padding), and shuffles the batches;
its state is two plain numbers {epoch, position} and a resumed run skips exactly the batches the
interrupted run had already drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from hpcxlt.data.featurize import MODEL_INPUTS

PAD_VALUES = {"input_ids": None, "attention_mask": 0, "token_type_ids": 0, "labels": -100, "word_index": -1}
"""Sequence columns and their padding value (None: the tokenizer's pad id); other columns are
stacked as tensors when they are numbers, else passed through as lists."""


def _pad_value(key: str, pad_token_id: int) -> int | None:
    base = key.split("_", 1)[1] if key.startswith(("query_", "cand_")) else key
    if base not in PAD_VALUES:
        return None
    value = PAD_VALUES[base]
    return pad_token_id if value is None else value


class PadCollator:
    """Pads a list of feature dicts into a batch of tensors (torch.long)."""

    def __init__(self, pad_token_id: int, *, pad_to_multiple_of: int | None = None):
        if pad_to_multiple_of is not None and pad_to_multiple_of <= 0:
            raise ValueError(f"pad_to_multiple_of must be > 0, got {pad_to_multiple_of}")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def _target(self, length: int) -> int:
        if self.pad_to_multiple_of:
            return int(math.ceil(length / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        return length

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch  # heavy: torch

        if not features:
            raise ValueError("cannot collate an empty batch")
        batch: dict[str, Any] = {}
        for key in features[0]:
            values = [f[key] for f in features]
            pad = _pad_value(key, self.pad_token_id)
            first = values[0]
            if pad is not None and isinstance(first, (list, tuple)) and first and isinstance(first[0], (list, tuple)):
                # Multiple choice: [n_choices][len] per example -> (batch, n_choices, longest).
                longest = self._target(max(len(seq) for v in values for seq in v))
                batch[key] = torch.tensor(
                    [[list(seq) + [pad] * (longest - len(seq)) for seq in v] for v in values], dtype=torch.long
                )
            elif pad is not None and isinstance(first, (list, tuple)):
                longest = self._target(max(len(v) for v in values))
                batch[key] = torch.tensor([list(v) + [pad] * (longest - len(v)) for v in values], dtype=torch.long)
            elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                batch[key] = torch.tensor(values)
            else:
                batch[key] = values  # bookkeeping (example ids, offsets, retrieval keys)
        return batch


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """Only the tensors a model's forward takes (drops evaluation bookkeeping)."""

    return {k: v for k, v in batch.items() if k in MODEL_INPUTS}


class LengthGroupedBatchSampler:
    """Batches of indices with similar lengths; deterministic given (seed, epoch); resumable.

    `position` counts global batches already handed out in the current epoch. With several
    processes (num_replicas > 1), every epoch's batch list is cut to a multiple of num_replicas and
    global batch g goes to rank g % num_replicas, so all ranks take the same number of steps.
    Iterating to the end of an epoch moves to the next epoch (position 0). State: {epoch, position}.
    Hand-out is counted when a batch is yielded: with a DataLoader that prefetches (num_workers > 0),
    save `{"epoch": e, "position": batches_you_trained_on * num_replicas}` instead of state_dict().
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        megabatch_batches: int = 50,
        shuffle: bool = True,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if megabatch_batches <= 0:
            raise ValueError(f"megabatch_batches must be > 0, got {megabatch_batches}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.megabatch_batches = megabatch_batches
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.position = 0
        self._cached: tuple[int, list[list[int]]] | None = None

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Every global batch of an epoch, in order."""
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._draw(epoch))
        return self._cached[1]

    def _draw(self, epoch: int) -> list[list[int]]:
        import numpy as np  # heavy: numpy

        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        lengths = np.asarray(self.lengths)
        size = self.batch_size * self.megabatch_batches
        batches: list[list[int]] = []
        for start in range(0, len(order), size):
            mega = order[start : start + size]
            mega = mega[np.argsort(-lengths[mega], kind="stable")]
            batches += [mega[i : i + self.batch_size].tolist() for i in range(0, len(mega), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches[: len(batches) // self.num_replicas * self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.epoch_batches(self.epoch)
        while self.position < len(batches):
            batch = batches[self.position + self.rank]
            self.position += self.num_replicas
            yield batch
        self.epoch += 1
        self.position = 0

    def __len__(self) -> int:
        """Batches this rank still gets in the current epoch."""
        return (len(self.epoch_batches(self.epoch)) - self.position) // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Start `epoch` from its beginning (no-op for the epoch in progress)."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or position < 0 or position % self.num_replicas:
            raise ValueError(
                f"sampler state {state} is invalid for num_replicas={self.num_replicas} "
                "(epoch and position must be >= 0, position a multiple of num_replicas)"
            )
        self.epoch, self.position = epoch, position
