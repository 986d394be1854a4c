"""The evaluation cells of one job: load the model once, evaluate each language, record, mark done.

    evaluate_cells(cfg, cells, store) -> list of result records

The cells of one eval job share (arm, target, seed) and so one model: the target cell's
cells/<target-key>/model for tasks trained on English data, the intermediate cell's encoder for
Tatoeba (Phang et al. 2020 evaluate retrieval straight from the intermediate checkpoint), or the
pretrained `cfg.model.name_or_path` for the baseline arm's Tatoeba. For every cell and split in
`cfg.eval.splits` one record goes to results/<key>.<split>.json (docs/architecture.md); test-split
predictions go to predictions/<arm>/s<seed>/<task>/test-<lang>.<ext> and the gold labels to
labels/<task>/test-<lang>.<ext>, both in the official layout, so `hpcxlt score` can re-score them.
Each cell is marked done as soon as its languages' files are written: a preempted job loses at most
the language it was on, and a rerun skips what is done.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hpcxlt.config import ExperimentConfig, target_train_config
from hpcxlt.evaluate import scoring, submission
from hpcxlt.evaluate.predict import InferenceSettings, predict_split
from hpcxlt.grid.plan import Cell
from hpcxlt.io import read_json, write_json_atomic
from hpcxlt.launcher_env import DistError, launched_world
from hpcxlt.store import RunStore
from hpcxlt.store.run_dir import result_record
from hpcxlt.tasks.registry import get_task
from hpcxlt.tasks.spec import TaskSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def submission_dir(store: RunStore, arm: str, seed: int) -> Path:
    """The official-layout prediction folder of one arm and seed: predictions/<arm>/s<seed>."""
    return store.submission_dir(arm, seed)


# --------------------------------------------------------------------------------------------------
# Which model, loaded once
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ModelSource:
    """Which model an eval cell reads, and how records name it."""

    path: str
    """Folder (or hub id) passed to from_pretrained."""
    revision: str | None
    """Hub revision (only for the pretrained model)."""
    format: str
    """Task format: picks the Hugging Face class (the bare encoder for retrieval)."""
    checkpoint: str
    """What the record's `checkpoint` says: 'cells/<key>/model', or the pretrained id."""
    trained_retrieval: bool
    """True when the model was fine-tuned as a dual encoder (its retrieval head names the layer)."""


def model_source(cfg: ExperimentConfig, cell: Cell, store: RunStore) -> ModelSource:
    """The model an eval cell evaluates: its dependency's exported model, or the pretrained one."""
    if cell.stage != "eval" or not cell.target or not cell.lang:
        raise ValueError(f"cell {cell.key}: not an eval cell (stage {cell.stage!r})")
    spec = get_task(cell.target)
    if len(cell.deps) > 1:
        raise ValueError(f"cell {cell.key}: depends on several cells {list(cell.deps)}; expected one model")
    if cell.deps:
        dep = cell.deps[0]
        expected = "target." if spec.has_training_data() else "inter."
        if not dep.startswith(expected):
            raise ValueError(f"cell {cell.key}: depends on {dep!r}, expected a '{expected}*' cell for {spec.name}")
        return ModelSource(
            path=str(store.model_dir(dep)),
            revision=None,
            format=spec.format,
            checkpoint=store.model_dir(dep).relative_to(store.root).as_posix(),
            trained_retrieval=spec.format == "retrieval" and spec.has_training_data(),
        )
    if spec.has_training_data():
        raise ValueError(
            f"cell {cell.key}: task {spec.name} is trained on English data, but the cell names no target cell"
        )
    name = cfg.model.name_or_path
    checkpoint = f"{name}@{cfg.model.revision}" if cfg.model.revision else name
    return ModelSource(
        path=name, revision=cfg.model.revision, format=spec.format, checkpoint=checkpoint, trained_retrieval=False
    )


@dataclass(kw_only=True)
class LoadedModel:
    """A model in eval mode on its device, its tokenizer, and per-model caches."""

    source: ModelSource
    """Where it came from."""
    model: Any
    """The Hugging Face model (bare encoder for retrieval)."""
    tokenizer: Any
    """Its tokenizer."""
    retrieval_layer: int | None
    """Layer of the retrieval head it was trained with (None: not a trained dual encoder)."""
    pools: dict
    """Retrieval embeddings shared between languages (see hpcxlt.evaluate.retrieval)."""


def _device():

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _trained_layer(path: str) -> int | None:
    # A dual encoder fine-tuned by train_cell is saved as a MultiTaskModel: heads.json names its layer.
    from hpcxlt.model.heads import HEADS_SPEC  # heavy: transformers

    spec_path = Path(path) / HEADS_SPEC
    if not spec_path.is_file():
        return None
    layers = [head["layer"] for head in read_json(spec_path).values() if head.get("format") == "retrieval"]
    return int(layers[0]) if layers else None


class ModelCache:
    """Loads a model the first time it is asked for and keeps it (one at a time) for later cells.

    `loads` counts the from_pretrained calls, so a job can show it loaded its model once.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = device
        self.loads = 0
        self._current: LoadedModel | None = None

    def get(self, source: ModelSource) -> LoadedModel:
        if self._current is not None and self._current.source == source:
            return self._current
        if self._current is not None:
            self._release()
        import transformers  # heavy: transformers

        from hpcxlt.model.heads import AUTO_CLASSES  # heavy: transformers

        started = time.perf_counter()
        kwargs = {"revision": source.revision} if source.revision else {}
        auto = getattr(transformers, AUTO_CLASSES[source.format])
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # its load report is checked below instead
        try:
            model, info = auto.from_pretrained(source.path, output_loading_info=True, **kwargs)
        finally:
            transformers.logging.set_verbosity(verbosity)
        # A head (or encoder) weight missing from the folder would be evaluated as random weights:
        # refuse. The pooler is unused by every format here; heads of other tasks may be left over.
        missing = sorted(
            k for k in info["missing_keys"] if not k.startswith("pooler.") and not k.endswith("position_ids")
        )
        if missing:
            raise ValueError(
                f"{source.path}: holds no trained weights for {', '.join(missing[:4])}"
                f"{' ...' if len(missing) > 4 else ''}; is it a {source.format} model of this task?"
            )
        tokenizer = transformers.AutoTokenizer.from_pretrained(source.path, **kwargs)
        device = self.device if self.device is not None else _device()
        model.to(device).eval()
        self.loads += 1
        layer = _trained_layer(source.path) if source.trained_retrieval else None
        log.info("loaded %s (%s) on %s in %.1f s", source.path, auto.__name__, device, time.perf_counter() - started)
        self._current = LoadedModel(source=source, model=model, tokenizer=tokenizer, retrieval_layer=layer, pools={})
        return self._current

    def _release(self) -> None:
        # Free the previous model (and its retrieval pools) before the next one takes GPU memory.

        self._current = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------------
def check_upstream_model(cell: Cell, source: ModelSource, store: RunStore) -> None:
    """Raise a clear error when the cell the model comes from is not done or left no model folder."""
    if not cell.deps:
        return
    dep = cell.deps[0]
    if not store.is_done(dep):
        raise RuntimeError(
            f"cell {cell.key} evaluates the model of cell {dep}, which is not done; "
            f"finish it first (`hpcxlt status {store.root}`, `hpcxlt resume {store.root}`)"
        )
    if not Path(source.path).is_dir():
        raise FileNotFoundError(
            f"{source.path}: cell {dep} is marked done but holds no exported model; "
            f"remove {store.done_path(dep)} and run that cell again"
        )


def _is_main_rank() -> bool:
    # Evaluation is single-process: under a multi-process launcher only rank 0 works.

    try:
        launched = launched_world()
    except DistError:
        return True
    return launched is None or launched[0] == 0


def _check_job(cells: list[Cell]) -> None:
    for cell in cells:
        if cell.stage != "eval":
            raise ValueError(f"cell {cell.key}: stage {cell.stage!r} is not 'eval'")
    groups = {(c.arm, c.target, c.seed) for c in cells}
    if len(groups) > 1:
        raise ValueError(f"the cells of one eval job must share arm, target and seed; got {sorted(groups)}")


def inference_settings(cfg: ExperimentConfig, spec: TaskSpec, loaded: LoadedModel):
    """Batch size, lengths and retrieval layer for evaluating `spec` with `loaded`."""

    train = target_train_config(cfg, spec.name)
    layer = loaded.retrieval_layer if loaded.retrieval_layer is not None else cfg.eval.retrieval_layer
    return InferenceSettings(
        batch_size=cfg.eval.batch_size, max_length=train.max_length, doc_stride=train.doc_stride, retrieval_layer=layer
    )


def evaluate_cell(cfg: ExperimentConfig, cell: Cell, store: RunStore, loaded: LoadedModel) -> list[dict[str, Any]]:
    """Evaluate one cell on every configured split that its language has; write its prediction and label
    files and return its records (the caller adds them to the job's results file)."""

    if cell.target is None or cell.lang is None:
        raise ValueError(f"cell {cell.key}: an eval cell needs a target task and a language")
    spec = get_task(cell.target)
    settings = inference_settings(cfg, spec, loaded)
    records = []
    for split in cfg.eval.splits:
        if not spec.has_split(cell.lang, split):
            log.info("%s: %s has no %s split in %s; skipped", cell.key, spec.name, split, cell.lang)
            continue
        started = time.perf_counter()
        prediction = predict_split(
            spec, cell.lang, split, loaded.model, loaded.tokenizer, cfg.data, settings, pools=loaded.pools
        )
        metrics = scoring.language_metrics(spec.name, cell.lang, prediction.labels, prediction.predictions)
        score = scoring.language_score(spec.name, metrics, qa_convention=cfg.eval.qa_convention)
        record = result_record(
            cell,
            split=split,
            metrics=metrics,
            score=score,
            n_examples=prediction.n_examples,
            checkpoint=loaded.source.checkpoint,
        )
        if split == "test":
            submission.write_predictions(
                submission_dir(store, cell.arm, cell.seed), spec.name, cell.lang, prediction.predictions
            )
            submission.write_labels(store.labels_dir, spec.name, cell.lang, prediction.labels)
            if prediction.groups is not None:
                write_json_atomic(store.example_groups_path(spec.name, cell.lang), prediction.groups)
        seconds = time.perf_counter() - started
        log.info("%s %s: score %.2f on %d examples in %.1f s", cell.key, split, score, prediction.n_examples, seconds)
        records.append(record)
    return records


def evaluate_cells(
    cfg: ExperimentConfig,
    cells: Iterable[Cell],
    store: RunStore,
    *,
    models: ModelCache | None = None,
    job_key: str | None = None,
) -> list[dict[str, Any]]:
    """Evaluate the cells of one eval job that are not done yet; return the records written.

    The model is loaded once (through `models`, a fresh ModelCache by default) and reused for every
    language. Each cell's records go to the job's results file (`job_key`; looked up in the plan when
    not given), then the cell gets its done marker. Under a multi-process launcher only rank 0
    evaluates; the others return [] at once.
    """
    cells = list(cells)
    _check_job(cells)
    if not _is_main_rank():
        return []
    todo = [cell for cell in cells if not store.is_done(cell.key)]
    if not todo:
        return []
    models = models if models is not None else ModelCache()
    job_key = job_key or store.load_plan().job_of(todo[0].key).key
    records: list[dict[str, Any]] = []
    for cell in todo:
        source = model_source(cfg, cell, store)
        check_upstream_model(cell, source, store)
        loaded = models.get(source)
        started = time.perf_counter()
        cell_records = evaluate_cell(cfg, cell, store, loaded)
        if cell_records:
            store.add_results(job_key, cell_records)
        else:
            log.warning(
                "%s: none of the splits %s exists for %s in %s; marked done without a record",
                cell.key,
                list(cfg.eval.splits),
                cell.target,
                cell.lang,
            )
        store.mark_done(
            cell.key,
            {
                "checkpoint": loaded.source.checkpoint,
                "splits": [r["split"] for r in cell_records],
                "scores": {r["split"]: r["score"] for r in cell_records},
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        records.extend(cell_records)
    return records
