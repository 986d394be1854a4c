"""Micro-batches prepared ahead of the training step, in a background thread.

The thread draws batches from the `Mixture` in the same order the loop would (so training is unchanged
bit for bit), collates them, counts their tokens on the host, and pins their memory when the model is
on a GPU, so `Engine.to_device`'s non-blocking copy overlaps the previous step's kernels instead of
waiting for them. The loop reads the *consumed* data state from here: a checkpoint written while batches
wait in the queue records the position after the last batch trained on, and a resumed run draws the
waiting batches again.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

import torch

from hpcxlt.train.sampling import Mixture, Stream, realized_shares


@dataclass(frozen=True)
class Prepared:
    """One micro-batch and what the loop needs about it without touching the device."""

    stream: Stream
    batch: dict[str, Any]
    tokens: int
    """Non-padding tokens (the sum of every *attention_mask), counted on the host."""
    examples: int
    """Rows in this rank's batch."""
    data_state: dict[str, Any]
    """Mixture.state_dict() right after this batch was drawn."""


def count_tokens(batch: dict[str, Any]) -> int:
    """Non-padding tokens of a collated batch: attention_mask, or query_/cand_attention_mask of retrieval pairs."""
    return sum(int(v.sum()) for k, v in batch.items() if k.endswith("attention_mask") and torch.is_tensor(v))


def _prepare(mixture: Mixture, pin: bool) -> Prepared:
    stream, batch = mixture.next()
    if pin:
        batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
    return Prepared(
        stream=stream,
        batch=batch,
        tokens=count_tokens(batch),
        examples=len(next(iter(batch.values()))),
        data_state=mixture.state_dict(),
    )


class Prefetcher:
    """Iterator over Prepared batches, `depth` of them drawn ahead (0: drawn in the caller's thread)."""

    def __init__(self, mixture: Mixture, *, depth: int = 2, pin: bool = False) -> None:
        self.mixture, self.depth, self.pin = mixture, depth, pin
        self.consumed = mixture.state_dict()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._thread = threading.Thread(target=self._produce, name="hpcxlt-prefetch", daemon=True)
            self._thread.start()

    def _produce(self) -> None:
        while not self._stop.is_set():
            try:
                item: Any = _prepare(self.mixture, self.pin)
            except BaseException as err:  # noqa: BLE001 - re-raised in the training thread
                item = err
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def next(self) -> Prepared:
        if self._thread is None:
            item = _prepare(self.mixture, self.pin)
        else:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
        self.consumed = item.data_state
        return item

    def state_dict(self) -> dict[str, Any]:
        """The data state after the last batch handed out (what a checkpoint must record)."""
        return self.consumed

    def counts(self) -> dict[str, dict[str, int]]:
        return self.consumed["counts"]

    def realized(self) -> dict[str, float]:
        return realized_shares(self.counts())

    def close(self) -> None:
        """Stop the thread (batches drawn ahead are dropped; `consumed` stays exact)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
