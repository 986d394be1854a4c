"""Per-cell state from two kinds of files, so that a submission writes one file and not one per cell.

- `submissions/<n>.json`: what one submission (a `submit`, a `resume`, a wave) put in the queue: for each
  cell, its Slurm job id and array. Written once, atomically and never replaced, by the submitting
  command while it holds the run directory's lock.
- `cells/<key>/state.json`: what happened to the cell since: running, failed, requeued. Written by the
  job on its node (or by the local executor), one cell at a time.

A cell's state is its own file unless a newer submission names it. Each state file says which
submission it continues (`submission`); a record with a higher number means the cell was submitted
again since: its state is `submitted` with the new job id, the requeue count and the last error reset,
everything else kept. Numbers decide, not clocks: login and compute nodes need not agree on the time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Set
from pathlib import Path
from typing import Any, NamedTuple

from hpcxlt.grid.plan import key_stage
from hpcxlt.io import read_json, write_json_atomic

STATES = ("pending", "submitted", "running", "done", "failed", "cancelled")
SUBMISSIONS_DIR = "submissions"
JOB_ID_FIELD = "{job_id}"
"""Placeholder in a record's log pattern for the job id (the log's name holds it)."""


class Submitted(NamedTuple):
    """One cell's entry in the newest submission record that names it."""

    seq: int
    job_id: str
    array: str
    submitted: float
    log: str


class CellStates:
    """Reads and writes the state of the cells of one run directory."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._cells = str(self.root / "cells")
        self._names: list[str] | None = None
        self._index: dict[str, Submitted] = {}
        self._records: dict[str, dict[str, Any]] = {}  # record name -> its content (records never change)

    @property
    def submissions_dir(self) -> Path:
        return self.root / SUBMISSIONS_DIR

    def path(self, key: str) -> Path:
        return self.root / "cells" / key / "state.json"

    # -- submissions ------------------------------------------------------------------------------
    def _record_names(self) -> list[str]:
        try:
            names = [n for n in os.listdir(self.submissions_dir) if n.endswith(".json") and n[:1].isdigit()]
        except FileNotFoundError:
            return []
        return sorted(names, key=lambda n: int(n.split(".")[0]))

    def submissions(self) -> dict[str, Submitted]:
        """Cell key -> its entry in the newest record naming it. Records never change once written, so
        the index is rebuilt only when the folder lists other records (a listing per call: cheap, and
        right on file systems whose directory times are coarse)."""
        names = self._record_names()
        if names != self._names:
            index: dict[str, Submitted] = {}
            for name in names:  # in order: a later submission of a cell replaces an earlier one
                record = self._record(name)
                pattern, seq, when = record["log_pattern"], int(record["seq"]), float(record["submitted"])
                for cell, (job_id, array) in record["cells"].items():
                    index[cell] = Submitted(seq, job_id, array, when, pattern.replace(JOB_ID_FIELD, job_id))
            self._index, self._names = index, names
        return self._index

    def every_job_stage(self) -> dict[str, str]:
        """Every Slurm job id any submission gave a cell (a resubmitted cell has several) -> that cell's
        stage (the cells of one job share it)."""
        out: dict[str, str] = {}
        for name in self._record_names():
            for cell, (job_id, _array) in self._record(name)["cells"].items():
                if job_id not in out:
                    stage = key_stage(cell)
                    if stage is not None:
                        out[job_id] = stage
        return out

    def _record(self, name: str) -> dict[str, Any]:
        """One submission record, read once per instance (status reads them all twice: states and costs)."""
        record = self._records.get(name)
        if record is None:
            record = self._records[name] = read_json(self.submissions_dir / name)
        return record

    def record_submission(self, cells: Mapping[str, tuple[str, str]], *, log_pattern: str) -> int:
        """Write one record: cell -> (job id, array name); `log_pattern` names the job's log with
        `{job_id}` in place of the id. Returns the record's number (one more than any before)."""
        if JOB_ID_FIELD not in log_pattern:
            raise ValueError(f"log_pattern {log_pattern!r} must contain {JOB_ID_FIELD}")
        names = self._record_names()
        seq = int(names[-1].split(".")[0]) + 1 if names else 1
        record = {
            "seq": seq,
            "submitted": time.time(),
            "log_pattern": log_pattern,
            "cells": {key: [job_id, array] for key, (job_id, array) in cells.items()},
        }
        while True:
            try:
                write_json_atomic(
                    self.submissions_dir / f"{seq:06d}.json", {**record, "seq": seq}, indent=None, replace=False
                )
                return seq
            except FileExistsError:  # another writer took this number: records are never replaced
                seq += 1

    # -- one cell ---------------------------------------------------------------------------------
    def view(self, key: str) -> dict[str, Any]:
        """The cell's state: its own file, updated by a newer submission that names it."""
        return _newer(self._own(key), self.submissions().get(key))

    def listing(self) -> set[str]:
        """The names in the cells folder: the cells that ever had a folder (a state, a done marker, a model)."""
        try:
            return set(os.listdir(self._cells))
        except FileNotFoundError:
            return set()

    def views(
        self, keys: list[str], present: set[str] | None = None, unread: Set[str] = frozenset()
    ) -> dict[str, dict[str, Any]]:
        """`view` of many cells; the cells folder is listed once (or `present`, a `listing` just made), so
        cells without a folder (never run on a node) cost no file lookup: a fresh 5,000-cell grid reads no
        file at all. Cells in `unread` get their submission entry alone, their own file not read."""
        present = self.listing() if present is None else present
        entries = self.submissions()
        return {
            key: _newer(
                self._own(key) if key in present and key not in unread else {"state": "pending"}, entries.get(key)
            )
            for key in keys
        }

    def _own(self, key: str) -> dict[str, Any]:
        """What the cell's own file says; pending without one (or with one cut short by a crash)."""
        try:
            # plain os paths and bytes: status and resume read this for every cell that has a folder
            with open(f"{self._cells}/{key}/state.json", "rb") as handle:
                return json.loads(handle.read())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "pending"}

    def write(self, key: str, state: str, **fields: Any) -> dict[str, Any]:
        """Change one cell's state: its current view with `fields` and `state` written to its own file."""
        if state not in STATES:
            raise ValueError(f"state {state!r} is not one of {STATES}")
        current = self.view(key)
        current.update(fields, state=state, updated=time.time())
        write_json_atomic(self.path(key), current)
        return current


def _newer(state: dict[str, Any], entry: Submitted | None) -> dict[str, Any]:
    """`state` updated by a submission entry that is newer than what the state continues."""
    if entry is not None and entry.seq > int(state.get("submission", 0)):
        state.update(
            state="submitted",
            job_id=entry.job_id,
            array=entry.array,
            log=entry.log,
            submitted=entry.submitted,
            updated=entry.submitted,
            submission=entry.seq,
            requeues=0,
            error=None,
            traceback=None,
        )
    return state
