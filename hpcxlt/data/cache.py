"""On-disk cache of tokenized features: one folder per key, written whole or not at all.

A key hashes everything that decides the features (tokenizer, task, language, split, settings,
source data), so 3 seeds x 50 languages tokenize each split once. A folder is built under a
temporary name and renamed into place; when two processes build the same key at once, the first
rename wins and the other's copy is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hpcxlt.io import make_temp_dir

_TOKENIZER_HASHES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the full tokenizer definition (vocabulary, normalizer, pre-tokenizer, specials).

    Two tokenizers with the same fingerprint turn every text into the same ids, wherever they were
    loaded from: the copy each trained model folder carries hits the same cache entries. The
    truncation / padding state a tokenizer keeps from its last call is left out.
    """
    try:
        return _TOKENIZER_HASHES[tokenizer]
    except (KeyError, TypeError):
        pass
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        definition = json.loads(backend.to_str())
        definition.pop("truncation", None)
        definition.pop("padding", None)
    else:  # a slow (Python) tokenizer: its vocabulary and special tokens decide the ids
        definition = [sorted(tokenizer.get_vocab().items()), tokenizer.all_special_tokens]
    blob = json.dumps(definition, sort_keys=True, ensure_ascii=False)
    value = hashlib.blake2b(blob.encode("utf-8"), digest_size=16).hexdigest()
    try:
        _TOKENIZER_HASHES[tokenizer] = value
    except TypeError:
        pass
    return value


def feature_key(*, tokenizer: str, task: str, lang: str, split: str, settings: dict, source: str) -> str:
    """Hex key of one featurized split."""
    blob = json.dumps(
        {"tokenizer": tokenizer, "task": task, "lang": lang, "split": split, "settings": settings, "source": source},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def random_fingerprint() -> str:
    """A fresh `datasets` fingerprint: spares `datasets` hashing the tokenizer inside a map()."""
    return uuid.uuid4().hex


def entry_path(cache_dir: str | os.PathLike, key: str, label: str) -> Path:
    """Folder of one cache entry: readable label + key (the label only helps people browsing)."""
    safe = "".join(c if c.isalnum() or c in "._-+" else "_" for c in label)
    return Path(cache_dir).expanduser() / f"{safe}.{key}"


@contextmanager
def quiet_datasets():
    """No `datasets` progress bars (they would fill every job log with one line per split)."""
    import datasets  # heavy: datasets

    was_enabled = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def get_or_build(
    cache_dir: str | os.PathLike, key: str, label: str, build: Callable[[], Any]
) -> tuple[Path, bool, Any]:
    """(folder, cache_hit, dataset): the cached dataset for `key`, or `build()` saved there first."""
    import datasets  # heavy: datasets

    path = entry_path(cache_dir, key, label)
    if (path / "dataset_info.json").is_file():
        with quiet_datasets():
            return path, True, datasets.load_from_disk(str(path))
    with quiet_datasets():
        dataset = build()
        _save(dataset, path)
        return path, False, datasets.load_from_disk(str(path))


def _save(dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(path.parent, prefix=f".{path.name}.")
    try:
        dataset.save_to_disk(str(tmp))
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "dataset_info.json").is_file():
                raise
            # Another process saved the same key first: equal content, keep theirs.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
