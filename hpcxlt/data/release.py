"""Official release files that are not on the hub (LAReQA's XQuAD-R JSON with its `sentence_breaks`).

A registry `DataRef` with `url` (and a pinned `sha256`) names such a file. It is downloaded only while
`hpcxlt prepare` runs (`downloads_allowed`), checked against its hash, kept under
`$HF_DATASETS_CACHE/hpcxlt-releases/`, and read with the local source's readers. A compute job never
downloads: without a prepared copy it stops with a message that says to run `hpcxlt prepare`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from hpcxlt.data.local import DataNotFoundError
from hpcxlt.tasks.spec import DataRef

_ALLOWED = contextvars.ContextVar("hpcxlt_release_downloads", default=False)
TIMEOUT_S = 120


@contextlib.contextmanager
def downloads_allowed() -> Iterator[None]:
    """Within this block release files may be downloaded (what `hpcxlt prepare` does)."""
    token = _ALLOWED.set(True)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def _url(ref: DataRef) -> str:
    if ref.url is None:
        raise ValueError(f"{ref.hf_id}: this data reference names no release file (its url is missing)")
    return ref.url


def cache_path(ref: DataRef) -> Path:
    import datasets  # heavy: datasets

    url = _url(ref)
    key = ref.sha256 or hashlib.sha256(url.encode()).hexdigest()
    return Path(datasets.config.HF_DATASETS_CACHE) / "hpcxlt-releases" / key[:16] / Path(url).name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def release_file(ref: DataRef, where: str) -> Path:
    """The local copy of `ref`'s release file, downloading and checking it when that is allowed."""
    path = cache_path(ref)
    if path.is_file():
        return path
    if not _ALLOWED.get():
        raise DataNotFoundError(
            f"{where} comes from an official release file ({ref.url}) that this machine has not fetched: "
            "run `hpcxlt prepare CONFIG --out DIR` where it can be downloaded and use data.source: local"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with urllib.request.urlopen(_url(ref), timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        found = _sha256(tmp)
        if ref.sha256 and found != ref.sha256:
            raise DataNotFoundError(
                f"{where}: {ref.url} has SHA-256 {found}, the registry pins {ref.sha256} "
                "(changed upstream or damaged in transit); nothing was kept"
            )
        os.replace(tmp, path)
    except OSError as err:
        raise DataNotFoundError(f"{where}: could not download {ref.url}: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return path


__all__ = ["cache_path", "downloads_allowed", "release_file"]
