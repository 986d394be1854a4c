"""The features of one split of one language of a task, from the on-disk cache or tokenized now.

    load_features(spec, lang, split, tokenizer, data_cfg, max_length=...) -> FeatureSet
    load_candidate_features(spec, tokenizer, data_cfg, max_length=...)     -> FeatureSet (Mewsli-X pool)
    tag_names(spec, data_cfg)                                               -> tag names in id order

The rows come from `hpcxlt.data.load`, the features from `hpcxlt.data.featurize` (columns per format in
its docstring), the cache from `hpcxlt.data.cache` (keyed by tokenizer, task, split, settings and the
source data's fingerprint).
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcxlt.config.schema import DataConfig
from hpcxlt.data import cache, schemas
from hpcxlt.data.featurize import (  # noqa: F401  (MODEL_INPUTS, feature_lengths: train/streams imports them from here)
    FEATURES_VERSION,
    MODEL_INPUTS,
    feature_lengths,
    featurize,
    is_train_mode,
    tokenize_items,
)
from hpcxlt.data.load import candidates_fingerprint, load_candidates, load_split, source_fingerprint
from hpcxlt.tasks.spec import TaskSpec


@dataclass(frozen=True, kw_only=True)
class FeatureSet:
    """Features of one split of one language of a task, with the rows they came from."""

    features: Any
    """`datasets.Dataset` of model features (columns in the module docstring)."""
    examples: Any
    """`datasets.Dataset` of the raw rows (QA post-processing and retrieval keys need them)."""
    cache_hit: bool
    """True when the features were read from the on-disk cache instead of being tokenized."""
    cache_path: Path | None
    """Folder of the cached features (None when caching is off)."""
    label_names: tuple[str, ...]
    """Label / tag names in id order (from the registry, or from the training data for CCG)."""


TAG_SET_FILE = "tags_to_id.json"


def tag_names(spec: TaskSpec, data_cfg: DataConfig) -> tuple[str, ...]:
    """Tag / label names in id order: the registry's; for a task without a fixed set (CCG) the release's
    tag map `<root>/<task>/tags_to_id.json` ({tag: id}, as jiant ships CCGbank's 1,363 supertags) when
    local data has one, else the sorted tags of the first training language's training split.

    Evaluation counts a gold tag outside this set as an error (never dropped), so a dev set's unseen
    supertags lower the accuracy as in jiant.
    """
    if spec.label_names or spec.format != "tagging":
        return tuple(spec.label_names)
    if data_cfg.source == "local" and data_cfg.root:
        path = Path(data_cfg.root).expanduser() / spec.name / TAG_SET_FILE
        if path.is_file():
            mapping = json.loads(path.read_text(encoding="utf-8"))
            ids = sorted(int(i) for i in mapping.values())
            if ids != list(range(len(ids))):
                raise ValueError(f"{path}: tag ids must be 0..{len(ids) - 1}, each once")
            return tuple(sorted(mapping, key=lambda tag: int(mapping[tag])))
    if not spec.train_languages:
        raise ValueError(f"task {spec.name!r} lists no label names and has no training data to take them from")
    rows = load_split(spec, spec.train_languages[0], "train", data_cfg)
    return tuple(sorted({str(tag) for tags in rows[spec.columns["tags"]] for tag in tags}))


def load_features(
    spec: TaskSpec,
    lang: str,
    split: str,
    tokenizer,
    data_cfg: DataConfig,
    *,
    max_length: int,
    doc_stride: int = 32,
    train: bool | None = None,
    use_cache: bool = True,
    examples_limit: int | None = None,
) -> FeatureSet:
    """Features of one split of one language, from the cache under data_cfg.cache_dir when an
    equal tokenizer, task, split, settings and source data were featurized before.

    `train` defaults to split == 'train' (training features); pass False to get evaluation features
    of a training split or True for training features of a dev split. `examples_limit` keeps a fixed
    subset of that many raw examples (`subset_indices`; an arm's `examples` budget) before featurizing.
    """
    train = is_train_mode(split) if train is None else train
    examples = load_split(spec, lang, split, data_cfg)
    source = source_fingerprint(spec, lang, split, data_cfg, examples)
    subset = None
    if examples_limit is not None and examples_limit < len(examples):
        examples = examples.select(subset_indices(spec.name, lang, len(examples), examples_limit))
        subset = examples_limit
    names = tag_names(spec, data_cfg)
    key = cache.feature_key(
        tokenizer=cache.tokenizer_fingerprint(tokenizer),
        task=spec.name,
        lang=lang,
        split=split,
        settings={
            "train": train,
            "max_length": max_length,
            "doc_stride": doc_stride if spec.format == "qa" else None,
            "label_names": list(names),
            "format": spec.format,
            "version": FEATURES_VERSION,
            **({"subset": subset} if subset is not None else {}),
        },
        source=source,
    )
    if not use_cache:
        return FeatureSet(
            features=featurize(
                spec,
                examples,
                tokenizer,
                train=train,
                max_length=max_length,
                doc_stride=doc_stride,
                label_names=names,
                lang=lang,
            ),
            examples=examples,
            cache_hit=False,
            cache_path=None,
            label_names=names,
        )
    path, hit, features = cache.get_or_build(
        data_cfg.cache_dir,
        key,
        f"{spec.name}.{lang}.{split}",
        lambda: featurize(
            spec,
            examples,
            tokenizer,
            train=train,
            max_length=max_length,
            doc_stride=doc_stride,
            label_names=names,
            lang=lang,
        ),
    )
    return FeatureSet(features=features, examples=examples, cache_hit=hit, cache_path=path, label_names=names)


def subset_indices(task: str, lang: str, size: int, keep: int) -> list[int]:
    """`keep` of `size` row indices, ascending: the same for every seed and run (seeded by task and language
    only), so seeds differ in training alone and arms with equal budgets read the same rows of a shared task."""
    return sorted(random.Random(zlib.crc32(f"subset/{task}/{lang}".encode())).sample(range(size), keep))


def load_candidate_features(
    spec: TaskSpec, tokenizer, data_cfg: DataConfig, *, max_length: int, use_cache: bool = True
) -> FeatureSet:
    """Evaluation features (role 1) of a task's shared candidate pool (Mewsli-X)."""
    import datasets  # heavy: off the import path of `hpcxlt prepare` and `plan`

    rows = load_candidates(spec, data_cfg)

    def build():
        return datasets.Dataset.from_dict(tokenize_items(tokenizer, [], schemas.candidate_items(rows), max_length))

    if not use_cache:
        return FeatureSet(features=build(), examples=rows, cache_hit=False, cache_path=None, label_names=())
    key = cache.feature_key(
        tokenizer=cache.tokenizer_fingerprint(tokenizer),
        task=spec.name,
        lang="*",
        split="candidates",
        settings={"max_length": max_length, "version": FEATURES_VERSION},
        source=candidates_fingerprint(spec, data_cfg),
    )
    path, hit, features = cache.get_or_build(data_cfg.cache_dir, key, f"{spec.name}.candidates", build)
    return FeatureSet(features=features, examples=rows, cache_hit=hit, cache_path=path, label_names=())
