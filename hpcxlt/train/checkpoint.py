"""Training checkpoints that are complete or invisible, and a lookup that skips broken ones.

A checkpoint is the folder `<root>/step-<N>/`, holding:
  DeepSpeed's files (model, optimizer and scheduler shards of every rank),
  rng/rank-<r>.pt    python, numpy and torch (CPU + CUDA) RNG states of rank r,
  trainer_state.json our plain state: step, data position, sampling counts, best metric, world size,
  complete.json      manifest (every file with its size), written last.
Everything is written under `<root>/.tmp-step-<N>/` and renamed to `step-<N>` only when complete, so
a killed job leaves either a whole checkpoint or a `.tmp-` folder that nobody reads. The manifest
catches what a rename cannot: a file truncated later (a full disk, a copy interrupted).
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import shutil
import time
from collections.abc import Set
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hpcxlt.io import read_json, write_json_atomic
from hpcxlt.train import dist

if TYPE_CHECKING:
    from hpcxlt.train.engine import Engine

log = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step-(\d+)$")
MANIFEST = "complete.json"
STATE_FILE = "trainer_state.json"
RNG_DIR = "rng"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
"""A complete checkpoint moved aside while the same step is saved again (see save_checkpoint)."""


def step_name(step: int) -> str:
    return f"step-{step}"


def step_of(path: str | os.PathLike) -> int:
    """The step number of a `step-<N>` folder."""
    match = STEP_DIR.match(Path(path).name)
    if not match:
        raise ValueError(f"{path}: not a checkpoint folder (expected step-<N>)")
    return int(match.group(1))


# -- RNG ---------------------------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """Every RNG that can change what the next step computes (dropout, shuffling, sampling)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- validity and lookup -----------------------------------------------------------------------------


def problem(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a usable checkpoint, or None when it is complete and every file has its recorded size."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        return f"no {MANIFEST} (the save did not finish)"
    try:
        manifest = read_json(manifest_path)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError, OSError) as err:
        return f"unreadable {MANIFEST} ({err})"
    for rel, size in files.items():
        path = folder / rel
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            return f"missing file {rel}"
        if actual != size:
            return f"file {rel} has {actual} bytes, the manifest says {size} (truncated or overwritten)"
    if STATE_FILE not in files:
        return f"no {STATE_FILE} in the manifest"
    return None


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """The `step-<N>` folders under root, oldest first (valid or not). A step whose re-save was cut off
    between its two renames is put back from its `.old-step-<N>` copy first."""
    root = Path(root)
    if not root.is_dir():
        return []
    for old in root.glob(f"{OLD_PREFIX}step-*"):
        final = root / old.name[len(OLD_PREFIX) :]
        if not final.exists() and STEP_DIR.match(final.name) and dist.is_main():
            os.replace(old, final)
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name)]
    return sorted(found, key=step_of)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under root; a broken newer one is skipped with a warning naming why."""
    for folder in reversed(list_checkpoints(root)):
        reason = problem(folder)
        if reason is None:
            return folder
        log.warning("checkpoint %s is unusable: %s; skipping it and trying the previous one", folder, reason)
    return None


def read_state(folder: str | os.PathLike) -> dict[str, Any]:
    """The trainer state (step, data position, counts, best metric) of one checkpoint."""
    return read_json(Path(folder) / STATE_FILE)


# -- save / load -------------------------------------------------------------------------------------


def _own_files(tmp: Path) -> dict[str, int]:
    """The files this rank sees under `tmp`, made durable, with their sizes. Every rank sees at least the
    files it wrote itself, so the union over ranks covers the checkpoint even where a shared file
    system shows one node's new files to another node only later (NFS attribute caching)."""
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        try:
            with open(path, "rb") as handle:  # make the data durable before the rename publishes it
                os.fsync(handle.fileno())
            files[str(path.relative_to(tmp))] = path.stat().st_size
        except FileNotFoundError:  # another rank's temporary file, renamed meanwhile
            continue
    return files


def save_checkpoint(engine: Engine, root: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a complete checkpoint of `engine` + `state` as root/step-<state['step']> (collective).

    Every rank writes its DeepSpeed shard and its own RNG states and reports the files it sees; rank 0
    writes the shared files, the manifest (the union of the reports) and does the rename. Saving a step
    that exists already (the end of a run right after a periodic save) swaps the new folder in with
    renames only, and the lookup also finds the previous copy (`.old-step-<N>`) if a job dies between
    them: at no moment is the step without a complete checkpoint. Returns the final folder.
    """
    root = Path(root)
    step = int(state["step"])
    final = root / step_name(step)
    tmp_tag = f"{TMP_PREFIX}{step_name(step)}"
    tmp = root / tmp_tag
    if dist.is_main():
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(f"{TMP_PREFIX}*"):  # from a save that was killed half way
            shutil.rmtree(leftover, ignore_errors=True)
    dist.barrier()
    engine.save(root, tmp_tag)
    rank = dist.get_rank()
    (tmp / RNG_DIR).mkdir(parents=True, exist_ok=True)
    torch.save(capture_rng(), tmp / RNG_DIR / f"rank-{rank}.pt")
    dist.barrier()
    reports = dist.all_gather_object(_own_files(tmp))
    if dist.is_main():
        write_json_atomic(tmp / STATE_FILE, {**state, "world_size": dist.get_world_size(), "saved": time.time()})
        files: dict[str, int] = {}
        for report in reports:
            files.update(report)
        files.update(_own_files(tmp))  # the state file, and anything rank 0 sees by now
        write_json_atomic(tmp / MANIFEST, {"step": step, "files": files})
        if final.exists():
            old = root / f"{OLD_PREFIX}{step_name(step)}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)  # the complete previous copy stays findable (latest_checkpoint)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    dist.barrier()
    return final


def load_checkpoint(engine: Engine, folder: str | os.PathLike) -> dict[str, Any]:
    """Restore `engine` and this rank's RNG states from `folder`; return the trainer state (collective)."""
    folder = Path(folder)
    state = read_state(folder)
    if state.get("world_size", 1) != dist.get_world_size():
        raise RuntimeError(
            f"{folder} was written by {state.get('world_size')} processes, this job has {dist.get_world_size()}; "
            "ZeRO shards are tied to the world size: resume with the same number of processes"
        )
    engine.load(folder.parent, folder.name)
    rng_file = folder / RNG_DIR / f"rank-{dist.get_rank()}.pt"
    try:
        restore_rng(torch.load(rng_file, map_location="cpu", weights_only=False))
    except (OSError, pickle.UnpicklingError, RuntimeError) as err:
        raise RuntimeError(f"{rng_file}: cannot restore RNG states ({err})") from err
    if engine.global_step != int(state["step"]):
        raise RuntimeError(
            f"{folder}: DeepSpeed restored step {engine.global_step}, trainer state says {state['step']}"
        )
    return state


def prune(root: str | os.PathLike, *, keep_last: int, keep: Set[int] = frozenset()) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints and the steps in `keep` (e.g. the best); rank 0 only."""
    if not dist.is_main():
        return []
    folders = list_checkpoints(root)
    newest = {step_of(p) for p in folders[-keep_last:]} if keep_last > 0 else set()
    removed = []
    for folder in folders:
        step = step_of(folder)
        if step not in newest and step not in keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
