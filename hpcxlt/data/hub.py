"""Rows of one registry `DataRef` from the Hugging Face hub (or a local folder laid out like a hub
repository: `hf_id` may be a path), made to fit the registry's schema.

What a hub copy can get wrong, and what is done about it here:
- columns: renamed by `DataRef.rename`, then checked against the schema: a missing column is an error
  naming the data set, config, split, the expected and the found columns;
- label order: a `ClassLabel` column whose names are in another order than the registry's (AfriSenti,
  a UD mirror) is re-mapped *by name*; a name the registry does not know is an error;
- several sources (ANLI+ = ANLI + MNLI + SNLI) are cut to the schema's columns and aligned before they
  are joined, since their extra columns differ (ANLI's uid/reason, GLUE's idx);
- repositories that only ship a loading script (which `datasets` >= 4 no longer runs) are read at the
  hub's parquet conversion, `DataRef.revision = "refs/convert/parquet"`.

A hub mirror (`data.hub_mirror`) holds repository snapshots as `<mirror>/<owner>/<name>` (default
revision) and `<mirror>/<owner>/<name>@<revision>` (e.g. `allenai/social_i_qa@refs/convert/parquet`, as
`huggingface-cli download --repo-type dataset ID --revision REV --local-dir ...` writes them); the same
`datasets.load_dataset` call then reads the snapshot instead of the hub.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from hpcxlt.data.cache import quiet_datasets
from hpcxlt.data.local import DataNotFoundError, read_local_rows, rows_to_dataset
from hpcxlt.data.release import release_file
from hpcxlt.data.schemas import SchemaError, check_columns, label_columns
from hpcxlt.tasks.registry import SCHEMA_COLUMNS
from hpcxlt.tasks.spec import DataRef, TaskSpec


def describe(ref: DataRef) -> str:
    """'id' (config 'c', split 's', revision 'r') for messages; the URL and hash of a release file."""
    if ref.url:
        return f"{ref.url} (sha256 {ref.sha256 or 'not pinned'})"
    parts = [f"config {ref.config!r}", f"split {ref.split!r}"]
    if ref.revision:
        parts.append(f"revision {ref.revision!r}")
    return f"{ref.hf_id!r} ({', '.join(parts)})"


def _align_labels(dataset, spec: TaskSpec, column: str, where: str):
    """Re-map a ClassLabel (or sequence of ClassLabel) column to the registry's label ids by name."""
    import datasets  # heavy: datasets

    feature = dataset.features[column]
    sequence = isinstance(feature, (datasets.List, datasets.LargeList))
    inner = feature.feature if sequence else feature
    if not isinstance(inner, datasets.ClassLabel) or not spec.label_names:
        return dataset
    names = tuple(inner.names)
    if names == tuple(spec.label_names):
        return dataset
    unknown = [name for name in names if name not in spec.label_names]
    if unknown:
        raise SchemaError(
            f"{where}: column {column!r} has labels {list(names)}; {unknown} are not among task "
            f"{spec.name!r}'s labels {list(spec.label_names)}"
        )
    mapping = {old: spec.label_names.index(name) for old, name in enumerate(names)}
    mapping[-1] = -1

    def remap(values):
        if sequence:
            return {column: [[mapping[v] for v in row] for row in values]}
        return {column: [mapping[v] for v in values]}

    target = datasets.ClassLabel(names=list(spec.label_names))
    features = dataset.features.copy()
    features[column] = datasets.List(target) if sequence else target

    with quiet_datasets():
        return dataset.map(remap, input_columns=column, batched=True, features=features)


def _schema_columns(dataset, spec: TaskSpec):
    """Only the columns the schema reads, so sources with different extras can be joined."""

    keep = [c for c in dataset.column_names if c in SCHEMA_COLUMNS[spec.schema]]
    return dataset.select_columns(keep)


def repository(ref: DataRef, mirror: str | None) -> dict:
    """The arguments of `datasets.load_dataset` that read `ref`: the hub id and revision, or the
    mirror's snapshot folder with a cache folder of its own."""
    if not mirror:
        return {"path": ref.hf_id, "revision": ref.revision}
    folder = Path(mirror).expanduser() / (f"{ref.hf_id}@{ref.revision}" if ref.revision else ref.hf_id)
    if not folder.is_dir():
        raise DataNotFoundError(f"the hub mirror {mirror} has no copy of {describe(ref)}: expected the folder {folder}")
    return {"path": str(folder), "cache_dir": _snapshot_cache(folder)}


def _snapshot_cache(folder: Path) -> str:
    """A `datasets` cache folder for one state of a local snapshot. `datasets` keys the cache of a local
    folder by its file names only, so two snapshots with equal names (or one updated in place) would
    share stale Arrow files; here the key is the folder's path and every file's size and mtime."""
    import datasets  # heavy: datasets

    digest = hashlib.blake2b(str(folder.resolve()).encode(), digest_size=12)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "hpcxlt-mirror" / digest.hexdigest())


HUB_PROBE_TIMEOUT_S = 10


def hub_unreachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be reached from here (None: it answered). One request to the
    endpoint (HF_ENDPOINT, else huggingface.co), any HTTP answer counting as reachable: `prepare` asks once
    instead of letting `datasets` retry every split for half a minute on a machine with no network."""

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError) as err:
        return f"{endpoint} does not answer ({getattr(err, 'reason', err)})"
    return None


def load_ref(ref: DataRef, spec: TaskSpec, lang: str, split: str, *, mirror: str | None = None):
    """The rows of `ref` in the task's schema (renames, checks, label alignment, id filter, sources joined)."""
    import datasets  # heavy: datasets

    where = f"task {spec.name!r}, language {lang!r}, split {split!r} from {describe(ref)}"
    if ref.url:  # an official release file outside the hub, read with the local source's readers
        path = release_file(ref, where)
        dataset = rows_to_dataset(read_local_rows(path, spec, lang), path)
        check_columns(spec, dataset.column_names, where=where)
        return dataset
    try:
        dataset = datasets.load_dataset(name=ref.config, split=ref.split, **repository(ref, mirror))
    except Exception as err:  # offline mode, missing config, network: all need the same hint
        script = "script" in str(err).lower() and not ref.revision
        raise DataNotFoundError(
            f"could not load {where}: {type(err).__name__}: {err}. "
            + (
                "The repository ships only a loading script, which `datasets` no longer runs: give its DataRef "
                "revision='refs/convert/parquet' (the hub's parquet conversion). "
                if script
                else ""
            )
            + "On a machine without the hub (HF_HUB_OFFLINE=1, no network) run `hpcxlt prepare CONFIG --out DIR` "
            "where the hub is reachable and use data.source: local with data.root: DIR"
        ) from err
    if ref.rename:
        dataset = dataset.rename_columns(dict(ref.rename))
    check_columns(spec, dataset.column_names, where=where)
    for column in label_columns(spec):
        dataset = _align_labels(dataset, spec, column, where)
    if ref.id_prefix:
        prefix = ref.id_prefix
        dataset = dataset.filter(lambda ids: [i.startswith(prefix) for i in ids], input_columns="id", batched=True)
    if ref.concat:
        parts = [_schema_columns(dataset, spec)]
        for extra in ref.concat:
            parts.append(
                _schema_columns(load_ref(extra, spec, lang, split, mirror=mirror), spec).cast(parts[0].features)
            )
        dataset = datasets.concatenate_datasets(parts)
    return dataset


def hub_ref(spec: TaskSpec, lang: str, split: str) -> DataRef:
    """The registry's hub location of a split; DataNotFoundError lists the splits and languages it has."""
    refs = spec.data.get(split)
    if refs is None:
        raise DataNotFoundError(
            f"task {spec.name!r} has no {split!r} split on the hub; it has: "
            f"{', '.join(spec.data) or 'none (local files only)'}"
        )
    if lang not in refs:
        raise DataNotFoundError(
            f"task {spec.name!r} has no {split!r} data for language {lang!r}; it has: {', '.join(refs)}"
        )
    return refs[lang]


__all__ = ["describe", "hub_ref", "load_ref", "repository"]
