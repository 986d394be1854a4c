"""Live curves of a training cell: TensorBoard event files always, Weights & Biases when the config asks.

    tracker = Tracker.for_cell(cfg, cell_key, cell_dir, run_root, fingerprint)   rank 0 only
    train_loop(..., on_record=tracker.record); tracker.close()

The tracker reads the train log's records as the loop writes them (`TrainLog.sink`), so train_log.jsonl
stays the one source of truth and nothing in the loop knows about trackers. Per log step: loss (and per
task), learning rate, gradient norm (where DeepSpeed computes it), samples/s, tokens/s; per dev
evaluation: the selection metric and each task's dev score.

A requeued job continues the same curves. TensorBoard: the writer reopens cells/<key>/tensorboard with
`purge_step` at the step the job resumed from, so events the killed attempt wrote after its checkpoint
are dropped by the reader. W&B: the run id is derived from the run directory and the cell key (stable
across requeues, distinct between run directories) and `resume="allow"` continues it; offline mode
writes to cells/<key>/wandb for `wandb sync` from a login node. Unlike TensorBoard, W&B keeps what the
killed attempt logged past its checkpoint: it refuses steps that go back, so the resumed attempt's
curve joins at the first step beyond them (its rewind, `resume_from`, is beta and needs the server).
The train log and TensorBoard hold the exact curve.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from hpcxlt.config.schema import TrackingConfig

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter
    from wandb.sdk.wandb_run import Run

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"


class TrackingError(RuntimeError):
    """A tracker the config asks for cannot be used (a missing package); the message says what to install."""


def require_packages(tracking: TrackingConfig) -> None:
    """Raise TrackingError naming the package when an enabled tracker's package is not installed.

    Called by `hpcxlt submit` on the login node, so a missing package stops the submission instead of
    failing every job on a compute node.
    """
    import importlib.util

    if tracking.wandb and importlib.util.find_spec("wandb") is None:
        raise TrackingError(
            "tracking.wandb is on but the `wandb` package is not installed in this environment: "
            "`pip install wandb` (the same environment the jobs use), or set tracking.wandb: false"
        )


def run_id(run_root: str | Path, cell_key: str) -> str:
    """A W&B run id that a requeued job finds again: 16 hex digits of the run directory and the cell key."""
    return hashlib.sha256(f"{Path(run_root).resolve()}|{cell_key}".encode()).hexdigest()[:16]


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The curves in one train-log record (a log step or a dev evaluation); {} for other events."""
    out: dict[str, float] = {}
    if record.get("event") == "eval":
        out["dev/metric"] = record["metric"]
        if record.get("best_metric") is not None:
            out["dev/best_metric"] = record["best_metric"]
        for name, value in (record.get("dev") or {}).items():
            out[f"dev/{name}"] = value
        return out
    if "loss" not in record or record.get("event"):
        return out
    for key, name in (
        ("loss", "train/loss"),
        ("lr", "train/lr"),
        ("grad_norm", "train/grad_norm"),
        ("samples_per_s", "speed/samples_per_s"),
        ("tokens_per_s", "speed/tokens_per_s"),
    ):
        if record.get(key) is not None:
            out[name] = float(record[key])
    for task, value in (record.get("loss_per_task") or {}).items():
        out[f"train/loss/{task}"] = float(value)
    return out


class Tracker:
    """Writes each train-log record's curves to TensorBoard (and W&B); opened lazily by the first record."""

    def __init__(
        self, folder: Path, tracking: TrackingConfig, *, wandb_id: str, name: str, group: str, config: dict[str, Any]
    ):
        self.folder, self.tracking = Path(folder), tracking
        self.wandb_id, self.name, self.group, self.config = wandb_id, name, group, config
        self._writer: SummaryWriter | None = None
        self._wandb: Run | None = None
        self._last_wandb_step = -1

    @classmethod
    def for_cell(cls, cfg, cell_key: str, cell_dir: Path, run_root: Path, fingerprint: str) -> Tracker:
        return cls(
            cell_dir,
            cfg.tracking,
            wandb_id=run_id(run_root, cell_key),
            name=f"{cfg.name}/{cell_key}",
            group=cfg.name,
            config={"cell": cell_key, "fingerprint": fingerprint, "experiment": cfg.name},
        )

    def _open(self, resumed_at: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops what a killed attempt logged past the checkpoint this attempt resumed from
        purge = (resumed_at + 1) if resumed_at is not None else 0
        self._writer = SummaryWriter(log_dir=str(self.folder / TENSORBOARD_DIR), purge_step=purge)
        if self.tracking.wandb:
            try:
                import wandb
            except ImportError as err:  # submit checks this; a job in another environment still says why
                raise TrackingError(f"tracking.wandb is on but `wandb` cannot be imported here: {err}") from None
            (self.folder / WANDB_DIR).mkdir(parents=True, exist_ok=True)
            self._wandb = wandb.init(
                project=self.tracking.wandb_project,
                entity=self.tracking.wandb_entity,
                id=self.wandb_id,
                resume="allow",
                name=self.name,
                group=self.group,
                config=self.config,
                dir=str(self.folder / WANDB_DIR),
                # TrackingConfig allows only WANDB_MODES ('offline', 'online')
                mode=cast(Literal["offline", "online"], self.tracking.wandb_mode),
                reinit="finish_previous",
            )
            self._last_wandb_step = resumed_at + 1 if resumed_at is not None else -1

    def record(self, record: dict[str, Any]) -> None:
        """The train log's sink: open on the first record ('start' or 'resume'), then write the curves."""
        if self._writer is None:
            self._open(record.get("step") if record.get("event") == "resume" else None)
        values = scalars(record)
        if not values:
            return
        step = int(record["step"])
        writer = cast("SummaryWriter", self._writer)  # opened above
        for name, value in values.items():
            writer.add_scalar(name, value, global_step=step)
        if self._wandb is not None and step >= self._last_wandb_step:  # W&B refuses steps that go back
            self._wandb.log(values, step=step)
            self._last_wandb_step = step

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
