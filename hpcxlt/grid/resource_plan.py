"""A grid's resources against the hardware it is to run on: GPU memory per training stage, peak disk,
and the makespan of its job DAG (#24 part 2; `hpcxlt plan --site`, and the refusals at `submit`).

Pure and standard library only: the arithmetic of `grid/memory.py`, `disk.py` and `makespan.py` applied to
an experiment's config and plan. What it knows of the site comes in as a `Hardware` (the launch layer
builds it from a site profile: `hpcxlt/launch/resources.py`); the model's shape as a `ModelShape`.

- **Memory**, per training stage: every distinct training setup of the stage (an intermediate arm, a
  target task or its prelude), with its own hyperparameters (arm and target overrides), head and label
  count, on the stage's processes per job; the stage's figure is its largest. An intermediate arm trains
  one task per micro-batch: its figure is its largest task's single-task model (the multi-task model's
  other heads and its pooler, a few million parameters, are left out). Precision 'auto' is bf16 on a GPU
  site, fp32 on a CPU one. `fit_advice` adds its reserve and names the knob.
- **Disk** (`grid_disk`): every training cell's export, the checkpoints in flight of the training cells
  that can run at once (bounded by the GPUs and the site's array limits; all of a stage's cells when
  neither is known), the feature cache (an upper bound: `max_length` tokens per row) and the predictions.
- **Makespan**: the plan's jobs with the cost model's hours (`grid/cost.py`: examples / throughput per
  GPU; a job on k GPUs runs 1/k of its GPU-hours, linear scaling), scheduled on G GPUs. The aggregation
  job (CPU, minutes) is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hpcxlt.config import ExperimentConfig, TrainConfig, arm_train_config, target_train_config
from hpcxlt.grid.cost import cell_samples, eval_examples, stage_rate, train_examples
from hpcxlt.grid.disk import (
    DiskEstimate,
    StageDisk,
    checkpoint_bytes,
    checkpoints_in_flight,
    export_bytes,
    feature_cache_bytes,
    grid_disk,
    prediction_bytes,
)
from hpcxlt.grid.makespan import DagJob, Makespan, makespan
from hpcxlt.grid.memory import (
    DEFAULT_RESERVE_GIB,
    GIB,
    MemoryEstimate,
    TrainingSetup,
    fit_advice,
    gpu_memory,
    setup_from_train,
)
from hpcxlt.grid.plan import Plan, arm_languages
from hpcxlt.grid.resources import ModelShape, parameter_count
from hpcxlt.tasks.registry import get_task
from hpcxlt.tasks.spec import TaskSpec

TRAIN_STAGES = ("intermediate", "target")
KNOBS = {"micro_batch_size", "grad_accum", "zero_stage", "max_length"}
"""The TrainConfig keys `fit_advice` turns: a setup whose overrides set one is told to change it there."""


@dataclass(frozen=True, kw_only=True)
class Hardware:
    """What the planner knows of where a grid runs (a site profile, `--gpus`); None: unknown."""

    gpu_memory_gib: float | None = None
    """Memory of one GPU, GiB; None: not checked."""
    gpus: int | None = None
    """GPUs the sweep may use at once (the makespan's G)."""
    disk_quota_gib: float | None = None
    """The run's disk quota, GiB; None: not checked."""
    processes: Mapping[str, int] = field(default_factory=dict)
    """Training stage -> data-parallel processes of one job (nodes x tasks per node); 1 when absent."""
    job_gpus: Mapping[str, int] = field(default_factory=dict)
    """Stage -> GPUs one job holds (the makespan's job width; at least 1); 1 when absent."""
    array_limit: int | None = None
    """At most this many tasks of one array run at once (the site's array_throttle / max_running)."""
    gpu_site: bool = True
    """Training runs on GPUs: precision 'auto' is bf16 (fp32 on a CPU site)."""
    reserve_gib: float = DEFAULT_RESERVE_GIB
    """Per GPU, what the arithmetic leaves out (CUDA context, buckets, fragmentation)."""


@dataclass(frozen=True, kw_only=True)
class SetupMemory:
    """One training setup of a stage and its memory per GPU."""

    label: str
    """Which arm (intermediate) or target task (a prelude: 'xcopa/siqa') it is."""
    task: str
    """The task whose model it counts (an arm's largest)."""
    setup: TrainingSetup
    estimate: MemoryEstimate
    need_gib: float
    """estimate + the reserve: what `fit_advice` compares with the GPU."""
    advice: str | None
    """`fit_advice` when it does not fit a known GPU memory, else None."""
    section: str
    """Where the config sets its hyperparameters: 'intermediate', 'arms[2].train', 'target', 'targets.overrides.xquad'."""


@dataclass(frozen=True, kw_only=True)
class StageMemory:
    """A training stage's largest setup, and every setup of it that does not fit."""

    stage: str
    worst: SetupMemory
    unfit: tuple[SetupMemory, ...]


@dataclass(frozen=True, kw_only=True)
class DiskPlan:
    estimate: DiskEstimate
    stages: tuple[StageDisk, ...]
    bounded: bool
    """Whether the training cells running at once are bounded by known GPUs or array limits."""
    keep_last: int
    """The largest keep_last of the training setups."""
    quota_gib: float | None

    @property
    def total_gib(self) -> float:
        return self.estimate.total / GIB

    @property
    def over_quota(self) -> bool:
        return self.quota_gib is not None and self.total_gib > self.quota_gib

    def biggest(self) -> tuple[str, int]:
        """The largest term: ('exports' | 'checkpoints' | 'features' | 'predictions', bytes)."""
        terms = {
            "exports": self.estimate.exports,
            "checkpoints": self.estimate.checkpoints,
            "features": self.estimate.features,
            "predictions": self.estimate.predictions,
        }
        name = max(terms, key=lambda key: terms[key])
        return name, terms[name]


@dataclass(frozen=True, kw_only=True)
class ResourcePlan:
    hardware: Hardware
    memory: tuple[StageMemory, ...]
    disk: DiskPlan
    makespan: Makespan | None
    """None when G is unknown, or a job needs more GPUs than G (`makespan_error`)."""
    makespan_error: str | None = None


def resolved_precision(train: TrainConfig, hardware: Hardware) -> str:
    """'auto' -> bf16 on a GPU site (fp16 on GPUs without bf16 is not known here), fp32 on a CPU site."""
    if train.precision != "auto":
        return train.precision
    return "bf16" if hardware.gpu_site else "fp32"


def _labels_of(spec: TaskSpec) -> tuple[int, int]:
    """(num_labels, num_choices) of a task's model."""
    names = len(spec.label_names)
    return (names or 2), (names or 4)


def task_setup(
    spec: TaskSpec, train: TrainConfig, shape: ModelShape, *, world_size: int, precision: str
) -> TrainingSetup:
    num_labels, num_choices = _labels_of(spec)
    return setup_from_train(
        train,
        shape,
        head=spec.format,
        world_size=world_size,
        num_labels=num_labels,
        num_choices=num_choices,
        auto_precision=precision,
    )


def _setup_memory(
    label: str,
    specs: tuple[TaskSpec, ...],
    train: TrainConfig,
    section: str,
    shape: ModelShape,
    stage: str,
    hardware: Hardware,
) -> SetupMemory:
    precision = resolved_precision(train, hardware)
    world = hardware.processes.get(stage, 1)
    candidates = [(task_setup(s, train, shape, world_size=world, precision=precision), s.name) for s in specs]
    setup, task = max(candidates, key=lambda pair: gpu_memory(pair[0]).total)
    estimate = gpu_memory(setup)
    advice = None
    if hardware.gpu_memory_gib is not None:
        advice = fit_advice(setup, hardware.gpu_memory_gib, reserve_gib=hardware.reserve_gib)
    return SetupMemory(
        label=label,
        task=task,
        setup=setup,
        estimate=estimate,
        need_gib=estimate.total_gib + hardware.reserve_gib,
        advice=advice,
        section=section,
    )


def training_setups(
    cfg: ExperimentConfig, plan: Plan, shape: ModelShape, hardware: Hardware
) -> dict[str, list[SetupMemory]]:
    """Training stage -> its distinct setups (one per arm, one per target task and prelude), with memory."""
    out: dict[str, list[SetupMemory]] = {stage: [] for stage in TRAIN_STAGES}
    arms = sorted(
        {cell.arm for cell in plan.stage_cells("intermediate")}, key=lambda a: [x.name for x in cfg.arms].index(a)
    )
    for name in arms:
        arm = cfg.arm(name)
        index = cfg.arms.index(arm)
        section = f"arms[{index}].train" if set(arm.train) & KNOBS else "intermediate"
        specs = tuple(get_task(task) for task in arm.tasks)
        out["intermediate"].append(
            _setup_memory(name, specs, arm_train_config(cfg, arm), section, shape, "intermediate", hardware)
        )
    seen = set()
    for cell in plan.stage_cells("target"):
        if cell.target is None:
            raise ValueError(f"target cell {cell.key} names no target task")
        trains = cell.trains or cell.target
        if (cell.target, trains) in seen:
            continue
        seen.add((cell.target, trains))
        label = cell.target if trains == cell.target else f"{cell.target}/{trains}"
        overrides = cfg.targets.overrides.get(cell.target, {})
        section = f"targets.overrides.{cell.target}" if set(overrides) & KNOBS else "target"
        train = target_train_config(cfg, cell.target)
        out["target"].append(_setup_memory(label, (get_task(trains),), train, section, shape, "target", hardware))
    return out


def stage_memory(setups: dict[str, list[SetupMemory]]) -> tuple[StageMemory, ...]:
    return tuple(
        StageMemory(
            stage=stage,
            worst=max(items, key=lambda item: item.need_gib),
            unfit=tuple(sorted((i for i in items if i.advice), key=lambda i: -i.need_gib)),
        )
        for stage, items in setups.items()
        if items
    )


def _params(item: SetupMemory) -> int:
    return parameter_count(item.setup.shape, head=item.setup.head, num_labels=item.setup.num_labels)


def running_at_once(stage: str, cells: int, hardware: Hardware) -> tuple[int, bool]:
    """Training cells of `stage` that can run at once, and whether anything known bounds it."""
    limits = []
    if hardware.gpus is not None:
        limits.append(max(1, hardware.gpus // max(1, hardware.job_gpus.get(stage, 1))))
    if hardware.array_limit is not None:
        limits.append(hardware.array_limit)
    return (min([cells, *limits]), bool(limits))


def feature_bytes(cfg: ExperimentConfig, plan: Plan) -> int:
    """The feature cache the grid fills: each trained (task, languages, max_length) once, with its rows
    (the cost model's sizes, capped by arm budgets and data.max_train_examples) x max_length tokens (an
    upper bound: features are unpadded); each evaluated (target, language, split) with
    `cost.eval_examples` rows (capped by data.max_eval_examples)."""
    train: dict[tuple[str, tuple[str, ...], int], int] = {}
    for name in {cell.arm for cell in plan.stage_cells("intermediate")}:
        arm = cfg.arm(name)
        langs = arm_languages(cfg, name)
        max_length = arm_train_config(cfg, arm).max_length
        for task in arm.tasks:
            rows = min(train_examples(cfg, task, langs[task]), arm.examples.get(task, 10**12))
            key = (task, langs[task], max_length)
            train[key] = max(train.get(key, 0), rows)
    # per (target, task trained), not per cell: resolving a target's hyperparameters builds a config
    for target, task in {(cell.target or "", cell.trains or cell.target or "") for cell in plan.stage_cells("target")}:
        rows = train_examples(cfg, task, ("en",))
        key = (task, ("en",), target_train_config(cfg, target).max_length)
        train[key] = max(train.get(key, 0), rows)
    total = 0
    for (task, _, max_length), rows in train.items():
        spec = get_task(task)
        per_row = max_length * (_labels_of(spec)[1] if spec.format == "multiple_choice" else 1)
        total += feature_cache_bytes(rows, per_row, format=spec.format)
    eval_rows = eval_examples(cfg)
    evaluated = {(cell.target or "", cell.lang) for cell in plan.stage_cells("eval")}
    max_lengths = {target: target_train_config(cfg, target).max_length for target in {t for t, _ in evaluated}}
    for target, _ in evaluated:
        spec = get_task(target)
        max_length = max_lengths[target]
        per_row = max_length * (_labels_of(spec)[1] if spec.format == "multiple_choice" else 1)
        total += len(cfg.eval.splits) * feature_cache_bytes(eval_rows, per_row, format=spec.format)
    return total


def disk_plan(cfg: ExperimentConfig, plan: Plan, setups: dict[str, list[SetupMemory]], hardware: Hardware) -> DiskPlan:
    stages = []
    bounded = True
    keep_last = 1
    for stage in TRAIN_STAGES:
        items = setups.get(stage) or []
        cells = len(plan.stage_cells(stage))
        if not items or not cells:
            continue
        running, known = running_at_once(stage, cells, hardware)
        bounded = bounded and known
        trains = [_train_of(cfg, stage, item) for item in items]
        keep_last = max([keep_last, *(t.keep_last for t in trains)])
        stages.append(
            StageDisk(
                stage=stage,
                cells=cells,
                running=running,
                export_bytes=max(export_bytes(_params(item)) for item in items),
                checkpoint_bytes=max(
                    checkpoint_bytes(_params(item), zero_stage=item.setup.zero_stage, precision=item.setup.precision)
                    for item in items
                ),
                in_flight=max(
                    checkpoints_in_flight(t.keep_last, select_best=t.select_by != "last" and t.eval_every > 0)
                    for t in trains
                ),
            )
        )
    eval_rows = eval_examples(cfg)
    predictions = prediction_bytes(len(plan.stage_cells("eval")) * len(cfg.eval.splits) * eval_rows)
    estimate = grid_disk(stages, features=feature_bytes(cfg, plan), predictions=predictions)
    return DiskPlan(
        estimate=estimate, stages=tuple(stages), bounded=bounded, keep_last=keep_last, quota_gib=hardware.disk_quota_gib
    )


def _train_of(cfg: ExperimentConfig, stage: str, item: SetupMemory) -> TrainConfig:
    if stage == "intermediate":
        return arm_train_config(cfg, cfg.arm(item.label))
    return target_train_config(cfg, item.label.split("/")[0])


def dag_jobs(cfg: ExperimentConfig, plan: Plan, hardware: Hardware) -> list[DagJob]:
    """The plan's jobs with the cost model's hours on their GPUs (GPU-hours / GPUs per job)."""
    samples = cell_samples(cfg, plan)
    jobs = []
    for job in plan.jobs:
        width = max(1, hardware.job_gpus.get(job.stage, 1))
        gpu_hours = sum(samples[key] for key in job.cells) / stage_rate(cfg, job.stage)
        jobs.append(DagJob(id=job.key, gpus=width, hours=gpu_hours / width, deps=job.deps))
    return jobs


def resource_plan(cfg: ExperimentConfig, plan: Plan, shape: ModelShape, hardware: Hardware) -> ResourcePlan:
    """Memory per training stage, peak disk and the makespan of `plan` on `hardware` (module docstring)."""
    setups = training_setups(cfg, plan, shape, hardware)
    schedule, error = None, None
    if hardware.gpus is not None:
        jobs = dag_jobs(cfg, plan, hardware)
        widest = max((job.gpus for job in jobs), default=1)
        if widest > hardware.gpus:
            error = f"a job needs {widest} GPUs, more than the {hardware.gpus} the sweep may use"
        else:
            schedule = makespan(jobs, hardware.gpus)
    return ResourcePlan(
        hardware=hardware,
        memory=stage_memory(setups),
        disk=disk_plan(cfg, plan, setups, hardware),
        makespan=schedule,
        makespan_error=error,
    )


def memory_refusal(stage: StageMemory) -> str | None:
    """One line naming the stage, its setup and the knob when its largest setup does not fit; else None."""
    if not stage.unfit:
        return None
    item = stage.unfit[0]
    others = [i.label for i in stage.unfit[1:]]
    more = (
        f"; {len(others)} more do not fit: {', '.join(others[:5])}" + (" ..." if len(others) > 5 else "")
        if others
        else ""
    )
    note = (
        " (hpcxlt has no gradient-checkpointing switch yet: lower micro_batch_size or raise zero_stage instead)"
        if "gradient checkpointing" in (item.advice or "")
        else ""
    )
    return f"{stage.stage} stage ({item.label}) {item.advice}; set it under {item.section}{note}{more}"


def disk_refusal(disk: DiskPlan) -> str | None:
    """One line naming the biggest term and its knob when the disk estimate exceeds the quota; else None."""
    if not disk.over_quota:
        return None
    name, size = disk.biggest()
    gib = size / GIB
    head = f"the disk estimate {disk.total_gib:,.0f} GiB exceeds the site's disk_quota_gb {disk.quota_gib:g}"
    if name == "checkpoints":
        running = sum(s.running for s in disk.stages)
        bound = "" if disk.bounded else " (unbounded: set the site's gpus or array_throttle)"
        knob = (
            f"checkpoints in flight {gib:,.0f} GiB ({running} training cells at once{bound}); lower keep_last "
            f"({disk.keep_last}), or let fewer cells run at once (the site's gpus, array_throttle, max_running)"
        )
    elif name == "exports":
        cells = sum(s.cells for s in disk.stages)
        knob = (
            f"exported models {gib:,.0f} GiB ({cells} training cells keep theirs); fewer arms, targets or "
            "seeds per run, or a larger quota"
        )
    elif name == "features":
        knob = (
            f"the feature cache {gib:,.0f} GiB; cap data.max_train_examples / max_eval_examples, or put "
            "data.cache_dir on another file system"
        )
    else:
        knob = f"predictions {gib:,.0f} GiB; cap data.max_eval_examples"
    return f"{head}: the biggest term is {knob}"


__all__ = [
    "DiskPlan",
    "Hardware",
    "ResourcePlan",
    "SetupMemory",
    "StageMemory",
    "disk_refusal",
    "memory_refusal",
    "resource_plan",
    "resolved_precision",
]
