"""GPU memory per training process: ZeRO model states + activations, and the knob that makes a stage fit.

Pure and standard library only. Formulas and sources (docs/resources.md has the long form):

**Model states** (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter
Models", Sec. 3.1 and 5: mixed-precision Adam keeps 2Ψ + 2Ψ + KΨ bytes, K = 12, partitioned over N_d
processes per stage), counted the way DeepSpeed's own estimators count them
(`deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs` and
`deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs`, cpu_offload=False). Bytes per
parameter, "/N" where the stage partitions that term over the N data-parallel processes:

    bf16/fp16  params  grads  fp32 grads  fp32 master  Adam m+v  gather  per process
    stage 0      2       2       4           4           8         -      20Ψ            (FP16_Optimizer)
    stage 1      2       2       4/N         4/N         8/N       -      4Ψ + 16Ψ/N
    stage 2      2       2/N     4/N         4/N         8/N       -      2Ψ + 18Ψ/N     = DeepSpeed ZeRO-2
    stage 3      2/N     -       4/N         4/N         8/N       4Λ     18Ψ/N + 4Λ     = DeepSpeed ZeRO-3

DeepSpeed's comment spells its 18: 2 16-bit grads + 4 fp32 grads + 4 fp32 params + 8 optimizer states,
i.e. the paper's K = 12 plus the fp32 copy of the gradient partition the optimizer steps on. At stage 3
its estimator counts 18Ψ/N with no 16-bit gradient partition beside the fp32 one (the reduce-scatter
lands each bucket in the partition) plus 4 bytes per parameter of the largest layer Λ (the gathered
16-bit parameters and gradients of one module). DeepSpeed 0.19's stage-3 code with the default gradient
accumulation dtype (the model's) holds the partition in 16 bits and makes the fp32 copy during the step:
2Ψ/N more than its estimator, which we follow. Neither counts communication buckets, the CUDA context
or fragmentation: `fit_advice` keeps a reserve for those.

**fp32** (no separate 16-bit copies: the working parameters and gradients are themselves fp32, 4 bytes):
stage 0 runs the plain torch optimizer, no master copy and no gradient copy: 4 + 4 + 8 = 16Ψ (the paper's
fp32 figure). Stages 1 and 2 still clone an fp32 master partition (`single_partition_of_fp32_groups`,
4/N), and their step flattens the gradient partition into a new tensor (`flatten(averaged_gradients)`,
whose `.to(fp32)` is then a no-op) that lives beside the gradients until the optimizer has stepped:
DeepSpeed's "4 fp32 grads" stay, stage 1 8Ψ + 16Ψ/N, stage 2 4Ψ + 20Ψ/N. Measured (bench/large_cpu.py,
XLM-R Large, one process): the step raises the resident set by that copy, 2.1 GiB.
Stage 3 steps on the fp32 parameter partition itself (no master copy: `hpcxlt.train.engine.share_fp32_partition`
makes DeepSpeed 0.19 do what it means to), but its step flattens the gradient partition into a new tensor
too (`_prepare_fp32_grad_for_sub_group`): 20Ψ/N + 8Λ. Measured (bench/large_cpu.py, XLM-R Large, 2
processes): the peak is that step.

Activations: `grid/activations.py` (Korthikanti et al. 2022).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from hpcxlt.grid.activations import Activations, activation_bytes, check_precision
from hpcxlt.grid.resources import ModelShape, largest_layer_params, parameter_count

if TYPE_CHECKING:
    from hpcxlt.config import TrainConfig

GIB = 1024**3
DEFAULT_RESERVE_GIB = 2.0
"""What the arithmetic leaves out, per GPU: the CUDA context and kernels (~0.5 GiB), DeepSpeed's reduce
and all-gather buckets (configs/deepspeed: 2e8 elements, 0.37 GiB each in 16 bits), allocator
fragmentation. An allowance, not a measurement."""


def _check(precision: str, zero_stage: int, world_size: int) -> None:
    check_precision(precision)
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"zero_stage must be 0-3, got {zero_stage}")
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")


@dataclass(frozen=True, kw_only=True)
class ModelStates:
    """Model-state bytes per process (module docstring); fractional where a partition is Ψ/N."""

    params: float
    """Working parameters (16-bit, or fp32 in fp32 training)."""
    grads: float
    """Working-precision gradients."""
    fp32_grads: float
    """The fp32 gradient partition the optimizer steps on (in fp32 training the step's flattened copy)."""
    master_params: float
    """fp32 master parameters."""
    optimizer_states: float
    """Adam's two fp32 moments."""
    gathered_layer: float
    """ZeRO-3: the largest layer's parameters and gradients gathered in full."""

    @property
    def total(self) -> float:
        return sum(getattr(self, f.name) for f in fields(self))


def model_state_bytes(
    params: int, *, zero_stage: int, precision: str, world_size: int = 1, largest_layer: int = 0
) -> ModelStates:
    """Per-process model-state bytes of Adam training `params` parameters with DeepSpeed ZeRO
    `zero_stage` over `world_size` data-parallel processes (`largest_layer`: ZeRO-3's gather term)."""
    _check(precision, zero_stage, world_size)
    n, p = world_size, float(params)
    if precision == "fp32":
        table = {  # params, grads, fp32 grads, master, Adam, gather
            0: (4 * p, 4 * p, 0.0, 0.0, 8 * p, 0.0),
            1: (4 * p, 4 * p, 4 * p / n, 4 * p / n, 8 * p / n, 0.0),
            2: (4 * p, 4 * p / n, 4 * p / n, 4 * p / n, 8 * p / n, 0.0),
            3: (4 * p / n, 4 * p / n, 4 * p / n, 0.0, 8 * p / n, 8.0 * largest_layer),
        }
    else:
        table = {
            0: (2 * p, 2 * p, 4 * p, 4 * p, 8 * p, 0.0),
            1: (2 * p, 2 * p, 4 * p / n, 4 * p / n, 8 * p / n, 0.0),
            2: (2 * p, 2 * p / n, 4 * p / n, 4 * p / n, 8 * p / n, 0.0),
            3: (2 * p / n, 0.0, 4 * p / n, 4 * p / n, 8 * p / n, 4.0 * largest_layer),
        }
    values = table[zero_stage]
    return ModelStates(
        params=values[0],
        grads=values[1],
        fp32_grads=values[2],
        master_params=values[3],
        optimizer_states=values[4],
        gathered_layer=values[5],
    )


@dataclass(frozen=True, kw_only=True)
class TrainingSetup:
    """What one training process's memory depends on."""

    shape: ModelShape
    head: str
    """Task format of the model trained (hpcxlt.tasks.spec formats)."""
    num_labels: int = 2
    num_choices: int = 4
    precision: str = "bf16"
    """'bf16', 'fp16' or 'fp32' (resolved, not 'auto')."""
    zero_stage: int = 2
    world_size: int = 1
    """Data-parallel processes (GPUs) of the training job."""
    micro_batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 128
    gradient_checkpointing: bool = False


def setup_from_train(
    train: TrainConfig,
    shape: ModelShape,
    *,
    head: str,
    world_size: int,
    num_labels: int = 2,
    num_choices: int = 4,
    gradient_checkpointing: bool = False,
    auto_precision: str = "bf16",
) -> TrainingSetup:
    """A `TrainingSetup` from a config's TrainConfig; precision 'auto' becomes `auto_precision` (a GPU
    site: bf16, or fp16 on GPUs without bf16, as `hpcxlt.train.engine.resolve_precision` picks)."""
    return TrainingSetup(
        shape=shape,
        head=head,
        num_labels=num_labels,
        num_choices=num_choices,
        precision=auto_precision if train.precision == "auto" else train.precision,
        zero_stage=train.zero_stage,
        world_size=world_size,
        micro_batch_size=train.micro_batch_size,
        grad_accum=train.grad_accum,
        max_length=train.max_length,
        gradient_checkpointing=gradient_checkpointing,
    )


@dataclass(frozen=True, kw_only=True)
class MemoryEstimate:
    """Bytes per GPU of one training process."""

    model_states: ModelStates
    activations: Activations

    @property
    def total(self) -> float:
        return self.model_states.total + self.activations.total

    @property
    def total_gib(self) -> float:
        return self.total / GIB


def gpu_memory(setup: TrainingSetup) -> MemoryEstimate:
    """Model states + activations of one process of `setup`."""
    params = parameter_count(setup.shape, head=setup.head, num_labels=setup.num_labels)
    states = model_state_bytes(
        params,
        zero_stage=setup.zero_stage,
        precision=setup.precision,
        world_size=setup.world_size,
        largest_layer=largest_layer_params(setup.shape, head=setup.head, num_labels=setup.num_labels),
    )
    activations = activation_bytes(
        setup.shape,
        seq_len=setup.max_length,
        micro_batch_size=setup.micro_batch_size,
        precision=setup.precision,
        head=setup.head,
        num_labels=setup.num_labels,
        num_choices=setup.num_choices,
        gradient_checkpointing=setup.gradient_checkpointing,
    )
    return MemoryEstimate(model_states=states, activations=activations)


def _need_gib(setup: TrainingSetup, reserve_gib: float) -> float:
    return gpu_memory(setup).total_gib + reserve_gib


def fit_advice(setup: TrainingSetup, gpu_gib: float, *, reserve_gib: float = DEFAULT_RESERVE_GIB) -> str | None:
    """None when `setup` fits a GPU of `gpu_gib` GiB (estimate + `reserve_gib`); else what does not fit
    and the smallest change that fits, trying in order: a smaller micro-batch (a divisor of the current
    one, grad_accum raised to keep the global batch), a higher ZeRO stage (with N > 1), gradient
    checkpointing, then checkpointing with a smaller micro-batch and ZeRO-3 together."""
    need = _need_gib(setup, reserve_gib)
    if need <= gpu_gib:
        return None
    head = f"needs {need:.1f} GiB per GPU, the site's GPUs have {gpu_gib:g} GiB"

    def fits(candidate: TrainingSetup) -> float | None:
        value = _need_gib(candidate, reserve_gib)
        return value if value <= gpu_gib else None

    mb = setup.micro_batch_size
    for smaller in sorted((d for d in range(1, mb) if mb % d == 0), reverse=True):
        value = fits(replace(setup, micro_batch_size=smaller))
        if value is not None:
            accum = setup.grad_accum * (mb // smaller)
            return (
                f"{head}: micro_batch_size {mb} -> {smaller} fits ({value:.1f} of {gpu_gib:g} GiB; "
                f"grad_accum {setup.grad_accum} -> {accum} keeps the global batch)"
            )
    if setup.world_size > 1:
        for stage in range(setup.zero_stage + 1, 4):
            value = fits(replace(setup, zero_stage=stage))
            if value is not None:
                return f"{head}: zero_stage {setup.zero_stage} -> {stage} fits ({value:.1f} of {gpu_gib:g} GiB)"
    if not setup.gradient_checkpointing:
        value = fits(replace(setup, gradient_checkpointing=True))
        if value is not None:
            return f"{head}: gradient checkpointing fits ({value:.1f} of {gpu_gib:g} GiB)"
    # no single knob: checkpointing with the largest micro-batch that fits, then ZeRO-3 on top of it
    stage = 3 if setup.world_size > 1 else setup.zero_stage
    for combined in (
        replace(setup, gradient_checkpointing=True),
        replace(setup, gradient_checkpointing=True, zero_stage=stage),
    ):
        for smaller in sorted((d for d in range(1, mb + 1) if mb % d == 0), reverse=True):
            value = fits(replace(combined, micro_batch_size=smaller))
            if value is not None:
                changes = ["gradient checkpointing"]
                if combined.zero_stage != setup.zero_stage:
                    changes.append(f"zero_stage {setup.zero_stage} -> {combined.zero_stage}")
                if smaller != mb:
                    changes.append(
                        f"micro_batch_size {mb} -> {smaller} (grad_accum {setup.grad_accum} -> "
                        f"{setup.grad_accum * (mb // smaller)})"
                    )
                return f"{head}: {' + '.join(changes)} fit ({value:.1f} of {gpu_gib:g} GiB)"
    least = replace(setup, micro_batch_size=1, zero_stage=stage, gradient_checkpointing=True)
    return (
        f"{head}: even micro_batch_size 1, zero_stage {stage} and gradient checkpointing need "
        f"{_need_gib(least, reserve_gib):.1f} GiB; use more GPUs per training job (ZeRO-3 partitions "
        "over them) or GPUs with more memory"
    )
