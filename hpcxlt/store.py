"""The run directory: the single source of truth for what a grid has done.

Layout (docs/architecture.md): config.yaml, plan.json, cells/<key>/{state.json, done.json, checkpoints/,
model/, train_log.jsonl}, results/<key>.<split>.json, predictions/, labels/, logs/, tables/. Every write is
atomic. A cell is done exactly when its done.json exists; done cells are never run again.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from hpcxlt.config import ExperimentConfig, config_to_dict, dump_yaml, parse_config
from hpcxlt.grid.plan import Plan
from hpcxlt.io import read_json, write_json_atomic, write_text_atomic

STATES = ("pending", "submitted", "running", "done", "failed")


class RunDirError(Exception):
    """The run directory cannot be used as asked (e.g. it holds a different experiment)."""


class RunStore:
    """Paths and state of one run directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

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

    @property
    def tables_dir(self) -> Path:
        return self.root / "tables"

    def cell_dir(self, key: str) -> Path:
        return self.root / "cells" / key

    def checkpoints_dir(self, key: str) -> Path:
        return self.cell_dir(key) / "checkpoints"

    def model_dir(self, key: str) -> Path:
        return self.cell_dir(key) / "model"

    def train_log_path(self, key: str) -> Path:
        return self.cell_dir(key) / "train_log.jsonl"

    def result_path(self, key: str, split: str) -> Path:
        return self.results_dir / f"{key}.{split}.json"

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
                    write_json_atomic(self.plan_path, plan.to_dict())
                return False
            write_json_atomic(self.plan_path, plan.to_dict())
            write_text_atomic(self.config_path, dump_yaml(cfg))
            return True
        for folder in (self.logs_dir, self.results_dir, self.root / "cells"):
            folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.plan_path, plan.to_dict())
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
                problems.append(f"{len(changed)} planned cell(s) would change: {', '.join(changed[:8])}"
                                + (" ..." if len(changed) > 8 else ""))
            if dropped:
                problems.append(f"{len(dropped)} planned cell(s) would disappear: {', '.join(dropped[:8])}"
                                + (" ..." if len(dropped) > 8 else ""))
            raise RunDirError(
                f"{self.root} holds a different experiment (config differs at: {', '.join(differing[:5])}); "
                f"{'; '.join(problems)}. A run can only grow (more seeds, arms, targets, languages): use a new "
                "--run-dir (with --reuse-from this one to keep its equal cells), or `hpcxlt resume` to continue it"
            )
        known = {c.key for c in old.cells}
        return [c.key for c in plan.cells if c.key not in known]

    def load_config(self) -> ExperimentConfig:
        import yaml

        if not self.config_path.exists():
            raise RunDirError(f"{self.root} is not a run directory (no config.yaml); create one with `hpcxlt submit`")
        return parse_config(yaml.safe_load(self.config_path.read_text(encoding="utf-8")))

    def load_plan(self) -> Plan:
        if not self.plan_path.exists():
            raise RunDirError(f"{self.root} is not a run directory (no plan.json); create one with `hpcxlt submit`")
        return Plan.from_dict(read_json(self.plan_path))

    # -- cell state ---------------------------------------------------------------------------
    def is_done(self, key: str) -> bool:
        return (self.cell_dir(key) / "done.json").exists()

    def mark_done(self, key: str, info: dict[str, Any] | None = None) -> None:
        """Write the done marker (last step of a cell) and set its state to done."""
        write_json_atomic(self.cell_dir(key) / "done.json", {"key": key, "finished": time.time(), **(info or {})})
        self.set_state(key, "done")

    def done_info(self, key: str) -> dict[str, Any] | None:
        path = self.cell_dir(key) / "done.json"
        return read_json(path) if path.exists() else None

    def state(self, key: str) -> dict[str, Any]:
        """The cell's recorded state; 'done' whenever its done marker exists."""
        path = self.cell_dir(key) / "state.json"
        try:
            state = read_json(path)
        except (FileNotFoundError, json.JSONDecodeError):
            state = {"state": "pending"}
        if self.is_done(key):
            state["state"] = "done"
        return state

    def set_state(self, key: str, state: str, **fields: Any) -> dict[str, Any]:
        if state not in STATES:
            raise ValueError(f"state {state!r} is not one of {STATES}")
        path = self.cell_dir(key) / "state.json"
        try:
            current = read_json(path)
        except (FileNotFoundError, json.JSONDecodeError):
            current = {}
        current.update(fields, state=state, updated=time.time())
        write_json_atomic(path, current)
        return current

    # -- lock -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, command: str, *, wait_s: float = 300.0) -> Iterator[None]:
        """Hold the run directory's lock while `command` submits, resumes or cancels (RunLock)."""
        with RunLock(self.root / LOCK_FILE, command, wait_s=wait_s):
            yield

    # -- results ------------------------------------------------------------------------------
    def write_result(self, record: dict[str, Any], *, overwrite: bool = False) -> Path:
        """Write one per-language record; a record from a different config is never replaced silently."""
        path = self.result_path(record["key"], record["split"])
        if path.exists() and not overwrite:
            try:
                old = read_json(path)
            except json.JSONDecodeError:
                old = None
            if old is not None and old.get("config_hash") != record.get("config_hash"):
                raise RunDirError(
                    f"{path} holds a result of a different config ({old.get('config_hash')} != "
                    f"{record.get('config_hash')}); pass overwrite=True to replace it"
                )
        return write_json_atomic(path, record)

    def result_files(self) -> Iterator[Path]:
        if self.results_dir.exists():
            yield from sorted(self.results_dir.glob("*.json"))


LOCK_FILE = ".hpcxlt.lock"


class RunLock:
    """An exclusive lock on a run directory that works on shared (NFS-like) file systems.

    The lock is a file created with O_EXCL (atomic on NFS v3+) holding its holder: host, pid, command
    and since when. While held, a thread touches it every `heartbeat_s`; a lock whose holder is a dead
    process on this host, or whose heartbeat stopped `stale_s` ago (its host crashed), is stale and
    taken over. Waiting for a live holder prints who it is once; after `wait_s` a RunDirError names it.
    Taking over a stale lock goes through a second O_EXCL file, so two waiters cannot both break it.
    """

    heartbeat_s = 15.0
    stale_s = 120.0

    def __init__(self, path: Path, command: str, *, wait_s: float = 300.0):
        self.path, self.command, self.wait_s = Path(path), command, wait_s
        self.holder = {"host": socket.gethostname(), "pid": os.getpid(), "command": command, "since": time.time()}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _create(self, path: Path, content: dict) -> bool:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as handle:
            json.dump(content, handle)
        return True

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _stale(self, holder: dict | None) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if holder is None:  # being written right now, or a crash mid-write
            return age > self.stale_s
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder["pid"]), 0)
            except ProcessLookupError:
                return True
            except PermissionError:  # alive, another user's process
                return False
            return False
        return age > self.stale_s

    def _break(self, holder: dict | None) -> None:
        breaker = self.path.with_name(self.path.name + ".break")
        try:
            if time.time() - breaker.stat().st_mtime > 60:
                breaker.unlink(missing_ok=True)  # a breaker that died while breaking
        except FileNotFoundError:
            pass
        if not self._create(breaker, self.holder):
            return
        try:
            if self._read() == holder and self._stale(holder):
                self.path.unlink(missing_ok=True)
        finally:
            breaker.unlink(missing_ok=True)

    @staticmethod
    def describe(holder: dict | None) -> str:
        if not holder:
            return "an unknown holder"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
        return f"`hpcxlt {holder.get('command')}` (host {holder.get('host')}, pid {holder.get('pid')}, since {since})"

    def __enter__(self) -> "RunLock":
        deadline = time.time() + self.wait_s
        told = False
        while not self._create(self.path, self.holder):
            holder = self._read()
            if self._stale(holder):
                self._break(holder)
                continue
            if time.time() > deadline:
                raise RunDirError(f"{self.path.parent} is locked by {self.describe(holder)}; wait for it to finish, "
                                  f"or remove {self.path} if that process is gone")
            if not told:
                print(f"waiting for the run directory lock held by {self.describe(holder)}", file=sys.stderr)
                told = True
            time.sleep(0.5)
        self._beat = threading.Thread(target=self._heartbeat, name="hpcxlt-lock", daemon=True)
        self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._read() == self.holder:
            self.path.unlink(missing_ok=True)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [prefix or "<root>"]
