"""Atomic file writes: a reader never sees half a file, a crash never leaves one.

Files and folders made here honour the process umask like `open()` and `mkdir()` do (`tempfile` makes
them private, 0600/0700), so a run directory is readable by the user's group when the umask says so:
that is how sweeps are shared on a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read without changing it (Linux /proc; elsewhere a set-and-restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A fresh folder in `parent` (for building something that is renamed into place when complete),
    with the permissions `mkdir` would give it."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    tmp.chmod(0o777 & ~current_umask())
    return tmp


def follow_umask(folder: str | os.PathLike) -> Path:
    """Give every file and folder under `folder` the mode `open()`/`mkdir()` would have given it: some
    writers (safetensors' model files) create theirs private whatever the umask."""
    folder = Path(folder)
    mask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
    return folder


def publish_dir(out: str | os.PathLike, fill: Callable[[Path], Any], *, replace: bool = False) -> Path:
    """Build a folder atomically: `fill(tmp)` writes into a fresh folder beside `out`, whose contents then
    get the modes the umask gives (`follow_umask`) before it is renamed to `out`. An empty `out` is
    taken over; one with contents only when `replace` (else OSError: e.g. another process published the
    same folder first). Whatever fails, the temporary folder goes and `out` is as it was."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out.parent, prefix=f".{out.name}.")
    try:
        fill(tmp)
        follow_umask(tmp)
        if out.exists():
            if replace:
                shutil.rmtree(out)
            else:
                out.rmdir()  # only an empty folder (OSError otherwise)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, replace: bool = True) -> Path:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it into place.

    replace=False never replaces an existing file: FileExistsError instead (a hard link, atomic and
    exclusive also on NFS, puts the file in place).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str, *, replace: bool = True) -> Path:
    """Atomically write UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"), replace=replace)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, replace: bool = True) -> Path:
    """Atomically write `obj` as JSON (sorted keys, so equal objects give equal files)."""
    return write_text_atomic(
        path, json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n", replace=replace
    )


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
