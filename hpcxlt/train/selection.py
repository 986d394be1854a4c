"""What a training cell evaluates on its dev data to pick the checkpoint it exports.

    dev_metric(cfg, setup, tokenizer)   the task's own metric on the dev language (XTREME's protocol)
    dev_loss(streams, forward_kwargs)   mean dev loss (the old criterion, `select_by: loss`)

XTREME (Hu et al. 2020) and XTREME-R keep the checkpoint with the best English dev *metric*; jiant
(Phang et al. 2020) evaluates the task metric every `eval_every` steps and stops after `patience`
evaluations without improvement. `dev_metric` scores with the same prediction and scoring code as the
zero-shot test evaluation (`hpcxlt.evaluate`), on the engine's model as it trains.

The ranks split the dev batches and gather the outputs (`InferenceSettings.sharded`): each runs the
same number of forwards, since under ZeRO-3 each forward gathers the parameters collectively, and then
every rank scores the whole split, so all agree on the metric without another collective. Retrieval
tasks embed on every rank. A multi-task (intermediate) cell selects by the mean of its tasks' dev scores.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from statistics import fmean
from typing import Any

from hpcxlt.config import ExperimentConfig
from hpcxlt.grid.plan import dev_splits
from hpcxlt.tasks.spec import TaskSpec
from hpcxlt.train import dist

log = logging.getLogger(__name__)


class HeadView:
    """One head of a MultiTaskModel, called like a single-task Hugging Face model (what prediction expects)."""

    def __init__(self, model, task: str):
        self._model, self._task = model, task
        head = model.heads[task]
        self.config = copy.copy(model.encoder.config)
        if getattr(head, "num_labels", None):
            self.config.num_labels = head.num_labels

    def __call__(self, **batch):
        return self._model(task=self._task, **batch)

    def parameters(self):
        return self._model.parameters()


def _predictor(module, spec: TaskSpec, multi_task: bool) -> tuple[Any, int | None]:
    """(model to predict with, retrieval layer): a retrieval task embeds with the bare encoder."""
    if not multi_task:
        return module, None
    if spec.format == "retrieval":
        return module.encoder, int(module.heads[spec.name].layer)
    return HeadView(module, spec.name), None


def dev_metric(
    cfg: ExperimentConfig,
    specs: tuple[TaskSpec, ...],
    languages: dict[str, tuple[str, ...]],
    tokenizer,
    *,
    multi_task: bool,
    max_length: int,
    doc_stride: int,
) -> Callable[[Any], dict[str, Any]]:
    """evaluate(engine) -> {'metric': mean dev score (points, higher is better), 'dev': {task: score}, 'seconds'}."""
    from hpcxlt.evaluate.predict import InferenceSettings, predict_split
    from hpcxlt.evaluate.scoring import dev_metrics, dev_score

    # a task without a dev split (tydiqa_lowres) is trained on, not dev-evaluated: the metric averages the others
    dev_langs = dev_splits({spec.name: languages[spec.name] for spec in specs})
    if not dev_langs:
        raise ValueError(
            f"none of {[spec.name for spec in specs]} has a dev split in its dev language: nothing to select on "
            "(set select_by: last or eval_every: 0)"
        )

    def evaluate(engine) -> dict[str, Any]:
        started = time.perf_counter()
        module = engine.module
        was_training = module.training
        module.eval()
        scores = {}
        try:
            for spec in (s for s in specs if s.name in dev_langs):
                model, layer = _predictor(module, spec, multi_task)
                settings = InferenceSettings(
                    batch_size=cfg.eval.batch_size,
                    max_length=max_length,
                    doc_stride=doc_stride,
                    retrieval_layer=cfg.eval.retrieval_layer if layer is None else layer,
                    inference_mode=False,
                    sharded=True,
                )
                lang = dev_langs[spec.name]
                prediction = predict_split(spec, lang, "dev", model, tokenizer, cfg.data, settings, pools={})
                metrics = dev_metrics(spec, lang, prediction.labels, prediction.predictions)
                scores[f"{spec.name}:{lang}"] = dev_score(spec, metrics, qa_convention=cfg.eval.qa_convention)
        finally:
            module.train(was_training)
        seconds = time.perf_counter() - started
        if dist.is_main():
            log.info(
                "dev metric at step %d: %s (%.1f s)",
                engine.global_step,
                ", ".join(f"{k} {v:.2f}" for k, v in scores.items()),
                seconds,
            )
        return {"metric": fmean(scores.values()), "dev": scores, "seconds": round(seconds, 3)}

    return evaluate


def dev_loss(streams, forward_kwargs: Callable[[str], dict] | None) -> Callable[[Any], float]:
    """Mean loss over the dev streams (lower is better); ranks split the examples, the same forwards in every rank."""
    import torch

    def evaluate(engine) -> float:
        world, rank = dist.get_world_size(), dist.get_rank()
        total = torch.zeros(2, dtype=torch.float64, device=engine.device)
        for stream in streams:
            for global_batch in stream.epoch_batches(0):
                local = list(global_batch)[rank::world]
                weight = len(local)
                # a rank without examples still runs a forward (ZeRO-3 gathers parameters collectively)
                rows = [stream.dataset[int(i)] for i in (local or list(global_batch)[:1])]
                out = engine.forward_eval(
                    stream.collate(rows), **(forward_kwargs(stream.task) if forward_kwargs else {})
                )
                total[0] += out["loss"].double() * weight
                total[1] += weight
        if world > 1:
            torch.distributed.all_reduce(total)
        return float(total[0] / total[1].clamp(min=1))

    return evaluate
