"""Raw rows of one task, language and split: the one entry point for training and evaluation.

Two sources (`data.source`): `hub` reads the registry's `DataRef`s (`hpcxlt.data.hub`), `local` reads
`<root>/<task>/<lang>/<split>.<ext>` files in the data sets' original release formats
(`hpcxlt.data.local`). Both give a `datasets.Dataset` in the registry's row schema, checked for the
schema's columns, with unlabelled classification rows dropped and the configured caps applied.
"""

from __future__ import annotations

from typing import cast

from hpcxlt.config.schema import DataConfig
from hpcxlt.data.cache import quiet_datasets
from hpcxlt.data.hub import describe, hub_ref, load_ref
from hpcxlt.data.local import (
    CANDIDATES_STEM,
    LOCAL_SUFFIXES,
    DataNotFoundError,
    data_root,
    file_fingerprint,
    local_candidates_file,
    local_file,
    local_languages,
    read_local_rows,
    rows_to_dataset,
)
from hpcxlt.data.schemas import check_columns
from hpcxlt.tasks.spec import SPLITS, DataRef, TaskSpec


def _drop_unlabelled(dataset, spec: TaskSpec):
    """Classification rows with label -1 carry no gold label (SNLI): skipped, as the registry says."""
    if spec.format != "classification":
        return dataset
    column = spec.columns["label"]
    if column not in dataset.column_names or -1 not in set(dataset[column]):
        return dataset

    with quiet_datasets():
        return dataset.filter(lambda labels: [v != -1 for v in labels], input_columns=column, batched=True)


def _cap(dataset, split: str, data_cfg: DataConfig):
    cap = data_cfg.max_train_examples if split == "train" else data_cfg.max_eval_examples
    if cap is not None and len(dataset) > cap:
        return dataset.select(range(cap))
    return dataset


def load_uncapped(spec: TaskSpec, lang: str, split: str, data_cfg: DataConfig):
    """Every row of one split of one language, as the source has it (schema checked, no caps, nothing dropped)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if data_cfg.source == "local":
        path = local_file(spec, lang, split, data_cfg)
        dataset = rows_to_dataset(read_local_rows(path, spec, lang), path)
        check_columns(
            spec, dataset.column_names, where=f"task {spec.name!r}, language {lang!r}, split {split!r} ({path})"
        )
        return dataset
    if data_cfg.source == "hub":
        return load_ref(hub_ref(spec, lang, split), spec, lang, split, mirror=data_cfg.hub_mirror)
    raise ValueError(f"data.source must be 'hub' or 'local', got {data_cfg.source!r}")


def load_split(spec: TaskSpec, lang: str, split: str, data_cfg: DataConfig):
    """The raw rows (a `datasets.Dataset`) of one split of one language of a task, capped by
    data_cfg.max_train_examples (train) / max_eval_examples (dev, test)."""
    return _cap(_drop_unlabelled(load_uncapped(spec, lang, split, data_cfg), spec), split, data_cfg)


def source_fingerprint(spec: TaskSpec, lang: str, split: str, data_cfg: DataConfig, dataset=None) -> str:
    """What identifies the data behind a split: the local file's content hash, or the hub
    location plus the loaded dataset's fingerprint. Changes whenever the rows can change."""
    cap = data_cfg.max_train_examples if split == "train" else data_cfg.max_eval_examples
    if data_cfg.source == "local":
        path = local_file(spec, lang, split, data_cfg)
        return f"local:{path.suffix}:{file_fingerprint(path)}:cap={cap}"
    ref = hub_ref(spec, lang, split)
    if dataset is None:
        dataset = load_split(spec, lang, split, data_cfg)
    return f"hub:{describe(ref)}:{ref.id_prefix}:{dataset._fingerprint}:cap={cap}"


def load_candidates(spec: TaskSpec, data_cfg: DataConfig):
    """The shared retrieval pool of a task (Mewsli-X candidate entities: entity_id, description)."""
    if spec.candidates is None:
        raise DataNotFoundError(
            f"task {spec.name!r} has no shared candidate pool (its rows carry their own candidates)"
        )
    if data_cfg.source == "local":
        path = local_candidates_file(spec, data_cfg)
        return rows_to_dataset(read_local_rows(path, spec, CANDIDATES_STEM), path)
    return load_ref(spec.candidates, spec, "*", "candidates", mirror=data_cfg.hub_mirror)


def candidates_fingerprint(spec: TaskSpec, data_cfg: DataConfig) -> str:
    """Like source_fingerprint, for the candidate pool."""
    if data_cfg.source == "local":
        path = local_candidates_file(spec, data_cfg)
        return f"local:{path.suffix}:{file_fingerprint(path)}"
    dataset = load_candidates(spec, data_cfg)  # raises when the task has no candidate pool
    return f"hub:{describe(cast(DataRef, spec.candidates))}:{dataset._fingerprint}"


def available(spec: TaskSpec, data_cfg: DataConfig) -> dict[str, tuple[str, ...]]:
    """split -> languages that have data (local files present, or hub refs), for planning and checks."""
    if data_cfg.source == "hub":
        return {split: tuple(refs) for split, refs in spec.data.items()}
    data_root(data_cfg)
    out = {split: local_languages(spec, data_cfg, split) for split in SPLITS}
    return {split: langs for split, langs in out.items() if langs}


__all__ = [
    "DataNotFoundError",
    "LOCAL_SUFFIXES",
    "available",
    "candidates_fingerprint",
    "file_fingerprint",
    "hub_ref",
    "load_candidates",
    "load_split",
    "load_uncapped",
    "local_file",
    "read_local_rows",
    "source_fingerprint",
]
