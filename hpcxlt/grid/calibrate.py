"""GPU-hours of a plan from rates measured on a site (a rehearsal, `hpcxlt submit --rehearse`) instead of the
throughput figures of the config's `cost` section.

Pure: the rates come in as `MeasuredRates` (the store reads them from a rehearsal's `rehearsal.json`,
`hpcxlt.store.rehearsal.measured_rates`); the examples per stage are `hpcxlt.grid.cost.estimate`'s, so a
calibrated and an uncalibrated estimate differ only in the rates (and the per-job overhead the rehearsal
measured, which the config's figures leave out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hpcxlt.config import ExperimentConfig
from hpcxlt.grid.cost import StageCost, estimate
from hpcxlt.grid.plan import Plan

TRAIN_STAGES = ("intermediate", "target")


@dataclass(frozen=True, kw_only=True)
class MeasuredRates:
    """Throughput measured on one site, per GPU, as the cost model counts it."""

    source: str
    """Where the figures come from (the rehearsal's run directory)."""
    train_samples_per_second: Mapping[str, float] = field(default_factory=dict)
    """Training stage -> examples per second per GPU (a stage the rehearsal did not measure is absent)."""
    eval_samples_per_second: float | None = None
    """Evaluated examples per second per GPU (None: not measured)."""
    job_overhead_s: Mapping[str, float] = field(default_factory=dict)
    """Stage -> seconds per job besides its steps or examples (loading the model and data, the export)."""
    gpus_per_job: Mapping[str, int] = field(default_factory=dict)
    """Stage -> GPUs a job held on the site (1 when it had none): what a job's overhead costs in GPU-hours."""

    def rate(self, stage: str) -> float | None:
        """Examples per second per GPU of a stage, or None when not measured."""
        if stage == "eval":
            return self.eval_samples_per_second
        return self.train_samples_per_second.get(stage)


@dataclass(frozen=True, kw_only=True)
class CalibratedCost:
    """One stage's estimate from measured rates, beside the config's."""

    stage: str
    samples: int
    """Examples processed (as `grid.cost.estimate` counts them)."""
    jobs: int
    """Jobs of the stage."""
    samples_per_second: float
    """The rate used (per GPU): measured, or the config's where the rehearsal measured none."""
    measured: bool
    """Whether `samples_per_second` was measured."""
    work_gpu_hours: float
    """samples / rate."""
    overhead_gpu_hours: float
    """jobs x measured overhead per job x GPUs per job."""
    config_gpu_hours: float
    """The config's estimate (its throughput figures, no overhead)."""

    @property
    def gpu_hours(self) -> float:
        return self.work_gpu_hours + self.overhead_gpu_hours

    def to_dict(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "samples": self.samples,
            "jobs": self.jobs,
            "samples_per_second": self.samples_per_second,
            "measured": self.measured,
            "work_gpu_hours": self.work_gpu_hours,
            "overhead_gpu_hours": self.overhead_gpu_hours,
            "gpu_hours": self.gpu_hours,
            "config_gpu_hours": self.config_gpu_hours,
        }


def stage_cost(
    stage: str, *, samples: int, jobs: int, configured_rate: float, config_gpu_hours: float, rates: MeasuredRates
) -> CalibratedCost:
    """One stage: `samples` examples in `jobs` jobs at the measured rate (else `configured_rate`), plus the
    measured overhead of each job."""
    measured = rates.rate(stage)
    rate = measured if measured else configured_rate
    overhead = rates.job_overhead_s.get(stage, 0.0) * max(1, rates.gpus_per_job.get(stage, 1))
    return CalibratedCost(
        stage=stage,
        samples=samples,
        jobs=jobs,
        samples_per_second=rate,
        measured=bool(measured),
        work_gpu_hours=samples / rate / 3600,
        overhead_gpu_hours=jobs * overhead / 3600,
        config_gpu_hours=config_gpu_hours,
    )


def configured_rate(cfg: ExperimentConfig, stage: str) -> float:
    """The config's throughput figure of a stage (examples per second per GPU)."""
    return cfg.cost.eval_samples_per_second if stage == "eval" else cfg.cost.train_samples_per_second


def calibrated_estimate(cfg: ExperimentConfig, plan: Plan, rates: MeasuredRates) -> list[CalibratedCost]:
    """GPU-hours per stage of `plan` at the measured rates (the config's figure where a stage was not measured)."""
    return [
        stage_cost(
            cost.stage,
            samples=cost.samples,
            jobs=len(plan.stage_jobs(cost.stage)),
            configured_rate=configured_rate(cfg, cost.stage),
            config_gpu_hours=cost.gpu_hours,
            rates=rates,
        )
        for cost in estimate(cfg, plan)
    ]


def as_stage_costs(costs: list[CalibratedCost]) -> list[StageCost]:
    """The calibrated figures in `grid.cost`'s shape (what `plan` prints), overhead included."""
    return [StageCost(stage=c.stage, samples=c.samples, gpu_hours=c.gpu_hours) for c in costs]
