"""The training loop: resume by lookup, step, log, checkpoint, stop cleanly on a preemption signal.

The loop never blocks on the device inside an optimizer step: losses and token counts stay on the
device and are read once every `log_every` steps. One small host-side (gloo) all-reduce per optimizer
step tells every rank whether any rank got a signal, so all ranks save the same step and stop together.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

from hpcxlt.train import checkpoint as ckpt
from hpcxlt.train import dist
from hpcxlt.train.early_stopping import FRESH_SELECTION, improves, kept_step
from hpcxlt.train.engine import Engine
from hpcxlt.train.preemption import Preempted, preemption_signals
from hpcxlt.train.prefetch import Prefetcher
from hpcxlt.train.sampling import Mixture
from hpcxlt.train.train_log import TrainLog, peak_memory

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """Where and how often the loop logs and saves."""

    total_steps: int
    """Optimizer steps of the whole run (across restarts)."""
    checkpoint_dir: Path
    """Folder of step-<N> checkpoints."""
    log_path: Path
    """train_log.jsonl (rank 0 appends one JSON object per line)."""
    save_every: int = 0
    """Checkpoint every N optimizer steps (0: only on signals and at the end)."""
    keep_last: int = 2
    """Checkpoints kept besides the best."""
    log_every: int = 10
    """Log loss and throughput every N optimizer steps (the only host-device sync point)."""
    eval_every: int = 0
    """Call `evaluate` every N optimizer steps and at the end (0: never)."""
    greater_is_better: bool = True
    """Direction of the metric returned by `evaluate`."""
    select_best: bool = True
    """Keep and report the checkpoint with the best metric (False: the last step's is the result; evaluations are logged)."""
    patience: int = 0
    """Stop after this many evaluations in a row without improvement (0: never stop early)."""
    min_delta: float = 0.0
    """An evaluation improves on the best only by more than this."""
    prefetch: int = 2
    """Micro-batches prepared ahead in a background thread (0: prepared in the loop); training is the same."""


@dataclass(frozen=True, kw_only=True)
class LoopResult:
    """How a finished run ended."""

    step: int
    """Optimizer steps taken."""
    final_checkpoint: Path
    """Checkpoint written at the last step."""
    best_checkpoint: Path | None
    """Checkpoint with the best evaluation metric (None without evaluation, or when not selecting)."""
    best_metric: float | None
    """That metric."""
    selection: dict[str, Any] = field(default_factory=dict)
    """The selection state at the end: best metric and step, evaluations since the best, stopped early or not."""
    resumed_from: str | None
    """Checkpoint folder this invocation resumed from (None for a fresh start)."""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Batches and examples trained on per stream (over all attempts), {stream: {batches, examples}}."""


def _lookup_resume(root: Path) -> Path | None:
    # rank 0 decides and tells the others, so a shared file system that lags cannot split the ranks
    found = ckpt.latest_checkpoint(root) if dist.is_main() else None
    found = dist.broadcast_object(str(found) if found else None)
    return Path(found) if found else None


def train_loop(
    engine: Engine,
    mixture: Mixture,
    cfg: LoopConfig,
    *,
    forward_kwargs: Callable[[str], dict[str, Any]] | None = None,
    evaluate: Callable[[Engine], float | Mapping[str, Any]] | None = None,
    extra_state: dict[str, Any] | None = None,
    on_record: Callable[[dict], None] | None = None,
) -> LoopResult:
    """Train until `cfg.total_steps`, resuming from the newest complete checkpoint in `cfg.checkpoint_dir`.

    `forward_kwargs(task)` gives extra model arguments per batch (e.g. {'task': task} for a multi-task
    model). `evaluate(engine)` (all ranks) returns the dev metric, or a mapping with the metric under
    'metric' and details to log beside it. With `cfg.patience`, training ends early after that many
    evaluations without improvement (the learning-rate schedule is not shortened, as in jiant). The
    selection state (best metric and step, evaluations since, stopped) is part of every checkpoint, so a
    resumed run selects and stops exactly as an uninterrupted one. Raises `Preempted` after saving when
    SIGUSR1/SIGUSR2/SIGTERM arrived in any rank. `on_record(record)` (rank 0) sees every train-log record.
    """
    train_log = TrainLog(cfg.log_path, sink=on_record)
    selection: dict[str, Any] = dict(FRESH_SELECTION)
    # the host of every rank, in rank order: where a multi-node job really ran (a requeue may move it)
    hosts = dist.all_gather_object(socket.gethostname())
    resumed = _lookup_resume(cfg.checkpoint_dir)
    if resumed is not None:
        state = ckpt.load_checkpoint(engine, resumed)
        mixture.load_state_dict(state["data"])
        selection = {**FRESH_SELECTION, **state.get("best", {}), **state.get("selection", {})}
        train_log.truncate_after(engine.global_step)
        train_log.write(
            {
                "event": "resume",
                "step": engine.global_step,
                "checkpoint": str(resumed),
                "world_size": dist.get_world_size(),
                "hosts": hosts,
            }
        )
        log.info("resumed from %s at step %d", resumed, engine.global_step)
    else:
        train_log.truncate_after(-1)  # a fresh start: nothing from an attempt that died before its first checkpoint
        train_log.write(
            {
                "event": "start",
                "step": 0,
                "total_steps": cfg.total_steps,
                "world_size": dist.get_world_size(),
                "hosts": hosts,
                "sampling": {"rule": mixture.rule, "probabilities": mixture.probabilities},
                **(extra_state or {}),
            }
        )

    # batches drawn ahead in a thread, pinned on GPUs; the data state a checkpoint records is the consumed one
    prefetcher = Prefetcher(mixture, depth=cfg.prefetch, pin=engine.device.type == "cuda")

    def state_now() -> dict[str, Any]:
        return {
            "step": engine.global_step,
            "data": prefetcher.state_dict(),
            "selection": dict(selection),
            **(extra_state or {}),
        }

    def dev_evaluation(step: int) -> bool:
        """Evaluate, log, update the selection state; True when this evaluation is the new best."""
        if evaluate is None:
            raise ValueError("dev_evaluation: the loop was given no evaluate function")
        out = evaluate(engine)
        details = dict(out) if isinstance(out, Mapping) else {"metric": out}
        metric = float(details.pop("metric"))
        improved = improves(metric, selection["metric"], cfg.greater_is_better, cfg.min_delta)
        if improved:
            selection.update(metric=metric, step=step, bad_evals=0)
        else:
            selection["bad_evals"] += 1
        train_log.write(
            {
                "event": "eval",
                "step": step,
                "metric": metric,
                "best": improved,
                "best_metric": selection["metric"],
                "best_step": selection["step"],
                "bad_evals": selection["bad_evals"],
                **details,
            }
        )
        return improved

    last_saved: Path | None = resumed
    tasks = sorted({s.task for s in mixture.streams.values()})
    task_index = {t: i for i, t in enumerate(tasks)}
    # Per-task loss sums stay on the device (adding to them queues a kernel, no sync); micro-batch, token and
    # example counts are host numbers. The device is read only at log steps.
    loss_sums = torch.zeros(len(tasks), dtype=torch.float64, device=engine.device)
    batches = [0] * len(tasks)
    tokens = examples = 0
    window_start, window_steps = time.perf_counter(), 0

    with preemption_signals() as flag, prefetcher:
        while engine.global_step < cfg.total_steps and not selection["stopped"]:
            item = prefetcher.next()
            out = engine.step(item.batch, **(forward_kwargs(item.stream.task) if forward_kwargs else {}))
            i = task_index[item.stream.task]
            loss_sums[i] += out.loss.detach().double()
            batches[i] += 1
            tokens += item.tokens
            examples += item.examples
            if not out.boundary:
                continue
            step = engine.global_step
            window_steps += 1
            if step % cfg.log_every == 0 or step == cfg.total_steps:
                _log_window(
                    train_log,
                    engine,
                    prefetcher.counts(),
                    tasks,
                    loss_sums,
                    batches,
                    tokens,
                    examples,
                    time.perf_counter() - window_start,
                    window_steps,
                )
                loss_sums.zero_()
                batches = [0] * len(tasks)
                tokens = examples = 0
                window_start, window_steps = time.perf_counter(), 0
            # any rank's signal stops all ranks at the same step (Slurm may signal only some tasks)
            signum = dist.max_over_ranks(flag.signum or 0)
            stop = signum > 0
            save = stop or bool(cfg.save_every and step % cfg.save_every == 0)
            # no dev evaluation once a stop signal is seen: the signal's grace time is for the checkpoint
            if (
                evaluate is not None
                and cfg.eval_every
                and step % cfg.eval_every == 0
                and step < cfg.total_steps
                and not stop
            ):
                if dev_evaluation(step) and cfg.select_best:
                    save = True  # the best model must survive pruning and be exportable at the end
                if cfg.patience and selection["bad_evals"] >= cfg.patience:
                    selection["stopped"] = True  # saved below, so a rerun goes straight to the end
                    save = True
                    train_log.write(
                        {
                            "event": "early_stop",
                            "step": step,
                            "patience": cfg.patience,
                            "best_step": selection["step"],
                            "best_metric": selection["metric"],
                        }
                    )
            if save:
                last_saved = _save(engine, cfg, state_now(), kept_step(cfg.select_best, selection))
            if stop:
                train_log.write({"event": "preempted", "step": step, "signal": signal.Signals(signum).name})
                # a stop always saves just above, so last_saved is this step's checkpoint
                raise Preempted(step=step, checkpoint=cast(Path, last_saved), signum=signum)

    step = engine.global_step
    improved = False
    # an early stop evaluated this very step already (before its checkpoint)
    if evaluate is not None and cfg.eval_every and not selection["stopped"]:
        improved = dev_evaluation(step) and cfg.select_best
    if improved or last_saved is None or ckpt.step_of(last_saved) != step:
        last_saved = _save(engine, cfg, state_now(), kept_step(cfg.select_best, selection))
    best_step = kept_step(cfg.select_best, selection)
    best_ckpt = cfg.checkpoint_dir / ckpt.step_name(best_step) if best_step is not None else None
    train_log.write(
        {
            "event": "end",
            "step": step,
            "counts": prefetcher.counts(),
            "realized": prefetcher.realized(),
            "best": {"metric": selection["metric"], "step": selection["step"]},
            "selection": selection,
        }
    )
    return LoopResult(
        step=step,
        final_checkpoint=last_saved,
        best_checkpoint=best_ckpt,
        counts=prefetcher.counts(),
        best_metric=selection["metric"],
        selection=dict(selection),
        resumed_from=str(resumed) if resumed else None,
    )


def _save(engine: Engine, cfg: LoopConfig, state: dict[str, Any], best_step: int | None) -> Path:
    folder = ckpt.save_checkpoint(engine, cfg.checkpoint_dir, state)
    keep = {best_step} if best_step is not None else set()
    ckpt.prune(cfg.checkpoint_dir, keep_last=cfg.keep_last, keep=keep)
    dist.barrier()
    return folder


def _log_window(
    train_log: TrainLog,
    engine: Engine,
    counts: dict[str, dict[str, int]],
    tasks: list[str],
    loss_sums: torch.Tensor,
    batches: list[int],
    tokens: int,
    examples: int,
    seconds: float,
    steps: int,
) -> None:
    # the one sync point: the loss sums and this rank's host counts summed over ranks, then read to the host
    host = torch.tensor([*batches, float(tokens), float(examples)], dtype=torch.float64).to(loss_sums.device)
    packed = torch.cat([loss_sums, host])
    if dist.get_world_size() > 1:
        torch.distributed.all_reduce(packed)
    values = packed.tolist()
    world = dist.get_world_size()
    per_task = {}
    total_loss, total_n = 0.0, 0.0
    n_tasks = len(tasks)
    for i, task in enumerate(tasks):
        loss_sum, n = values[i], values[n_tasks + i]
        if n:
            per_task[task] = loss_sum / n
            total_loss, total_n = total_loss + loss_sum, total_n + n
    n_tokens, n_examples = values[-2], values[-1]
    record = {
        "step": engine.global_step,
        "loss": total_loss / total_n if total_n else None,
        "loss_per_task": per_task,
        "lr": engine.lr(),
        "grad_norm": engine.grad_norm(),
        "samples_per_s": n_examples / seconds if seconds > 0 else None,
        "tokens_per_s": n_tokens / seconds if seconds > 0 else None,
        "steps_in_window": steps,
        "world_size": world,
        "counts": {k: c["batches"] for k, c in counts.items()},
        **peak_memory(),
    }
    train_log.write(record)
