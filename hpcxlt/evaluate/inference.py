"""The batch machinery of inference, shared by every format's prediction and by retrieval.

    InferenceSettings     how a split is featurized and batched
    Prediction            gold labels and predictions of one language split, in the submission format
    run_batches(...)      length-grouped batches through a model, outputs back in input order (optionally
                          split between the ranks of a process group)

`hpcxlt.evaluate.predict` (classification, multiple choice, tagging, QA) and `hpcxlt.evaluate.retrieval`
both build on it; neither imports the other's module for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from hpcxlt.data.collate import PadCollator
from hpcxlt.data.featurize import feature_lengths

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("input_ids", "attention_mask")
"""The feature columns a forward pass reads; labels stay on the host (no loss is computed)."""


@dataclass(frozen=True, kw_only=True)
class InferenceSettings:
    """How one language split is featurized and batched."""

    batch_size: int = 64
    """Examples per forward pass (multiple choice: examples, each with all its choices)."""
    max_length: int = 128
    """Tokens per input (QA: per window); tagging uses the model's whole length so every word gets a tag."""
    doc_stride: int = 32
    """Overlap of QA context windows, in tokens."""
    retrieval_layer: int = -1
    """Hidden layer whose mean-pooled states embed retrieval queries and candidates."""
    sort_by_length: bool = True
    """Group batches by length (False: batches in input order, for comparisons and benchmarks)."""
    inference_mode: bool = True
    """torch.inference_mode (False: no_grad, for a model still in training: ZeRO-3 gathers its parameters
    into buffers that later training steps write, and inference tensors refuse that)."""
    sharded: bool = False
    """Split the batches between the ranks of the process group and gather the outputs on every rank
    (a training job's dev evaluation); without a process group of more than one rank, no effect."""

    def check(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {self.batch_size}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8, got {self.max_length}")


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """Gold labels and predictions of one language split, in the official submission format."""

    task: str
    """Target task."""
    lang: str
    """Language."""
    split: str
    """'dev' or 'test'."""
    labels: Any
    """What `submission.read_labels` returns for the task (class names, tag lists, {qid: answers}, ...)."""
    predictions: Any
    """What `submission.read_predictions` returns (class names, tag lists, {qid: answer}, rankings, ...)."""
    n_examples: int
    """Scored examples (sentences, questions, queries)."""
    groups: dict[str, str] | None = None
    """QA: question id -> its paragraph (the order its context first appears), for the clustered bootstrap."""
    notes: tuple[str, ...] = field(default=())
    """Things worth a line in the log (words without a prediction, queries without a relevant candidate)."""


# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------
def length_batches(lengths: Sequence[int], batch_size: int, *, sort_by_length: bool = True) -> list[list[int]]:
    """Index batches covering every position once: longest first when `sort_by_length` (equal
    lengths keep input order), else consecutive slices in input order."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    order = list(range(len(lengths)))
    if sort_by_length:
        order.sort(key=lambda i: -lengths[i])  # list.sort is stable
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def device_of(model) -> torch.device:
    """The device of the model's parameters."""
    return next(model.parameters()).device


def autocast_for(device: torch.device):
    """bf16 autocast on GPUs that have it (fp16 on older ones); plain fp32 on the CPU."""
    if device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _rows(features, index: list[int], columns: Sequence[str]) -> list[dict]:
    block = features.select_columns(list(columns))[index]  # one Arrow gather per batch
    names = list(block)
    return [dict(zip(names, values)) for values in zip(*(block[n] for n in names))]


def run_batches(
    model,
    features,
    forward: Callable[[Any, dict], Sequence[Any]],
    *,
    batch_size: int,
    pad_token_id: int,
    sort_by_length: bool = True,
    columns: Sequence[str] = INPUT_COLUMNS,
    lengths: Sequence[int] | None = None,
    inference_mode: bool = True,
    sharded: bool = False,
) -> list[Any]:
    """`forward(model, batch)` over every feature row in batches; its per-example outputs in input order.

    `features` is a `datasets.Dataset`; `batch` holds the padded `columns` as tensors on the model's
    device; `forward` returns one output per row of the batch (moved to the host by the caller's
    choice). `lengths` defaults to `hpcxlt.data.featurize.feature_lengths(features)`. `sharded`: see
    `InferenceSettings.sharded`; every rank returns every output.
    """

    if len(features) == 0:
        return []
    device = device_of(model)
    collate = PadCollator(pad_token_id, pad_to_multiple_of=8 if device.type == "cuda" else None)
    lengths = feature_lengths(features) if lengths is None else lengths
    batches = length_batches(lengths, batch_size, sort_by_length=sort_by_length)
    rank, world = _group() if sharded else (0, 1)
    # round robin over length-sorted batches: each rank gets long and short ones alike
    mine = batches[rank::world]
    # every rank runs the same number of forwards, repeating one of its own batches where it has fewer:
    # under ZeRO-3 each forward gathers the parameters collectively, so the ranks' forwards must pair up
    rounds = -(-len(batches) // world)
    outputs: dict[int, Any] = {}
    grad_off = torch.inference_mode() if inference_mode else torch.no_grad()
    with grad_off, autocast_for(device):
        for number in range(rounds):
            index = mine[number] if number < len(mine) else (mine or batches)[0]
            batch = collate(_rows(features, index, columns))
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            results = forward(model, batch)
            if len(results) != len(index):
                raise RuntimeError(f"forward returned {len(results)} outputs for a batch of {len(index)}")
            if number < len(mine):
                outputs.update(zip(index, results))
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, outputs)
        for part in gathered:
            outputs.update(part)
    return [outputs[i] for i in range(len(features))]


def _group() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# --------------------------------------------------------------------------------------------------
# Forward functions: one output per example, on the host
# --------------------------------------------------------------------------------------------------


__all__ = [
    "INPUT_COLUMNS",
    "InferenceSettings",
    "Prediction",
    "autocast_for",
    "device_of",
    "length_batches",
    "run_batches",
]
