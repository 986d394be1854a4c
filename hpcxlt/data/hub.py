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
"""

from __future__ import annotations

from hpcxlt.data.local import DataNotFoundError
from hpcxlt.data.schemas import SchemaError, check_columns, label_columns
from hpcxlt.tasks.spec import DataRef, TaskSpec


def describe(ref: DataRef) -> str:
    """'id' (config 'c', split 's', revision 'r') for messages."""
    parts = [f"config {ref.config!r}", f"split {ref.split!r}"]
    if ref.revision:
        parts.append(f"revision {ref.revision!r}")
    return f"{ref.hf_id!r} ({', '.join(parts)})"


def _align_labels(dataset, spec: TaskSpec, column: str, where: str):
    """Re-map a ClassLabel (or sequence of ClassLabel) column to the registry's label ids by name."""
    import datasets

    feature = dataset.features[column]
    inner = getattr(feature, "feature", None) if not isinstance(feature, datasets.ClassLabel) else feature
    if isinstance(feature, datasets.List) or isinstance(feature, datasets.Sequence):
        inner = feature.feature
    if not isinstance(inner, datasets.ClassLabel) or not spec.label_names:
        return dataset
    names = tuple(inner.names)
    if names == tuple(spec.label_names):
        return dataset
    unknown = [name for name in names if name not in spec.label_names]
    if unknown:
        raise SchemaError(f"{where}: column {column!r} has labels {list(names)}; {unknown} are not among task "
                          f"{spec.name!r}'s labels {list(spec.label_names)}")
    mapping = {old: spec.label_names.index(name) for old, name in enumerate(names)}
    mapping[-1] = -1
    sequence = inner is not feature

    def remap(values):
        if sequence:
            return {column: [[mapping[v] for v in row] for row in values]}
        return {column: [mapping[v] for v in values]}

    target = datasets.ClassLabel(names=list(spec.label_names))
    features = dataset.features.copy()
    features[column] = datasets.List(target) if sequence else target
    from hpcxlt.data.cache import quiet_datasets

    with quiet_datasets():
        return dataset.map(remap, input_columns=column, batched=True, features=features)


def _schema_columns(dataset, spec: TaskSpec):
    """Only the columns the schema reads, so sources with different extras can be joined."""
    from hpcxlt.tasks.registry import SCHEMA_COLUMNS

    keep = [c for c in dataset.column_names if c in SCHEMA_COLUMNS[spec.schema]]
    return dataset.select_columns(keep)


def load_ref(ref: DataRef, spec: TaskSpec, lang: str, split: str):
    """The rows of `ref` in the task's schema (renames, checks, label alignment, id filter, sources joined)."""
    import datasets

    where = f"task {spec.name!r}, language {lang!r}, split {split!r} from {describe(ref)}"
    try:
        dataset = datasets.load_dataset(ref.hf_id, ref.config, split=ref.split, revision=ref.revision)
    except Exception as err:  # offline mode, missing config, network: all need the same hint
        raise DataNotFoundError(
            f"could not load {where}: {type(err).__name__}: {err}. On a machine without the hub "
            "(HF_HUB_OFFLINE=1, no network) run `hpcxlt prepare CONFIG --out DIR` where the hub is reachable "
            "and use data.source: local with data.root: DIR"
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
            parts.append(_schema_columns(load_ref(extra, spec, lang, split), spec).cast(parts[0].features))
        dataset = datasets.concatenate_datasets(parts)
    return dataset


def hub_ref(spec: TaskSpec, lang: str, split: str) -> DataRef:
    """The registry's hub location of a split; DataNotFoundError lists the splits and languages it has."""
    refs = spec.data.get(split)
    if refs is None:
        raise DataNotFoundError(f"task {spec.name!r} has no {split!r} split on the hub; it has: "
                                f"{', '.join(spec.data) or 'none (local files only)'}")
    if lang not in refs:
        raise DataNotFoundError(f"task {spec.name!r} has no {split!r} data for language {lang!r}; it has: {', '.join(refs)}")
    return refs[lang]


__all__ = ["describe", "hub_ref", "load_ref"]
