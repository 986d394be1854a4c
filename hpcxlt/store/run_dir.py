"""The run directory: the single source of truth for what a grid has done.

Layout (docs/architecture.md): config.yaml, plan.json, cells/<key>/{state.json, done.json, checkpoints/,
model/, train_log.jsonl}, submissions/<n>.json, results/<eval job>.jsonl, predictions/, labels/, logs/,
tables/. Every write is atomic. A cell is done exactly when its done.json exists; done cells are never run again.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from hpcxlt.config import ExperimentConfig, config_to_dict, dump_yaml, parse_config
from hpcxlt.grid.plan import Cell, Plan
from hpcxlt.io import read_json, write_json_atomic, write_text_atomic
from hpcxlt.store.cell_state import CellStates
from hpcxlt.store.errors import RunDirError
from hpcxlt.store.lock import LOCK_FILE, RunLock


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports ru_maxrss in KiB). A job runs in a
    process of its own (a Slurm job, or the local executor's), so at a cell's end it is the job's peak."""

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


PLAN_RESTORE = (
    "the plan, derived from config.yaml: remove plan.json, then `hpcxlt submit DIR/config.yaml "
    "--run-dir DIR` writes it again (done cells are kept)"
)
"""What a broken plan.json holds and how to restore it (said by every reader of the file)."""


class RunStore:
    """Paths and state of one run directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self._cells = str(self.root / "cells")
        self._assumed_done: frozenset[str] = frozenset()
        self.cell_states = CellStates(self.root)

    # -- layout -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def plan_path(self) -> Path:
        return self.root / "plan.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def labels_dir(self) -> Path:
        """Gold test labels in the official layout (labels/<task>/test-<lang>.<ext>), shared by all arms."""
        return self.root / "labels"

    def example_groups_path(self, task: str, lang: str) -> Path:
        """Which test examples share a cluster (QA: question id -> paragraph), beside the official labels/ layout."""
        return self.root / "example_groups" / task / f"{lang}.json"

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    @property
    def tables_json(self) -> Path:
        """Every table of the last aggregation, as one JSON object (what `aggregate --json` prints)."""
        return self.tables_dir / "tables.json"

    @property
    def launch_path(self) -> Path:
        """How the run was launched (executor, site profile, waves): `hpcxlt.launch.record`."""
        return self.root / "launch.json"

    @property
    def aggregate_state_path(self) -> Path:
        """The final aggregation job's state (not a cell of the plan)."""
        return self.logs_dir / "aggregate.state.json"

    @property
    def slurm_logs_dir(self) -> Path:
        """submitit's folder: batch scripts, pickles, each job's log (%j_%t_log.out)."""
        return self.logs_dir / "slurm"

    def local_log_path(self, job_key: str) -> Path:
        """The log of one job run by the local executor."""
        return self.logs_dir / "local" / f"{job_key}.log"

    def submission_dir(self, arm: str, seed: int) -> Path:
        """The official-layout prediction folder of one arm and seed: predictions/<arm>/s<seed>."""
        return self.predictions_dir / arm / f"s{seed}"

    @property
    def report_path(self) -> Path:
        """`hpcxlt report`'s page."""
        return self.root / "report.html"

    def redo_dirs(self, stamp: str) -> tuple[Path, Path]:
        """Where `hpcxlt redo` keeps the cells' folders and the records it sets aside (never deleted)."""
        return self.root / "cells" / f".redo-{stamp}", self.results_dir / f".redo-{stamp}"

    def activity_paths(self) -> list[Path]:
        """The folders whose times show a run's last activity at a glance (no walk over every cell)."""
        return [
            self.root,
            self.root / "cells",
            self.results_dir,
            self.logs_dir,
            self.root / "submissions",
            self.tables_dir,
        ]

    def done_path(self, key: str) -> Path:
        """A cell's done marker: the cell is done exactly when it exists."""
        return self.cell_dir(key) / "done.json"

    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    def checkpoints_dir(self, key: str) -> Path:
        return self.cell_dir(key) / "checkpoints"

    def model_dir(self, key: str) -> Path:
        return self.cell_dir(key) / "model"

    def train_log_path(self, key: str) -> Path:
        return self.cell_dir(key) / "train_log.jsonl"

    # -- experiment ---------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.config_path.exists() and self.plan_path.exists()

    def initialize(self, cfg: ExperimentConfig, plan: Plan) -> bool:
        """Write config.yaml and plan.json; return False when the same experiment is already here.

        An experiment that only adds cells to the one here (more seeds, arms, targets, languages: every
        planned cell kept with its fingerprint) grows the run: the new config and plan replace the old
        ones and every cell keeps its state, so done cells stay done and only new cells run. Anything
        else is refused before anything is overwritten (`growth`).
        """
        if self.config_path.exists():
            added = self.growth(cfg, plan)
            if added is None:
                if not self.plan_path.exists():
                    write_json_atomic(self.plan_path, plan.to_dict(), indent=None)
                return False
            write_json_atomic(self.plan_path, plan.to_dict(), indent=None)
            write_text_atomic(self.config_path, dump_yaml(cfg))
            return True
        for folder in (self.logs_dir, self.results_dir, self.root / "cells"):
            folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.plan_path, plan.to_dict(), indent=None)
        # config.yaml last: its presence marks an initialized run directory
        write_text_atomic(self.config_path, dump_yaml(cfg))
        return True

    def growth(self, cfg: ExperimentConfig, plan: Plan) -> list[str] | None:
        """None when `cfg` is the experiment here; else the keys of the cells `plan` adds to it.

        RunDirError (writing nothing) when the change would alter or drop a planned cell, listing them:
        a changed hyperparameter, model or data changes the fingerprints of the cells it affects.
        """
        existing = self.load_config()
        if config_to_dict(existing) == config_to_dict(cfg):
            return None
        differing = _diff_keys(config_to_dict(existing), config_to_dict(cfg))
        old = self.load_plan() if self.plan_path.exists() else None
        if old is None:
            raise RunDirError(f"{self.root} holds a config but no plan.json; use a new --run-dir")
        new = {cell.key: cell.fingerprint for cell in plan.cells}
        changed = [c.key for c in old.cells if c.key in new and new[c.key] != c.fingerprint]
        dropped = [c.key for c in old.cells if c.key not in new]
        if changed or dropped:
            problems = []
            if changed:
                problems.append(
                    f"{len(changed)} planned cell(s) would change: {', '.join(changed[:8])}"
                    + (" ..." if len(changed) > 8 else "")
                )
            if dropped:
                problems.append(
                    f"{len(dropped)} planned cell(s) would disappear: {', '.join(dropped[:8])}"
                    + (" ..." if len(dropped) > 8 else "")
                )
            raise RunDirError(
                f"{self.root} holds a different experiment (config differs at: {', '.join(differing[:5])}); "
                f"{'; '.join(problems)}. A run can only grow (more seeds, arms, targets, languages): use a new "
                "--run-dir (with --reuse-from this one to keep its equal cells), or `hpcxlt resume` to continue it"
            )
        known = {c.key for c in old.cells}
        return [c.key for c in plan.cells if c.key not in known]

    def load_config(self) -> ExperimentConfig:

        if not self.config_path.exists():
            raise RunDirError(f"{self.root} is not a run directory (no config.yaml); create one with `hpcxlt submit`")
        return _parsed(self.config_path, lambda raw: parse_config(yaml.safe_load(raw.decode("utf-8"))))

    def load_plan(self) -> Plan:
        if not self.plan_path.exists():
            raise RunDirError(f"{self.root} is not a run directory (no plan.json); create one with `hpcxlt submit`")
        return _parsed(self.plan_path, lambda raw: Plan.from_dict(_json_record(self.plan_path, raw, PLAN_RESTORE)))

    def read_record(self, path: Path, restore: str) -> Any:
        """A JSON file of the run directory; one that cannot be parsed (cut short by a full disk, edited by
        hand) is a RunDirError naming the file and how to restore it, not a traceback."""
        try:
            return read_json(path)
        except ValueError as err:
            raise RunDirError(f"{path} is not valid JSON ({err}); it holds {restore}") from None

    # -- cell state ---------------------------------------------------------------------------
    def is_done(self, key: str) -> bool:
        # plain os.path: submission and status ask this for every cell, and pathlib costs 20 us a call
        return key in self._assumed_done or os.path.exists(f"{self._cells}/{key}/done.json")

    def done_keys(self, keys: Iterable[str], present: set[str] | None = None) -> set[str]:
        """The keys among `keys` that are done (`is_done` of each): the cells folder listed once (or
        `present`, a `CellStates.listing` just made), a done marker looked up only for cells with a folder."""
        present = self.cell_states.listing() if present is None else present
        cells = self._cells
        return {
            key
            for key in keys
            if key in self._assumed_done or (key in present and os.path.exists(f"{cells}/{key}/done.json"))
        }

    def assuming_done(self, keys: Iterable[str]) -> RunStore:
        """A view of this run directory in which `keys` count as done too (what a dry run of --reuse-from
        would find after the reuse); nothing is written."""

        view = copy.copy(self)
        view._assumed_done = frozenset(keys) | self._assumed_done
        return view

    def mark_done(self, key: str, info: dict[str, Any] | None = None) -> None:
        """Write the done marker (last step of a cell) and set its state to done."""
        info = {"key": key, "finished": time.time(), "peak_rss_gib": round(peak_rss_gib(), 3), **(info or {})}
        write_json_atomic(self.cell_dir(key) / "done.json", info)
        self.set_state(key, "done")

    def done_info(self, key: str) -> dict[str, Any] | None:
        path = self.cell_dir(key) / "done.json"
        return read_json(path) if path.exists() else None

    def state(self, key: str) -> dict[str, Any]:
        """The cell's state (`CellStates.view`); 'done' whenever its done marker exists."""
        return self._done_wins(key, self.cell_states.view(key))

    def states(self, keys: list[str], *, done_details: bool = True) -> dict[str, dict[str, Any]]:
        """`state` of many cells at once (the cells folder listed once; see `CellStates.views`). Without
        `done_details` a done cell's own state file is not read (its view is the state and its newest
        submission): status counts states, and at 100k cells those files are most of its reading."""
        present = self.cell_states.listing()
        done = self.done_keys(keys, present)
        views = self.cell_states.views(keys, present, unread=set() if done_details else done)
        for key in done:  # the done marker outranks every state (`_done_wins`)
            views[key]["state"] = "done"
        return views

    def _done_wins(self, key: str, state: dict[str, Any]) -> dict[str, Any]:
        if self.is_done(key):  # the done marker is the last thing a cell writes: it outranks every state
            state["state"] = "done"
        return state

    def set_state(self, key: str, state: str, **fields: Any) -> dict[str, Any]:
        """Record a change of one cell's state (its own file: what a job on a node says of its cells)."""
        return self.cell_states.write(key, state, **fields)

    def record_submission(self, cells: Mapping[str, tuple[str, str]], *, log_pattern: str) -> int:
        """Record one submission, cell -> (Slurm job id, array), in one file (`CellStates.record_submission`)."""
        return self.cell_states.record_submission(cells, log_pattern=log_pattern)

    # -- lock -------------------------------------------------------------------------------------
    def lock_holder(self) -> dict[str, Any] | None:
        """The live holder of the run directory's lock (a submit, resume or cancel at work), or None."""
        return RunLock(self.root / LOCK_FILE, "status").live_holder()

    @contextlib.contextmanager
    def lock(self, command: str, *, wait_s: float = 300.0) -> Iterator[None]:
        """Hold the run directory's lock while `command` submits, resumes or cancels (RunLock)."""
        with RunLock(self.root / LOCK_FILE, command, wait_s=wait_s):
            yield

    # -- results ------------------------------------------------------------------------------
    def job_results_path(self, job_key: str) -> Path:
        """The JSON-lines file of one evaluation job's records (every cell and split it evaluated)."""
        return self.results_dir / f"{job_key}.jsonl"

    def add_results(self, job_key: str, records: list[dict[str, Any]], *, overwrite: bool = False) -> Path:
        """Add records to their job's file, rewritten atomically: the records already there (less any of
        the same key and split) and these. One file per job, not per record, because a million records
        in a million files take seconds to list and open; the rewrite keeps each job's file whole.

        A record of a different config (config_hash) is never replaced silently: RunDirError unless
        overwrite, before anything is written.
        """
        path = self.job_results_path(job_key)
        new = {(r["key"], r["split"]): r for r in records}
        kept = []
        for line, old in enumerate(_read_lines(path), start=1):
            ident = (old.get("key"), old.get("split"))
            if ident not in new:
                kept.append(old)
            elif not overwrite and old.get("config_hash") != new[ident].get("config_hash"):
                raise RunDirError(
                    f"{path}:{line} holds a {ident[1]} result for {ident[0]} of a different config "
                    f"({old.get('config_hash')} != {new[ident].get('config_hash')}); pass overwrite=True to replace it"
                )
        text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in [*kept, *records])
        return write_text_atomic(path, text)

    def cell_records(self, key: str, plan: Plan) -> list[dict[str, Any]]:
        """Every record of one eval cell (`job_records` of its job)."""
        return self.job_records(plan.job_of(key).key, [key])[key]

    def job_records(self, job_key: str, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """The records of these cells of one evaluation job, by cell key: from the job's file (read
        once), then from one-record files (`results/<key>.<split>.json`) that earlier versions wrote."""
        wanted: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
        for record in _read_lines(self.job_results_path(job_key)):
            if record.get("key") in wanted:
                wanted[record["key"]].append(record)
        for path in sorted(self.results_dir.glob("*.json")):  # the folder listed once, not once per cell
            key = path.name[: -len(".json")].rsplit(".", 1)[0]
            if key in wanted:
                wanted[key].append(read_json(path))
        return wanted

    def unreadable_records(self, plan: Plan, done_cells: set[str] | None = None) -> dict[str, str]:
        """Done evaluation cells whose record cannot be read, with why: a line of their job's file that is not
        JSON (cut short, edited by hand), or no record at all. Such a cell is done in name only: status says
        so and `repair_records` makes the next submission evaluate it again. `done_cells`: the done cells, where
        the caller has just looked them up (`done_keys`, or the `states` saying done)."""
        problems: dict[str, str] = {}
        if done_cells is None:
            done_cells = self.done_keys(cell.key for cell in plan.cells if cell.stage == "eval")
        for job in plan.stage_jobs("eval"):
            done = [key for key in job.cells if key in done_cells]
            if not done:
                continue
            path = self.job_results_path(job.key)
            found, bad = self._readable_records(path)
            for key in done:
                if key not in found and not any(self.results_dir.glob(f"{key}.*.json")):
                    problems[key] = f"{path}: line {bad[0]} is not a JSON record" if bad else f"{path}: no record"
        return problems

    def repair_records(self, plan: Plan) -> list[str]:
        """Make the cells `unreadable_records` names not done, so they are evaluated again; a job file's
        unreadable lines are kept aside (`<file>.unreadable-<time>`), its readable ones stay in place."""
        problems = self.unreadable_records(plan)
        for job_key in {plan.job_of(key).key for key in problems}:
            path = self.job_results_path(job_key)
            found, bad = self._readable_records(path)
            if bad:
                lines = path.read_text(encoding="utf-8").splitlines()
                write_text_atomic(
                    path.with_name(f"{path.name}.unreadable-{int(time.time())}"),
                    "\n".join(lines[n - 1] for n in bad) + "\n",
                )
                write_text_atomic(
                    path, "".join(line + "\n" for n, line in enumerate(lines, 1) if n not in bad and line.strip())
                )
        for key in problems:
            (self.cell_dir(key) / "done.json").unlink(missing_ok=True)
            self.set_state(key, "pending", reason=f"evaluated again: {problems[key]}")
        return sorted(problems)

    @staticmethod
    def _readable_records(path: Path) -> tuple[set[str], list[int]]:
        """(keys with a readable record, numbers of the lines that are not JSON) of one job's file."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return set(), []
        keys, bad = set(), []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                keys.add(json.loads(line).get("key"))
            except (json.JSONDecodeError, AttributeError):
                bad.append(number)
        return keys, bad

    def result_files(self) -> Iterator[Path]:
        """Every record file: the jobs' JSON-lines files and older one-record files."""
        for name in list_result_names(self.results_dir):
            yield self.results_dir / name


def result_record(
    cell: Cell, *, split: str, metrics: dict[str, Any], score: float, n_examples: int, checkpoint: str
) -> dict[str, Any]:
    """One evaluation cell's record in one split, as `add_results` stores it and the aggregation reads it."""
    return {
        "key": cell.key,
        "arm": cell.arm,
        "target": cell.target,
        "seed": cell.seed,
        "lang": cell.lang,
        "split": split,
        "metrics": metrics,
        "score": score,
        "n_examples": n_examples,
        "checkpoint": checkpoint,
        "config_hash": cell.fingerprint,
    }


_PARSED: dict[Path, tuple[bytes, Any]] = {}
"""config.yaml / plan.json path -> (the bytes last parsed, what they gave): `status` and `resume` read both
from several places (a 100k-cell plan takes about a second to parse); the same bytes give the same (frozen)
object, and a file that changed in any byte is parsed again."""


def _parsed(path: Path, parse: Callable[[bytes], Any]) -> Any:
    raw = path.read_bytes()
    cached = _PARSED.get(path)
    if cached is not None and cached[0] == raw:
        return cached[1]
    value = parse(raw)
    _PARSED[path] = (raw, value)
    return value


def _json_record(path: Path, raw: bytes, restore: str) -> Any:
    """`RunStore.read_record` of bytes already read."""
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError as err:
        raise RunDirError(f"{path} is not valid JSON ({err}); it holds {restore}") from None


RESULT_SUFFIXES = (".json", ".jsonl")
"""Record files in results/: a job's JSON lines, and the one-record files of earlier versions."""


def list_result_names(results_dir: str | os.PathLike[str]) -> list[str]:
    """Sorted names of the record files in `results_dir` (hidden temporaries skipped; [] when it is missing).

    One `scandir` of names, no stat per entry: the gather lists a million-entry folder with it, once."""
    try:
        with os.scandir(results_dir) as entries:
            names = [e.name for e in entries if e.name.endswith(RESULT_SUFFIXES) and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    names.sort()
    return names


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                raise RunDirError(
                    f"{path}:{number}: not a JSON record ({err.msg}); move the file away and evaluate its cells again"
                ) from None


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [prefix or "<root>"]
