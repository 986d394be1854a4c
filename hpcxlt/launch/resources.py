"""The resource planner against a site profile: `hpcxlt plan --site` prints it, `submit` (and `resume`, the
feeder) refuses what cannot fit (`hpcxlt/launch/submit_checks.py`).

    model_shape(model_cfg) -> (ModelShape, where it came from)
    hardware(site, gpus) -> Hardware                 what the profile says: GPU memory, GPUs, disk quota
    plan_resources(cfg, grid, site, gpus) -> SiteResources
    refusal(cfg, site, grid) -> str | None           the first stage that does not fit, or the disk

The arithmetic is the grid layer's (`hpcxlt/grid/resource_plan.py`, docs/resources.md). Standard library
and PyYAML only: `plan` stays light on a login node. The model's shape comes from its config.json: a local
folder, or the Hugging Face cache's copy of a hub id (read offline, nothing fetched); else XLM-R Large's
published shape, and the output says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcxlt.config import ExperimentConfig, ModelConfig
from hpcxlt.grid.memory import GIB
from hpcxlt.grid.plan import Plan, plan
from hpcxlt.grid.resource_plan import Hardware, ResourcePlan, disk_refusal, memory_refusal, resource_plan
from hpcxlt.grid.resources import XLMR_LARGE, ModelShape, parameter_count
from hpcxlt.launch.site.profile import TRAIN_STAGES, SiteProfile


@dataclass(frozen=True, kw_only=True)
class SiteResources:
    """What `plan --site` reports."""

    plan: ResourcePlan
    shape: ModelShape
    shape_source: str
    """Where the shape came from: a config.json path, or XLM-R Large's published shape and why."""
    published_shape: bool
    """True when the shape is the XLM-R Large fallback."""
    site: str | None
    """The site's name (None: --gpus alone)."""

    def to_json(self) -> dict[str, Any]:
        """The figures for `plan --json` (GiB, hours)."""
        return _json(self)

    def text_lines(self) -> list[str]:
        """The lines `plan --site` prints."""
        return _text(self)


def _hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "huggingface" / "hub"


def find_model_config(model: ModelConfig) -> Path | None:
    """The config.json of `model` readable here without a network: `name_or_path` as a local folder, else
    the Hugging Face cache's snapshot of the hub id at its revision (refs/<revision or main>)."""
    local = Path(model.name_or_path).expanduser()
    if local.is_dir():
        found = local / "config.json"
        return found if found.is_file() else None
    if model.name_or_path.count("/") != 1:
        return None
    repo = _hub_cache() / f"models--{model.name_or_path.replace('/', '--')}"
    revision = model.revision or "main"
    ref = repo / "refs" / revision
    try:
        commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else revision
    except OSError:
        return None
    found = repo / "snapshots" / commit / "config.json"
    return found if found.is_file() else None


def model_shape(model: ModelConfig) -> tuple[ModelShape, str, bool]:
    """(shape, where it came from, whether it is the XLM-R Large fallback)."""
    path = find_model_config(model)
    if path is None:
        return XLMR_LARGE, f"XLM-R Large's published shape (no config.json of {model.name_or_path} here)", True
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ModelShape.from_config(data), f"{path}", False
    except (OSError, ValueError, TypeError) as err:
        return XLMR_LARGE, f"XLM-R Large's published shape ({path} does not read as an encoder config: {err})", True


def hardware(site: SiteProfile | None, gpus: int | None = None) -> Hardware:
    """What a site profile says about the GPUs, the disk and the jobs' widths; `gpus` overrides its `gpus`."""
    if site is None:
        return Hardware(gpus=gpus)
    processes, widths = {}, {}
    for stage in (*TRAIN_STAGES, "eval"):
        res = site.stage(stage)
        if stage in TRAIN_STAGES:
            processes[stage] = res.nodes * res.ntasks_per_node(stage)
        widths[stage] = max(1, res.nodes * res.gpus())
    limits = [limit for limit in (site.array_throttle, site.max_running) if limit is not None]
    return Hardware(
        gpu_memory_gib=site.gpu_memory_gb,
        gpus=gpus if gpus is not None else site.gpus,
        disk_quota_gib=site.disk_quota_gb,
        processes=processes,
        job_gpus=widths,
        array_limit=min(limits) if limits else None,
        gpu_site=any(site.stage(stage).gpus() for stage in TRAIN_STAGES),
    )


def plan_resources(
    cfg: ExperimentConfig, grid: Plan, site: SiteProfile | None, gpus: int | None = None
) -> SiteResources:
    shape, source, published = model_shape(cfg.model)
    return SiteResources(
        plan=resource_plan(cfg, grid, shape, hardware(site, gpus)),
        shape=shape,
        shape_source=source,
        published_shape=published,
        site=None if site is None else site.name,
    )


def refusal(cfg: ExperimentConfig, site: SiteProfile, grid: Plan | None = None) -> str | None:
    """The first training stage that cannot fit the site's GPU memory (with the knob), else the disk over
    the site's quota (with its biggest term and knob); None when both fit or the site sets neither key."""
    if site.gpu_memory_gb is None and site.disk_quota_gb is None:
        return None
    figures = plan_resources(cfg, grid if grid is not None else plan(cfg), site).plan
    for stage in figures.memory:
        problem = memory_refusal(stage)
        if problem:
            return problem
    return disk_refusal(figures.disk)


def _gib(value: float) -> float:
    return round(value / GIB, 3)


def _json(res: SiteResources) -> dict[str, Any]:
    hw, figures = res.plan.hardware, res.plan
    memory = {}
    for stage in figures.memory:
        item = stage.worst
        memory[stage.stage] = {
            "setup": item.label,
            "task": item.task,
            "processes_per_job": item.setup.world_size,
            "precision": item.setup.precision,
            "zero_stage": item.setup.zero_stage,
            "micro_batch_size": item.setup.micro_batch_size,
            "max_length": item.setup.max_length,
            "model_states_gib": _gib(item.estimate.model_states.total),
            "activations_gib": _gib(item.estimate.activations.total),
            "reserve_gib": hw.reserve_gib,
            "need_gib": round(item.need_gib, 3),
            "fits": None if hw.gpu_memory_gib is None else not stage.unfit,
            "advice": memory_refusal(stage),
            "unfit": [i.label for i in stage.unfit],
        }
    disk = figures.disk
    name, _ = disk.biggest()
    schedule = figures.makespan
    return {
        "site": res.site,
        "gpu_memory_gb": hw.gpu_memory_gib,
        "gpus": hw.gpus,
        "disk_quota_gb": hw.disk_quota_gib,
        "model": {
            "shape_source": res.shape_source,
            "published_shape": res.published_shape,
            "parameters": parameter_count(res.shape, head="retrieval"),
        },
        "memory": memory,
        "disk": {
            "exports_gib": _gib(disk.estimate.exports),
            "checkpoints_gib": _gib(disk.estimate.checkpoints),
            "features_gib": _gib(disk.estimate.features),
            "predictions_gib": _gib(disk.estimate.predictions),
            "total_gib": _gib(disk.estimate.total),
            "running_bounded": disk.bounded,
            "running": {s.stage: s.running for s in disk.stages},
            "biggest": name,
            "fits": None if disk.quota_gib is None else not disk.over_quota,
            "advice": disk_refusal(disk),
        },
        "makespan": None
        if schedule is None
        else {
            "gpus": schedule.gpus,
            "wall_hours": round(schedule.wall_hours, 3),
            "critical_path_hours": round(schedule.critical_path_hours, 3),
            "gpu_hours": round(schedule.gpu_hours, 3),
        },
        "makespan_note": figures.makespan_error,
    }


def _text(res: SiteResources) -> list[str]:
    hw, figures = res.plan.hardware, res.plan
    known = [
        f"{hw.gpu_memory_gib:g} GiB per GPU" if hw.gpu_memory_gib is not None else "GPU memory unknown",
        f"{hw.gpus} GPUs for the sweep" if hw.gpus is not None else "GPUs for the sweep unknown",
        f"disk quota {hw.disk_quota_gib:g} GiB" if hw.disk_quota_gib is not None else "no disk quota",
    ]
    where = f"site {res.site}" if res.site else "--gpus"
    params = parameter_count(res.shape, head="retrieval")
    lines = [
        f"resources on {where} ({'; '.join(known)}):",
        f"  model: {params / 1e6:,.1f}M parameters, shape from {res.shape_source}",
        f"  GPU memory per GPU (model states + activations + {hw.reserve_gib:g} GiB reserve), each training "
        "stage's largest setup:",
    ]
    for stage in figures.memory:
        item = stage.worst
        s = item.setup
        figure = (
            f"{_gib(item.estimate.model_states.total):.1f} model states + {_gib(item.estimate.activations.total):.1f} "
            f"activations + {hw.reserve_gib:g} reserve = {item.need_gib:.1f} GiB"
        )
        if hw.gpu_memory_gib is None:
            verdict = "(set the site's gpu_memory_gb to check)"
        elif not stage.unfit:
            verdict = f"fits {hw.gpu_memory_gib:g} GiB"
        else:
            verdict = "DOES NOT FIT"
        label = item.label if item.task in item.label.split("/") else f"{item.label} ({item.task})"
        lines.append(
            f"    {stage.stage:<13}{label:<22}{s.world_size:>3} GPU(s)/job, {s.precision} ZeRO-{s.zero_stage}, "
            f"micro-batch {s.micro_batch_size} x {s.max_length} tokens: {figure}  {verdict}"
        )
        if stage.unfit:
            lines.append(f"      {memory_refusal(stage)}")
    disk = figures.disk
    d = disk.estimate
    running = ", ".join(f"{st.stage} {st.running}" for st in disk.stages)
    terms = (
        f"exports {_gib(d.exports):,.1f} ({sum(s.cells for s in disk.stages)} training cells), checkpoints in "
        f"flight {_gib(d.checkpoints):,.1f} (cells at once: {running or '-'}"
        + ("" if disk.bounded else "; unbounded: set the site's gpus or array_throttle")
        + f"), feature cache {_gib(d.features):,.1f} (upper bound), predictions {_gib(d.predictions):,.2f}"
    )
    if disk.quota_gib is None:
        lines.append(f"  disk at its peak: {_gib(d.total):,.1f} GiB: {terms}")
    elif disk.over_quota:
        lines.append(f"  disk at its peak: {_gib(d.total):,.1f} GiB: {terms}")
        lines.append(f"    DOES NOT FIT: {disk_refusal(disk)}")
    else:
        lines.append(f"  disk at its peak: {_gib(d.total):,.1f} of {disk.quota_gib:g} GiB, fits: {terms}")
    schedule = figures.makespan
    if schedule is not None:
        lines.append(
            f"  makespan: on {schedule.gpus} GPUs ~ {schedule.wall_hours:,.1f} h wall, critical path "
            f"{schedule.critical_path_hours:,.1f} h, total {schedule.gpu_hours:,.1f} GPU-h (the cost model's "
            "throughput; the aggregation job not counted)"
        )
    elif figures.makespan_error:
        lines.append(f"  makespan: {figures.makespan_error}")
    else:
        lines.append("  makespan: set the site's gpus (GPUs the sweep may use at once) or pass --gpus N")
    return lines


__all__ = ["SiteResources", "find_model_config", "hardware", "model_shape", "plan_resources", "refusal"]
