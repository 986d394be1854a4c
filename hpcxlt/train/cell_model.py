"""The model a training cell starts from, and the model folder it ends with.

    build_cell_model(cfg, cell, store, setup, label_names) -> (model, builder, init_from)
    export_model(builder, checkpoint, out, tokenizer)

A target cell of an intermediate arm starts from the intermediate model's encoder with a new head; a
cell after a prelude continues the prelude's whole model; any other cell starts from the pretrained
encoder. The export writes the fp32 weights of the selected checkpoint as a Hugging Face folder
(save_pretrained + tokenizer), so evaluation needs no DeepSpeed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpcxlt.config import ExperimentConfig
from hpcxlt.grid.plan import Cell
from hpcxlt.io import publish_dir
from hpcxlt.store import RunStore
from hpcxlt.tasks.spec import TaskSpec
from hpcxlt.train import checkpoint as ckpt
from hpcxlt.train.cell_setup import CellSetup, intermediate_of, prelude_of
from hpcxlt.train.engine import consolidated_state_dict

log = logging.getLogger(__name__)


def _num_labels(spec: TaskSpec, label_names: tuple[str, ...]) -> int | None:
    return len(label_names) if spec.format in ("classification", "tagging") else None


def model_builder(
    cfg: ExperimentConfig, setup: CellSetup, label_names: dict[str, tuple[str, ...]]
) -> Callable[..., Any]:
    """A function that builds the cell's fresh model (pretrained encoder, new heads); `weights=False`: the
    architecture alone, on the meta device."""
    from hpcxlt.model import heads

    path, revision = cfg.model.name_or_path, cfg.model.revision
    if setup.multi_task:
        tasks = {s.name: (s.format, _num_labels(s, label_names[s.name])) for s in setup.specs}
        return lambda weights=True: heads.MultiTaskModel.from_tasks(path, tasks, revision=revision, weights=weights)
    spec = setup.specs[0]
    names = label_names[spec.name] or None
    return lambda weights=True: heads.build_model(
        spec.format, path, label_names=names, revision=revision, weights=weights
    )


def build_cell_model(
    cfg: ExperimentConfig, cell: Cell, store: RunStore, setup: CellSetup, label_names: dict[str, tuple[str, ...]]
) -> tuple[Any, Callable[..., Any], dict | None]:
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
        names = label_names[spec.name] or None
        builder = lambda weights=True: heads.build_model(spec.format, str(folder), label_names=names, weights=weights)  # noqa: E731
        model = builder()
        log.info("cell %s: whole model from prelude %s", cell.key, folder)
        return (
            model,
            builder,
            {
                "cell": previous,
                "model_dir": str(folder),
                "checkpoint": info.get("checkpoint"),
                "step": info.get("step"),
                "whole_model": True,
            },
        )
    builder = model_builder(cfg, setup, label_names)
    ckpt.seed_everything(cell.seed)  # the new heads' initialization depends only on the seed
    model = builder()
    source = intermediate_of(cell)
    if source is None:
        return model, builder, None
    info = store.done_info(source)
    if info is None:
        raise RuntimeError(f"cell {cell.key} starts from intermediate cell {source}, which is not done")
    folder = store.model_dir(source)
    encoder_host = model.encoder if isinstance(model, heads.MultiTaskModel) else model
    copied = heads.init_from_intermediate(encoder_host, folder)
    log.info("cell %s: encoder from %s (%d tensors), head new", cell.key, folder, len(copied))
    return (
        model,
        builder,
        {
            "cell": source,
            "model_dir": str(folder),
            "checkpoint": info.get("checkpoint"),
            "step": info.get("step"),
            "tensors": len(copied),
        },
    )


def export_model(builder: Callable[..., Any], checkpoint: Path, out: Path, tokenizer) -> Path:
    """Write the fp32 weights of `checkpoint` as a Hugging Face model folder + tokenizer at `out` (atomically)."""
    started = time.perf_counter()
    import transformers

    state = consolidated_state_dict(checkpoint)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        # the architecture alone, on the meta device: the checkpoint's tensors become its weights as they are
        # (assign), so the export holds one copy of the model, not the pretrained weights beside the trained ones
        model = builder(weights=False)
    finally:
        transformers.logging.set_verbosity(verbosity)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    # non-persistent buffers (position ids) are rebuilt by the model itself; anything else must match
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    left = [name for name, tensor in model.state_dict().items() if tensor.is_meta]
    if missing or unexpected or left:
        raise RuntimeError(
            f"{checkpoint}: weights do not fit the model (missing {(missing or left)[:5]}, unexpected {unexpected[:5]})"
        )
    # what an earlier, interrupted export of this checkpoint left is replaced
    publish_dir(out, lambda tmp: (model.save_pretrained(tmp), tokenizer.save_pretrained(tmp)), replace=True)
    log.info("exported %s to %s in %.1f s", checkpoint, out, time.perf_counter() - started)
    return out
