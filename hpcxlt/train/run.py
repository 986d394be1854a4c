"""One training cell (intermediate or target) from start, or from its newest checkpoint, to a done marker.

    train_cell(cfg, cell, store)     called in every rank by the launch layer, under any launcher

Intermediate cell (Phang et al. 2020, step 1): one shared encoder and one head per task of the arm,
batches drawn from the arm's (task, language) streams by its sampling rule. Target cell (step 2):
the target task's Hugging Face model; for an arm other than 'none' its encoder starts from the
intermediate cell's final model and its head is new. Either way the cell ends with
cells/<key>/model/ (save_pretrained of the fp32 weights + tokenizer: evaluation needs no DeepSpeed)
and cells/<key>/done.json; its DeepSpeed checkpoints are deleted then, as nothing reads them again.

A preemption signal makes `train_cell` raise `hpcxlt.train.loop.Preempted` (checkpoint saved, run
it again to continue); finishing returns None; a cell already done returns at once.
"""

from __future__ import annotations

import logging
import shutil
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from hpcxlt.config import ExperimentConfig, TrainConfig, arm_train_config, target_train_config
from hpcxlt.io import publish_dir
from hpcxlt.grid.plan import Cell, dev_language
from hpcxlt.store import RunStore
from hpcxlt.tasks.registry import get_task
from hpcxlt.tasks.spec import TaskSpec
from hpcxlt.train import checkpoint as ckpt
from hpcxlt.train import dist
from hpcxlt.train.engine import Engine, consolidated_state_dict, device_type, init_distributed
from hpcxlt.train.loop import LoopConfig, train_loop
from hpcxlt.train.sampling import Mixture, Stream, epochs_to_steps, stream_key, stream_probabilities
from hpcxlt.train.selection import dev_loss, dev_metric
from hpcxlt.train.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class CellSetup:
    """What a training cell trains: hyperparameters, tasks, and languages per task."""

    train: TrainConfig
    """Merged hyperparameters (experiment defaults + arm or target overrides)."""
    specs: tuple[TaskSpec, ...]
    """Tasks trained (several for a multi-task intermediate arm)."""
    languages: dict[str, tuple[str, ...]]
    """Task -> training languages."""
    multi_task: bool
    """True for intermediate cells: shared encoder + one head per task, forward(task=...)."""
    examples: Mapping[str, int] = field(default_factory=dict)
    """Task -> training-example budget spread over its languages (the arm's `examples`; empty: all)."""


def cell_setup(cfg: ExperimentConfig, cell: Cell) -> CellSetup:
    """Hyperparameters, tasks and languages of a training cell."""
    if cell.stage == "intermediate":
        arm = cfg.arm(cell.arm)
        specs = tuple(get_task(t) for t in arm.tasks)
        languages = {s.name: tuple(arm.languages.get(s.name, s.train_languages)) for s in specs}
        return CellSetup(train=arm_train_config(cfg, arm), specs=specs, languages=languages, multi_task=True,
                         examples=dict(arm.examples))
    if cell.stage == "target":
        if not cell.target:
            raise ValueError(f"cell {cell.key}: a target cell names no target task")
        spec = get_task(cell.trains or cell.target)  # a prelude cell trains on its prelude task
        if not spec.has_training_data():
            raise ValueError(f"cell {cell.key}: task {spec.name!r} has no training data to fine-tune on")
        return CellSetup(train=target_train_config(cfg, cell.target), specs=(spec,),
                         languages={spec.name: tuple(spec.train_languages)}, multi_task=spec.format == "retrieval")
    raise ValueError(f"cell {cell.key}: stage {cell.stage!r} is not a training stage (intermediate or target)")


def prelude_of(cell: Cell) -> str | None:
    """Key of the prelude target cell whose whole model (head included) this target cell continues."""
    deps = [d for d in cell.deps if d.startswith("target.")]
    return deps[0] if cell.stage == "target" and deps else None


def intermediate_of(cell: Cell, store: RunStore) -> str | None:
    """Key of the intermediate cell a target cell starts from (None for the 'none' baseline)."""
    deps = [d for d in cell.deps if d.startswith("inter.")]
    if cell.stage != "target" or not deps:
        return None
    if len(deps) > 1:
        raise ValueError(f"cell {cell.key}: depends on several intermediate cells {deps}")
    return deps[0]


# -- model -------------------------------------------------------------------------------------------

def _num_labels(spec: TaskSpec, label_names: tuple[str, ...]) -> int | None:
    return len(label_names) if spec.format in ("classification", "tagging") else None


def model_builder(cfg: ExperimentConfig, setup: CellSetup, label_names: dict[str, tuple[str, ...]]) -> Callable[[], Any]:
    """A function that builds the cell's fresh model (pretrained encoder, new heads)."""
    from hpcxlt.model import heads

    path, revision = cfg.model.name_or_path, cfg.model.revision
    if setup.multi_task:
        tasks = {s.name: (s.format, _num_labels(s, label_names[s.name])) for s in setup.specs}
        return lambda: heads.MultiTaskModel.from_tasks(path, tasks, revision=revision)
    spec = setup.specs[0]
    return lambda: heads.build_model(spec.format, path, label_names=label_names[spec.name] or None, revision=revision)


def build_cell_model(cfg: ExperimentConfig, cell: Cell, store: RunStore, setup: CellSetup,
                     label_names: dict[str, tuple[str, ...]]) -> tuple[Any, Callable[[], Any], dict | None]:
    """(model, builder, init_from): the model a cell starts training from, seeded by the cell's seed.

    A target cell of an intermediate arm gets the intermediate model's encoder (its head stays new);
    `init_from` records which cell, folder and checkpoint step that encoder came from.
    """
    from hpcxlt.model import heads

    previous = prelude_of(cell)
    if previous is not None:  # continue the prelude's model as it is (XTREME-R: COPA after SIQA)
        info = store.done_info(previous)
        if info is None:
            raise RuntimeError(f"cell {cell.key} continues prelude cell {previous}, which is not done")
        spec, folder = setup.specs[0], store.model_dir(previous)
        builder = lambda: heads.build_model(spec.format, str(folder), label_names=label_names[spec.name] or None)  # noqa: E731
        model = builder()
        log.info("cell %s: whole model from prelude %s", cell.key, folder)
        return model, builder, {"cell": previous, "model_dir": str(folder), "checkpoint": info.get("checkpoint"),
                                "step": info.get("step"), "whole_model": True}
    builder = model_builder(cfg, setup, label_names)
    ckpt.seed_everything(cell.seed)  # the new heads' initialization depends only on the seed
    model = builder()
    source = intermediate_of(cell, store)
    if source is None:
        return model, builder, None
    info = store.done_info(source)
    if info is None:
        raise RuntimeError(f"cell {cell.key} starts from intermediate cell {source}, which is not done")
    folder = store.model_dir(source)
    encoder_host = model.encoder if isinstance(model, heads.MultiTaskModel) else model
    copied = heads.init_from_intermediate(encoder_host, folder)
    log.info("cell %s: encoder from %s (%d tensors), head new", cell.key, folder, len(copied))
    return model, builder, {"cell": source, "model_dir": str(folder), "checkpoint": info.get("checkpoint"),
                            "step": info.get("step"), "tensors": len(copied)}


# -- data --------------------------------------------------------------------------------------------

def _stream_seed(seed: int, key: str) -> int:
    return zlib.crc32(f"{seed}/{key}".encode())


def build_streams(cfg: ExperimentConfig, setup: CellSetup, tokenizer, *, seed: int, world: int, split: str = "train",
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
    return _streams(cfg, setup, tokenizer, seed=seed, world=world, split=split, languages=languages or setup.languages,
                    allocation=allocation)


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


def _streams(cfg: ExperimentConfig, setup: CellSetup, tokenizer, *, seed: int, world: int, split: str,
             languages: dict[str, tuple[str, ...]], allocation: Mapping[str, Mapping[str, int]],
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
            fs = load_features(spec, lang, split, tokenizer, cfg.data, max_length=train.max_length,
                               doc_stride=train.doc_stride, train=True, examples_limit=limit)
            features = fs.features.select_columns([c for c in MODEL_INPUTS if c in fs.features.column_names])
            label_names[spec.name] = tuple(fs.label_names)
            if len(features) == 0:
                raise ValueError(f"{spec.name}/{lang}/{split}: no {split} examples after featurization")
            sampler = LengthGroupedBatchSampler(
                feature_lengths(features), train.micro_batch_size * world,
                seed=_stream_seed(seed, stream_key(spec.name, lang)), num_replicas=1)
            streams.append(Stream(task=spec.name, lang=lang, dataset=features, epoch_batches=sampler.epoch_batches,
                                  collate=lambda rows: model_inputs(collator(rows))))
    return streams, label_names


# -- the cell ----------------------------------------------------------------------------------------

def train_cell(cfg: ExperimentConfig, cell: Cell, store: RunStore) -> None:
    """Train one cell to its done marker; resumes from the newest complete checkpoint; raises Preempted on a signal."""
    if store.is_done(cell.key):
        log.info("cell %s is done already", cell.key)
        return
    from transformers import AutoTokenizer

    launched = dist.detect()
    world = launched.world_size
    setup = cell_setup(cfg, cell)
    train = setup.train
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path,
                                              **({"revision": cfg.model.revision} if cfg.model.revision else {}))
    # the data first, the process group after it (see build_streams)
    allocation = example_allocation(cfg, setup) if setup.examples else {}  # read once: streams and the log
    streams, label_names = build_streams(cfg, setup, tokenizer, seed=cell.seed, world=world, allocation=allocation)
    dev_streams = None
    if train.eval_every and train.select_by == "loss":
        dev_langs = {s.name: (dev_language(setup.languages[s.name]),) for s in setup.specs}
        dev_streams, _ = build_streams(cfg, setup, tokenizer, seed=cell.seed, world=world, split="dev", languages=dev_langs)
    init_distributed(launched)
    sizes = {s.key: s.size for s in streams}
    probabilities, rule = mixture_probabilities(cfg, cell, setup, sizes)
    total_steps = train.max_steps or epochs_to_steps(
        sizes, epochs=train.epochs, global_batch=train.micro_batch_size * world, grad_accum=train.grad_accum)

    model, builder, init_from = build_cell_model(cfg, cell, store, setup, label_names)
    engine = Engine(model, train, total_steps=total_steps)
    ckpt.seed_everything(cell.seed * 1000 + dist.get_rank())  # dropout masks differ between ranks
    mixture = Mixture(streams, probabilities, seed=cell.seed, rank=dist.get_rank(), world_size=world, rule=rule)
    forward_kwargs = (lambda task: {"task": task}) if setup.multi_task else None
    evaluate = None
    if train.eval_every:  # 'last' still logs the dev metric at each evaluation
        evaluate = dev_loss(dev_streams, forward_kwargs) if train.select_by == "loss" else dev_metric(
            cfg, setup.specs, setup.languages, tokenizer, multi_task=setup.multi_task, max_length=train.max_length,
            doc_stride=train.doc_stride)
    loop_cfg = LoopConfig(
        total_steps=total_steps, checkpoint_dir=store.checkpoints_dir(cell.key), log_path=store.train_log_path(cell.key),
        save_every=train.save_every, keep_last=train.keep_last, log_every=max(1, min(50, total_steps // 50)),
        eval_every=train.eval_every, greater_is_better=train.select_by != "loss", select_best=train.select_by != "last",
        patience=train.patience, min_delta=train.min_delta,
    )
    encoder_config = getattr(model, "config", None) or model.encoder.config
    extra = {"cell": cell.key, "seed": cell.seed, "fingerprint": cell.fingerprint, "init_from": init_from,
             "stream_sizes": sizes, "attention": getattr(encoder_config, "_attn_implementation", None),
             "examples": allocation or None,
             "precision": engine.precision, "zero_stage": train.zero_stage,
             "selection_rule": {"by": train.select_by, "eval_every": train.eval_every, "patience": train.patience,
                           "min_delta": train.min_delta}}
    tracker = Tracker.for_cell(cfg, cell.key, store.cell_dir(cell.key), store.root, cell.fingerprint) \
        if dist.is_main() else None
    try:
        result = train_loop(engine, mixture, loop_cfg, forward_kwargs=forward_kwargs, evaluate=evaluate,
                            extra_state=extra, on_record=tracker.record if tracker else None)
    finally:
        if tracker is not None:
            tracker.close()

    source = result.best_checkpoint or result.final_checkpoint
    selected_by = train.select_by if train.eval_every and result.best_checkpoint else "last"
    if dist.is_main():
        export_model(builder, source, store.model_dir(cell.key), tokenizer)
        store.mark_done(cell.key, {
            "step": result.step, "checkpoint": ckpt.step_name(ckpt.step_of(source)), "model": str(store.model_dir(cell.key)),
            "selection": {"by": selected_by, "step": ckpt.step_of(source),
                          "metric": result.best_metric if selected_by != "last" else None,
                          "stopped_early": bool(result.selection.get("stopped"))},
            "init_from": init_from, "world_size": world,
            "resumed_from": result.resumed_from, "counts": result.counts,
        })
        shutil.rmtree(store.checkpoints_dir(cell.key), ignore_errors=True)
    dist.barrier()


def mixture_probabilities(cfg: ExperimentConfig, cell: Cell, setup: CellSetup,
                          sizes: Mapping[str, int]) -> tuple[dict[str, float], str]:
    """(probability of each stream, rule): an intermediate mix samples by its arm's rule; any other cell
    (one task, its languages' streams) in proportion to the streams' sizes, as one concatenated set would."""
    from hpcxlt.config import SamplingConfig

    sampling = cfg.arm(cell.arm).sampling if setup.multi_task and cell.stage == "intermediate" else \
        SamplingConfig(rule="proportional")
    return stream_probabilities(sizes, sampling), sampling.rule


def export_model(builder: Callable[[], Any], checkpoint: Path, out: Path, tokenizer) -> Path:
    """Write the fp32 weights of `checkpoint` as a Hugging Face model folder + tokenizer at `out` (atomically)."""
    started = time.perf_counter()
    import transformers

    state = consolidated_state_dict(checkpoint)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the rebuild's "newly initialized head" report is noise here
    try:
        model = builder()
    finally:
        transformers.logging.set_verbosity(verbosity)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # non-persistent buffers (position ids) are rebuilt by the model itself; anything else must match
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:
        raise RuntimeError(f"{checkpoint}: weights do not fit the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    # what an earlier, interrupted export of this checkpoint left is replaced
    publish_dir(out, lambda tmp: (model.save_pretrained(tmp), tokenizer.save_pretrained(tmp)), replace=True)
    log.info("exported %s to %s in %.1f s", checkpoint, out, time.perf_counter() - started)
    return out
