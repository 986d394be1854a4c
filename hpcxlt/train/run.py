"""One training cell (intermediate or target) from start, or from its newest checkpoint, to a done marker.

    train_cell(cfg, cell, store)     called in every rank by the launch layer, under any launcher

Intermediate cell (Phang et al. 2020, step 1): one shared encoder and one head per task of the arm,
batches drawn from the arm's (task, language) streams by its sampling rule. Target cell (step 2):
the target task's Hugging Face model; for an arm other than 'none' its encoder starts from the
intermediate cell's final model and its head is new. Either way the cell ends with
cells/<key>/model/ (save_pretrained of the fp32 weights + tokenizer: evaluation needs no DeepSpeed)
and cells/<key>/done.json; its DeepSpeed checkpoints are deleted then, as nothing reads them again.

A preemption signal makes `train_cell` raise `hpcxlt.train.preemption.Preempted` (checkpoint saved, run
it again to continue); finishing returns None; a cell already done returns at once.
"""

from __future__ import annotations

import logging
import shutil

from hpcxlt.config import ExperimentConfig
from hpcxlt.grid.plan import Cell, dev_splits
from hpcxlt.store import RunStore
from hpcxlt.train import checkpoint as ckpt
from hpcxlt.train import dist
from hpcxlt.train.cell_model import build_cell_model, export_model
from hpcxlt.train.cell_setup import cell_setup
from hpcxlt.train.engine import Engine, device_type, init_distributed
from hpcxlt.train.host_memory import map_large_blocks
from hpcxlt.train.loop import LoopConfig, train_loop
from hpcxlt.train.sampling import Mixture, epochs_to_steps
from hpcxlt.train.selection import dev_loss, dev_metric
from hpcxlt.train.streams import build_streams, example_allocation, mixture_probabilities
from hpcxlt.train.tracking import Tracker

log = logging.getLogger(__name__)


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
    tokenizer = AutoTokenizer.from_pretrained(
        cfg.model.name_or_path, **({"revision": cfg.model.revision} if cfg.model.revision else {})
    )
    # the data first, the process group after it (see build_streams)
    allocation = example_allocation(cfg, setup) if setup.examples else {}  # read once: streams and the log
    streams, label_names = build_streams(cfg, setup, tokenizer, seed=cell.seed, world=world, allocation=allocation)
    dev_streams = None
    # a task without a dev split is not dev-evaluated; with none at all (select_by 'last': the config check
    # refuses the rest) nothing is, whatever eval_every says
    dev = dev_splits(setup.languages)
    eval_every = train.eval_every if dev else 0
    if eval_every and train.select_by == "loss":
        dev_langs: dict[str, tuple[str, ...]] = {s.name: (dev[s.name],) if s.name in dev else () for s in setup.specs}
        dev_streams, _ = build_streams(
            cfg, setup, tokenizer, seed=cell.seed, world=world, split="dev", languages=dev_langs
        )
    if device_type() == "cpu":  # the model states live in this process's heap (host_memory's docstring)
        map_large_blocks()
    init_distributed(launched)
    sizes = {s.key: s.size for s in streams}
    probabilities, rule = mixture_probabilities(cfg, cell, setup, sizes)
    total_steps = train.max_steps or epochs_to_steps(
        sizes, epochs=train.epochs, global_batch=train.micro_batch_size * world, grad_accum=train.grad_accum
    )

    model, builder, init_from = build_cell_model(cfg, cell, store, setup, label_names)
    engine = Engine(model, train, total_steps=total_steps)
    ckpt.seed_everything(cell.seed * 1000 + dist.get_rank())  # dropout masks differ between ranks
    mixture = Mixture(streams, probabilities, seed=cell.seed, rank=dist.get_rank(), world_size=world, rule=rule)
    forward_kwargs = (lambda task: {"task": task}) if setup.multi_task else None
    evaluate = None
    if eval_every:  # 'last' still logs the dev metric at each evaluation
        evaluate = (
            dev_loss(dev_streams, forward_kwargs)
            if train.select_by == "loss"
            else dev_metric(
                cfg,
                setup.specs,
                setup.languages,
                tokenizer,
                multi_task=setup.multi_task,
                max_length=train.max_length,
                doc_stride=train.doc_stride,
            )
        )
    loop_cfg = LoopConfig(
        total_steps=total_steps,
        checkpoint_dir=store.checkpoints_dir(cell.key),
        log_path=store.train_log_path(cell.key),
        save_every=train.save_every,
        keep_last=train.keep_last,
        log_every=max(1, min(50, total_steps // 50)),
        eval_every=eval_every,
        greater_is_better=train.select_by != "loss",
        select_best=train.select_by != "last",
        patience=train.patience,
        min_delta=train.min_delta,
    )
    encoder_config = getattr(model, "config", None) or model.encoder.config
    extra = {
        "cell": cell.key,
        "seed": cell.seed,
        "fingerprint": cell.fingerprint,
        "init_from": init_from,
        "stream_sizes": sizes,
        "attention": getattr(encoder_config, "_attn_implementation", None),
        "examples": allocation or None,
        "precision": engine.precision,
        "zero_stage": train.zero_stage,
        "selection_rule": {
            "by": train.select_by,
            "eval_every": eval_every,
            "patience": train.patience,
            "min_delta": train.min_delta,
        },
    }
    tracker = (
        Tracker.for_cell(cfg, cell.key, store.cell_dir(cell.key), store.root, cell.fingerprint)
        if dist.is_main()
        else None
    )
    try:
        result = train_loop(
            engine,
            mixture,
            loop_cfg,
            forward_kwargs=forward_kwargs,
            evaluate=evaluate,
            extra_state=extra,
            on_record=tracker.record if tracker else None,
        )
    finally:
        if tracker is not None:
            tracker.close()
    # the training state (parameters, gradients, optimizer states) goes before the export builds the model again
    del model, mixture, evaluate
    engine.close()

    source = result.best_checkpoint or result.final_checkpoint
    selected_by = train.select_by if eval_every and result.best_checkpoint else "last"
    if dist.is_main():
        export_model(builder, source, store.model_dir(cell.key), tokenizer)
        store.mark_done(
            cell.key,
            {
                "step": result.step,
                "checkpoint": ckpt.step_name(ckpt.step_of(source)),
                "model": str(store.model_dir(cell.key)),
                "selection": {
                    "by": selected_by,
                    "step": ckpt.step_of(source),
                    "metric": result.best_metric if selected_by != "last" else None,
                    "stopped_early": bool(result.selection.get("stopped")),
                },
                "init_from": init_from,
                "world_size": world,
                "resumed_from": result.resumed_from,
                "counts": result.counts,
            },
        )
        shutil.rmtree(store.checkpoints_dir(cell.key), ignore_errors=True)
    dist.barrier()
