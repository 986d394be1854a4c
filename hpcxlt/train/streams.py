"""A training cell's data: one length-grouped stream of cached features per (task, language), the
examples an arm's budget gives each language, and the probabilities its batches are drawn with.

    build_streams(cfg, setup, tokenizer, seed=, world=) -> (streams, label names)
    example_allocation(cfg, setup)        mixture_probabilities(cfg, cell, setup, sizes)
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from hpcxlt.config import ExperimentConfig
from hpcxlt.grid.plan import Cell
from hpcxlt.train.cell_setup import CellSetup
from hpcxlt.train.engine import device_type
from hpcxlt.train.sampling import Stream, stream_key, stream_probabilities


def _stream_seed(seed: int, key: str) -> int:
    return zlib.crc32(f"{seed}/{key}".encode())


def build_streams(
    cfg: ExperimentConfig,
    setup: CellSetup,
    tokenizer,
    *,
    seed: int,
    world: int,
    split: str = "train",
    languages: dict[str, tuple[str, ...]] | None = None,
    allocation: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[list[Stream], dict[str, tuple[str, ...]]]:
    """One length-grouped stream per (task, language) of training features; also the label names per task.
    `allocation` (`example_allocation`, computed here for the train split when not given) caps the
    examples each budgeted language contributes.

    Called before the process group exists, in every rank: no rank waits in a collective (with its timeout)
    while another tokenizes. The feature cache takes concurrent builders of one key (the first rename wins),
    so ranks that start together at worst tokenize the same split side by side; `hpcxlt prepare --features`
    fills the cache ahead for large sets, and then every rank only reads it.
    """
    if allocation is None:
        allocation = example_allocation(cfg, setup) if split == "train" and setup.examples else {}
    return _streams(
        cfg,
        setup,
        tokenizer,
        seed=seed,
        world=world,
        split=split,
        languages=languages or setup.languages,
        allocation=allocation,
    )


def example_allocation(cfg: ExperimentConfig, setup: CellSetup) -> dict[str, dict[str, int]]:
    """Task -> {language: training examples} for the tasks the arm budgets (`arms[].examples`), from the data's rows."""
    from hpcxlt.data.load import load_split
    from hpcxlt.grid.budget import allocate

    out = {}
    for spec in setup.specs:
        if spec.name in setup.examples:
            sizes = {lang: len(load_split(spec, lang, "train", cfg.data)) for lang in setup.languages[spec.name]}
            out[spec.name] = allocate(setup.examples[spec.name], sizes)
    return out


def _streams(
    cfg: ExperimentConfig,
    setup: CellSetup,
    tokenizer,
    *,
    seed: int,
    world: int,
    split: str,
    languages: dict[str, tuple[str, ...]],
    allocation: Mapping[str, Mapping[str, int]],
) -> tuple[list[Stream], dict[str, tuple[str, ...]]]:
    from hpcxlt.data.collate import LengthGroupedBatchSampler, PadCollator, model_inputs
    from hpcxlt.data.features import MODEL_INPUTS, feature_lengths, load_features

    train = setup.train
    collator = PadCollator(tokenizer.pad_token_id, pad_to_multiple_of=8 if device_type() == "cuda" else None)
    streams, label_names = [], {}
    for spec in setup.specs:
        for lang in languages[spec.name]:
            limit = allocation.get(spec.name, {}).get(lang)
            if limit == 0:
                continue  # the budget is used up by the other languages (sizes were uneven)
            fs = load_features(
                spec,
                lang,
                split,
                tokenizer,
                cfg.data,
                max_length=train.max_length,
                doc_stride=train.doc_stride,
                train=True,
                examples_limit=limit,
            )
            features = fs.features.select_columns([c for c in MODEL_INPUTS if c in fs.features.column_names])
            label_names[spec.name] = tuple(fs.label_names)
            if len(features) == 0:
                raise ValueError(f"{spec.name}/{lang}/{split}: no {split} examples after featurization")
            sampler = LengthGroupedBatchSampler(
                feature_lengths(features),
                train.micro_batch_size * world,
                seed=_stream_seed(seed, stream_key(spec.name, lang)),
                num_replicas=1,
            )
            streams.append(
                Stream(
                    task=spec.name,
                    lang=lang,
                    dataset=features,
                    epoch_batches=sampler.epoch_batches,
                    collate=lambda rows: model_inputs(collator(rows)),
                )
            )
    return streams, label_names


def mixture_probabilities(
    cfg: ExperimentConfig, cell: Cell, setup: CellSetup, sizes: Mapping[str, int]
) -> tuple[dict[str, float], str]:
    """(probability of each stream, rule): an intermediate mix samples by its arm's rule; any other cell
    (one task, its languages' streams) in proportion to the streams' sizes, as one concatenated set would."""
    from hpcxlt.config import SamplingConfig

    sampling = (
        cfg.arm(cell.arm).sampling
        if setup.multi_task and cell.stage == "intermediate"
        else SamplingConfig(rule="proportional")
    )
    return stream_probabilities(sizes, sampling), sampling.rule
