"""train_log.jsonl: one JSON object per line, written by rank 0 (the loop's log steps and events), and the
peak memory each log step records. Read back by `hpcxlt status --watch` and the experiment trackers.
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch

from hpcxlt.io import write_text_atomic
from hpcxlt.train import dist


class TrainLog:
    """train_log.jsonl, written by rank 0; on resume, records after the checkpoint's step are dropped.

    `sink(record)` (rank 0) sees every record after it is written: the experiment trackers (train/tracking.py).
    """

    def __init__(self, path: Path, sink: Callable[[dict], None] | None = None):
        self.path = Path(path)
        self.sink = sink

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
        return out

    def truncate_after(self, step: int) -> None:
        if not dist.is_main():
            return
        kept = [r for r in self.records() if r.get("step", 0) <= step and r.get("event") != "end"]
        write_text_atomic(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        if not dist.is_main():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {**record, "time": round(time.time(), 3)}  # wall clock: `hpcxlt status --watch` estimates ETAs
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
        if self.sink is not None:
            self.sink(record)


def peak_memory() -> dict[str, float]:
    """This rank's peak memory so far, in GiB: resident (the process; Linux reports KiB) and, on CUDA, the
    largest allocated and reserved. Logged at every log step so a cell's memory can be read off its log."""
    out = {"peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda_peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        out["cuda_peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    return out
