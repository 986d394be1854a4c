"""DeepSpeed, and only here: process group, ZeRO config, optimizer, schedule, train steps, checkpoint files.

Everything else in hpcxlt talks to `Engine`, so DeepSpeed specifics (config keys, the ZeRO-3
partitioned module, its checkpoint layout) stay in one file.

Why a torch AdamW is passed in instead of declaring the optimizer in the DeepSpeed config: a
config optimizer builds DeepSpeed's fused Adam extension on first use (about a minute of
compilation on a fresh node), and on CPU it is no faster.
"""

from __future__ import annotations

import datetime
import gc
import json
import logging
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hpcxlt.config import TrainConfig
from hpcxlt.train import dist

log = logging.getLogger(__name__)

DEFAULT_PERSISTENCE_THRESHOLD = 100_000
"""DeepSpeed's own default for stage3_param_persistence_threshold (parameters below it stay whole on every rank)."""
STAGE3_REDUCE_BUCKET_SIZE = 50_000_000
"""ZeRO-3's gradient bucket (elements) when the base config names none, as configs/deepspeed/zero3.json.
DeepSpeed's default, 5e8, holds most of XLM-R Large's gradients at once and its reduce-scatter copies
the bucket whole (`reduce_scatter_coalesced`'s torch.cat): 2 x 0.93 GiB in 16 bits beside the model
states. Measured (bench/large_cpu.py, 24 layers, 2 processes, bf16): 8.50 -> 7.50 GiB per process, the
step no slower (docs/benchmarks.md). The embedding (256M elements) never fits a bucket this size and is
reduced on its own, without the copy."""
BASE_CONFIG_ENV = "HPCXLT_DEEPSPEED_CONFIG"
"""Environment variable naming a DeepSpeed JSON (e.g. configs/deepspeed/zero2.json) whose tuning every run starts from."""

# torch 2.13 warns on every ZeRO collective that DeepSpeed still calls the old names; one line per step is noise.
warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r".*reduce_scatter_tensor.* is deprecated", category=FutureWarning)


def device_type() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str | None = None) -> str:
    """'auto' -> 'bf16' on GPUs that support it, 'fp16' on older GPUs, 'fp32' on CPU; explicit values are checked.

    An explicit 'bf16' runs on the CPU too (DeepSpeed's bf16 optimizer and torch's bf16 kernels do): the
    mixed-precision path a GPU takes, with its memory layout, can so be tried without one. 'auto' keeps
    fp32 on the CPU, where bf16 matmuls are slower on most processors. fp16 needs its loss scaler's CUDA ops.
    """
    device = device or device_type()
    if precision == "auto":
        if device != "cuda":
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device != "cuda":
        raise ValueError("precision 'fp16' needs a GPU; this process sees none (use 'auto', 'bf16' or 'fp32')")
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"precision {precision!r} is not one of auto, bf16, fp16, fp32")
    return precision


def ds_config(
    train: TrainConfig,
    *,
    precision: str,
    persistence_threshold: int | None = None,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The DeepSpeed config for one run.

    `base` (e.g. one of configs/deepspeed/zero*.json, tuned for GPU clusters) supplies engine
    tuning such as bucket sizes and overlap; what the experiment config decides always wins:
    micro-batch, accumulation, clipping, ZeRO stage and precision (resolved for this device).
    train_batch_size is left to DeepSpeed (micro x accum x world). `persistence_threshold`
    overrides stage3_param_persistence_threshold (0 partitions every parameter; tests use it).
    """
    cfg: dict[str, Any] = json.loads(json.dumps(dict(base or {})))  # deep copy of plain JSON data
    for key in ("bf16", "fp16", "train_batch_size", "optimizer", "scheduler"):
        cfg.pop(key, None)  # decided below, or passed in as objects
    zero = {**cfg.get("zero_optimization", {}), "stage": train.zero_stage}
    if train.zero_stage == 3:
        zero.setdefault("stage3_param_persistence_threshold", DEFAULT_PERSISTENCE_THRESHOLD)
        zero.setdefault("reduce_bucket_size", STAGE3_REDUCE_BUCKET_SIZE)
        if persistence_threshold is not None:
            zero["stage3_param_persistence_threshold"] = int(persistence_threshold)
        # the final model is read back from the checkpoint files (consolidated_state_dict), not gathered here
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    else:
        zero = {k: v for k, v in zero.items() if not k.startswith("stage3_")}
    cfg.update(
        {
            "train_micro_batch_size_per_gpu": train.micro_batch_size,
            "gradient_accumulation_steps": train.grad_accum,
            "gradient_clipping": float(train.max_grad_norm),
            "zero_optimization": zero,
            # torch's AdamW is exact and well tested under ZeRO; DeepSpeed only allow-lists its own optimizers
            "zero_allow_untested_optimizer": True,
        }
    )
    cfg.setdefault("steps_per_print", 10**9)  # we log ourselves, once every log_every steps
    cfg.setdefault("wall_clock_breakdown", False)
    if precision == "bf16":
        cfg["bf16"] = {"enabled": True}
    elif precision == "fp16":
        cfg["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    return cfg


def load_base_config(path: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The JSON named by `path` or by $HPCXLT_DEEPSPEED_CONFIG (None when neither is given)."""
    path = path or os.environ.get(BASE_CONFIG_ENV)
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read a DeepSpeed JSON config ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a DeepSpeed config must be a JSON object")
    return data


def init_distributed(env: dist.DistEnv | None = None) -> dist.DistEnv:
    """Export the launcher's rank variables and create the process group (gloo on CPU, NCCL on GPU).

    Safe to call twice. In a single process it still creates a 1-rank group, which DeepSpeed needs.
    """
    import deepspeed

    env = env or dist.detect()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return env
    dist.export_env(env)
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if device_type() == "cpu" else "cuda")
    if device_type() == "cuda":
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    # auto_mpi_discovery would overwrite MASTER_ADDR with `hostname -I` (not loopback); we already set it
    # an explicit timeout (site key dist_timeout_s): a rank that never arrives, or a collective that hangs on a
    # wrong interface, fails the job within it instead of holding the allocation until the time limit
    deepspeed.init_distributed(
        dist_backend="nccl" if device_type() == "cuda" else "gloo",
        auto_mpi_discovery=False,
        verbose=False,
        timeout=datetime.timedelta(seconds=dist.dist_timeout_s()),
    )
    return env


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay for weight matrices, none for biases and LayerNorm (BERT/RoBERTa practice)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def linear_schedule(
    optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak lr over `warmup_steps`, then linear decay to zero at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_steps(train: TrainConfig, total_steps: int) -> int:
    return int(math.ceil(train.warmup_ratio * total_steps))


@dataclass(frozen=True, kw_only=True)
class StepOutput:
    """What one micro-batch produced; tensors stay on the device (no host sync in the inner loop)."""

    loss: torch.Tensor
    """Detached mean loss of the micro-batch."""
    boundary: bool
    """True when this micro-batch completed an optimizer step."""


class Engine:
    """A DeepSpeed engine around one model with our optimizer, schedule and checkpoint conventions."""

    def __init__(
        self,
        model: torch.nn.Module,
        train: TrainConfig,
        *,
        total_steps: int,
        persistence_threshold: int | None = None,
        precision: str | None = None,
        base_config: Mapping[str, Any] | None = None,
    ):
        import deepspeed

        init_distributed()
        self.train = train
        self.total_steps = total_steps
        self.precision = resolve_precision(precision or train.precision)
        self.config = ds_config(
            train,
            precision=self.precision,
            persistence_threshold=persistence_threshold,
            base=base_config if base_config is not None else load_base_config(),
        )
        optimizer = torch.optim.AdamW(
            param_groups(model, train.weight_decay),
            lr=train.lr,
            betas=(0.9, 0.999),
            eps=1e-8,
            # one kernel per tensor: no step-sized temporaries (the for-each path holds two copies of the
            # largest parameter partition at once: 4.2 GiB for XLM-R Large on one process) and ~5x faster on CPU
            fused=True,
        )
        scheduler = linear_schedule(optimizer, warmup_steps=warmup_steps(train, total_steps), total_steps=total_steps)
        self.ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=scheduler,
            config=self.config,
            dist_init_required=False,
        )
        self.device = self.ds.device
        if train.zero_stage == 3 and self.precision == "fp32":
            share_fp32_partition(self.ds.optimizer)

    @property
    def module(self) -> torch.nn.Module:
        """The wrapped model (its parameters are partitioned under ZeRO-3)."""
        return self.ds.module

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far (restored by `load`)."""
        return int(self.ds.global_steps)

    @property
    def micro_step(self) -> int:
        """Micro-batches consumed so far."""
        return int(self.ds.micro_steps)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def grad_norm(self) -> float | None:
        """2-norm of the last optimizer step's gradients as DeepSpeed computed it (None where it does not: ZeRO
        stage 0 in fp32); a device read, so the loop asks only at log steps."""
        value = self.ds.get_global_grad_norm()
        if value is None:
            return None
        return float(value.item() if torch.is_tensor(value) else value)

    def to_device(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def step(self, batch: Mapping[str, Any], **forward_kwargs: Any) -> StepOutput:
        """Forward, backward and (at the accumulation boundary) optimizer + scheduler step for one micro-batch."""
        self.ds.train()
        out = self.ds(**self.to_device(batch), **forward_kwargs)
        loss = out["loss"] if isinstance(out, Mapping) else out.loss
        self.ds.backward(loss)
        boundary = self.ds.is_gradient_accumulation_boundary()
        self.ds.step()
        return StepOutput(loss=loss.detach(), boundary=boundary)

    def forward_eval(self, batch: Mapping[str, Any], **forward_kwargs: Any) -> Any:
        """A forward pass without gradients (every rank must call it the same number of times under ZeRO-3)."""
        self.ds.eval()
        with torch.no_grad():
            return self.ds(**self.to_device(batch), **forward_kwargs)

    def close(self) -> None:
        """Release DeepSpeed's engine with its optimizer states, gradient buffers and flat parameter copies.

        The export that follows training rebuilds the model from the checkpoint files; freed first, a
        process holds one copy of the weights while exporting instead of the whole training state beside it.
        """
        if self.ds is None:
            return
        optimizer, module = self.ds.optimizer, self.ds.module
        self.ds.destroy()
        # ZeRO-3's optimizer outlives destroy() (the parameters' partition attributes and hooks still reach it),
        # so its tensors go by hand: XLM-R Large's export on rank 0 of 2 peaked at 9.5 GiB with them, 8.4 without
        _drop_tensors(optimizer)
        for param in module.parameters():
            if hasattr(param, "ds_tensor"):  # a ZeRO-3 parameter's own partition
                param.ds_tensor = None
        self.ds = self.optimizer = self.scheduler = None
        gc.collect()

    # -- checkpoint files ---------------------------------------------------------------------------
    def save(self, root: str | os.PathLike, tag: str) -> None:
        """Write DeepSpeed's model, optimizer and scheduler state under root/tag (collective: all ranks call it)."""
        self.ds.save_checkpoint(str(root), tag=tag, save_latest=False)

    def load(self, root: str | os.PathLike, tag: str) -> None:
        """Restore model, optimizer, scheduler and step counters from root/tag (collective)."""
        path, _ = self.ds.load_checkpoint(
            str(root),
            tag=tag,
            load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load checkpoint {Path(root) / tag}")


def share_fp32_partition(optimizer: Any) -> int:
    """ZeRO-3 in fp32: the optimizer steps on the working parameter partition itself, not on a copy of it.

    DeepSpeed 0.19.8 means to do this (stage3.py, `_create_fp32_partitions`: a working partition that is fp32
    already, on the optimizer's device, "we don't need another copy"), but compares `tensor.device` with a
    device name (`'cpu'`, `'cuda:0'`), which a torch.device never equals, and clones it: one more fp32 copy
    of every partition, 4 bytes per parameter / N (XLM-R Large on 2 processes: 1.04 GiB each). Each copy is
    pointed at the working partition's storage, the layout that branch builds; DeepSpeed's copy of the
    master into the working partition after each step then copies a tensor onto itself. Returns the bytes
    freed (0 when DeepSpeed built the shared layout itself, or its attributes are not the ones read here).
    """
    working = getattr(optimizer, "fp16_partitioned_groups_flat", None)
    master = getattr(optimizer, "fp32_partitioned_groups_flat", None)
    if not isinstance(working, list) or not isinstance(master, list) or len(working) != len(master):
        return 0
    freed = 0
    for low, high in zip(working, master):
        if (
            low.dtype == high.dtype == torch.float32
            and low.device == high.device
            and low.shape == high.shape
            and low.data_ptr() != high.data_ptr()
            # a copy, as at initialization, not a master that has moved on; bit for bit, because a partition's
            # padding is never written and may hold a NaN pattern, which equals nothing as a float
            and torch.equal(low.view(torch.int32), high.view(torch.int32))
        ):
            freed += high.numel() * high.element_size()
            high.data = low.data  # the optimizer's key (the tensor object) and its state stay as they are
    copies = sum(
        high.numel() * high.element_size() for low, high in zip(working, master) if low.data_ptr() != high.data_ptr()
    )
    if copies:
        log.warning("ZeRO-3 fp32: the optimizer keeps %.2f GiB of its own parameter copies", copies / 2**30)
    return freed


def _holds_tensors(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, list | tuple):
        return any(_holds_tensors(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_tensors(item) for item in value.values())
    return False


def _drop_tensors(optimizer: Any) -> None:
    """Let go of the tensors an optimizer wrapper and the torch optimizer inside it hold (state, partitions)."""
    if optimizer is None:
        return
    inner = getattr(optimizer, "optimizer", None)
    if isinstance(inner, torch.optim.Optimizer):
        inner.state.clear()
        for group in inner.param_groups:  # at ZeRO 1-3 the fp32 partitions themselves
            group["params"] = []
    for name, value in list(vars(optimizer).items()):
        if _holds_tensors(value):
            setattr(optimizer, name, None)


def consolidated_state_dict(checkpoint_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The full fp32 model state of one checkpoint folder, read from its files on this process (no collectives).

    ZeRO 1-3 (and bf16 at stage 0) keep fp32 master weights in the optimizer shards, merged by
    DeepSpeed's zero_to_fp32; a plain stage-0 fp32 checkpoint holds the whole module in one file.
    """
    import contextlib
    import io

    from deepspeed.utils import zero_to_fp32

    folder = Path(checkpoint_dir)
    if list(folder.glob("*optim_states.pt")) and any("zero_pp_rank" in p.name for p in folder.glob("*optim_states.pt")):
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a progress line per shard
            state = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(str(folder.parent), tag=folder.name)
        return {k: v.float() if torch.is_floating_point(v) else v for k, v in state.items()}
    model_file = folder / "mp_rank_00_model_states.pt"
    if not model_file.exists():
        raise FileNotFoundError(f"{folder}: no DeepSpeed model states (mp_rank_00_model_states.pt)")
    module = torch.load(model_file, map_location="cpu", weights_only=False)["module"]
    return {k: v.float() if torch.is_floating_point(v) else v for k, v in module.items()}
