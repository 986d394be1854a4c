"""Multi-task batch sampling: which (task, language) stream the next batch comes from, and from where in it.

One shared encoder, one head per task: every micro-batch comes from one stream (task x language) so
it goes through one head. The stream is drawn by a rule over stream sizes n_i:
  proportional  p_i ~ n_i
  temperature   p_i ~ n_i ** (1/T)   (T=1 is proportional; T -> inf approaches uniform; Arivazhagan
                                       et al. 2019 / XLM-R and mT5 use this for languages)
  uniform       p_i = 1 / #streams
  weights       p_i ~ w(task:lang), or w(task) split over the task's languages by size
The draw for micro-batch k uses a generator seeded by (seed, k), identical in every rank, so all
ranks use the same head at the same time (required under ZeRO-3, where every rank must run the same
modules) and resuming needs only the draw counter. Within a stream, global batches come in a
length-grouped order per epoch; each rank takes every world_size-th example of the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpcxlt.config import SamplingConfig


def stream_key(task: str, lang: str) -> str:
    return f"{task}:{lang}"


def stream_probabilities(sizes: Mapping[str, int], sampling: SamplingConfig) -> dict[str, float]:
    """Sampling probability per stream ('task:lang' -> p), by the configured rule; keys keep their order."""
    if not sizes:
        raise ValueError("no training streams: every task/language of the arm has zero examples")
    for key, size in sizes.items():
        if ":" not in key:
            raise ValueError(f"stream key {key!r} must read 'task:lang'")
        if size <= 0:
            raise ValueError(f"stream {key!r} has no training examples")
    rule = sampling.rule
    if rule == "proportional":
        raw = {k: float(n) for k, n in sizes.items()}
    elif rule == "temperature":
        raw = {k: float(n) ** (1.0 / sampling.temperature) for k, n in sizes.items()}
    elif rule == "uniform":
        raw = {k: 1.0 for k in sizes}
    elif rule == "weights":
        raw = _weights(sizes, sampling.weights)
    else:
        raise ValueError(f"sampling.rule {rule!r} is not one of proportional, temperature, uniform, weights")
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"sampling.weights give every stream weight 0 (streams: {', '.join(sizes)})")
    return {k: v / total for k, v in raw.items()}


def _weights(sizes: Mapping[str, int], weights: Mapping[str, float]) -> dict[str, float]:
    tasks = {k.split(":", 1)[0] for k in sizes}
    for key in weights:
        if key not in sizes and key not in tasks:
            raise ValueError(
                f"sampling.weights.{key}: names no stream of this arm; use a task ({', '.join(sorted(tasks))}) "
                f"or task:lang ({', '.join(sizes)})"
            )
    raw = {}
    for key, size in sizes.items():
        task = key.split(":", 1)[0]
        if key in weights:
            raw[key] = float(weights[key])
        elif task in weights:
            task_total = sum(n for k, n in sizes.items() if k.split(":", 1)[0] == task and k not in weights)
            raw[key] = float(weights[task]) * size / task_total
        else:
            raw[key] = 0.0
    return raw


@dataclass(kw_only=True)
class Stream:
    """One (task, language) source of training batches."""

    task: str
    """Task name (selects the head)."""
    lang: str
    """Language code."""
    dataset: Any
    """Indexable features: dataset[i] -> dict of model inputs (a datasets.Dataset or a list)."""
    epoch_batches: Callable[[int], Sequence[Sequence[int]]]
    """epoch -> the global batches of that epoch (lists of dataset indices; same in every rank)."""
    collate: Callable[[list[dict]], dict]
    """Examples -> a padded batch of tensors."""
    size: int = field(default=-1)
    """Number of examples (defaults to len(dataset))."""

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = len(self.dataset)

    @property
    def key(self) -> str:
        return stream_key(self.task, self.lang)


class Mixture:
    """Draws micro-batches from streams; its state (draws, per-stream epoch/position, counts) resumes exactly."""

    def __init__(
        self,
        streams: Sequence[Stream],
        probabilities: Mapping[str, float],
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        rule: str = "proportional",
    ):
        self.streams = {s.key: s for s in streams}
        if len(self.streams) != len(streams):
            raise ValueError("two streams share a task:lang key")
        missing = set(self.streams) ^ set(probabilities)
        if missing:
            raise ValueError(f"streams and probabilities disagree on {sorted(missing)}")
        self.keys = list(self.streams)
        self.p = np.array([probabilities[k] for k in self.keys], dtype=np.float64)
        self.probabilities = dict(zip(self.keys, self.p.tolist()))
        self.seed, self.rank, self.world_size, self.rule = seed, rank, world_size, rule
        self.draws = 0
        self.position = {k: {"epoch": 0, "position": 0} for k in self.keys}
        self.counts = {k: {"batches": 0, "examples": 0} for k in self.keys}
        self._order: dict[str, tuple[int, Sequence[Sequence[int]]]] = {}

    def _choose(self) -> str:
        if len(self.keys) == 1:
            return self.keys[0]
        rng = np.random.default_rng([self.seed, self.draws])
        return self.keys[int(rng.choice(len(self.keys), p=self.p))]

    def _epoch(self, key: str, epoch: int) -> Sequence[Sequence[int]]:
        cached = self._order.get(key)
        if cached is None or cached[0] != epoch:
            batches = [b for b in self.streams[key].epoch_batches(epoch) if len(b) >= self.world_size]
            if not batches:
                raise ValueError(
                    f"stream {key}: an epoch yields no batch with at least {self.world_size} examples "
                    f"({self.streams[key].size} examples); it is too small for this many processes"
                )
            self._order[key] = cached = (epoch, batches)
        return cached[1]

    def next(self) -> tuple[Stream, dict]:
        """The next micro-batch of this rank: (its stream, collated batch)."""
        key = self._choose()
        pos = self.position[key]
        batches = self._epoch(key, pos["epoch"])
        if pos["position"] >= len(batches):
            pos["epoch"], pos["position"] = pos["epoch"] + 1, 0
            batches = self._epoch(key, pos["epoch"])
        global_batch = batches[pos["position"]]
        pos["position"] += 1
        self.draws += 1
        self.counts[key]["batches"] += 1
        self.counts[key]["examples"] += len(global_batch)
        stream = self.streams[key]
        local = list(global_batch)[self.rank :: self.world_size]
        return stream, stream.collate([stream.dataset[int(i)] for i in local])

    def state_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "seed": self.seed,
            "draws": self.draws,
            "streams": {k: dict(v) for k, v in self.position.items()},
            "counts": {k: dict(v) for k, v in self.counts.items()},
            "probabilities": dict(self.probabilities),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state["streams"]) != set(self.keys):
            raise ValueError(
                f"checkpoint data state has streams {sorted(state['streams'])}, this run has {sorted(self.keys)}"
            )
        self.draws = int(state["draws"])
        self.position = {
            k: {"epoch": int(v["epoch"]), "position": int(v["position"])} for k, v in state["streams"].items()
        }
        self.counts = {
            k: {"batches": int(v["batches"]), "examples": int(v["examples"])} for k, v in state["counts"].items()
        }

    def realized(self) -> dict[str, float]:
        """Share of drawn batches per stream so far."""
        return realized_shares(self.counts)

    def task_counts(self) -> dict[str, int]:
        """Batches drawn per task (summed over languages)."""
        out: dict[str, int] = {}
        for key, c in self.counts.items():
            task = key.split(":", 1)[0]
            out[task] = out.get(task, 0) + c["batches"]
        return out


def realized_shares(counts: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Share of batches per stream, from Mixture-style counts {key: {"batches": n, ...}}."""
    total = sum(c["batches"] for c in counts.values())
    return {k: (c["batches"] / total if total else 0.0) for k, c in counts.items()}


def epochs_to_steps(sizes: Mapping[str, int], *, epochs: float, global_batch: int, grad_accum: int) -> int:
    """Optimizer steps for `epochs` passes over the data (whatever the sampling rule).

    One 'epoch' is as many examples as all streams hold together; `global_batch` is the examples of
    one micro-step over all ranks (micro-batch x world size), `grad_accum` micro-steps make a step.
    """
    total = sum(sizes.values())
    micro_batches = math.ceil(epochs * total / global_batch)
    return max(1, math.ceil(micro_batches / grad_accum))
