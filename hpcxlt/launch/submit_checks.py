"""What must hold before any job of a run is submitted, checked the same way by `submit`, `resume`, the
feeder job that submits a run's next wave, and the local executor.

    check_before_submit(cfg, site, where) -> None, or SubmitCheckError naming what to change

- the tracking backends the config names are installed (here, not in every job on a compute node);
- `stats.aso` has its `deepsig` package (the aggregation job needs it);
- an offline site (compute nodes without the hub) is not asked to read hub data;
- `eval.retrieval_layer` exists in the model (its config.json, where one is readable here);
- every training stage fits the site's `gpu_memory_gb`, and the grid's disk estimate its `disk_quota_gb`
  (`hpcxlt/launch/resources.py`; a site without those keys is not checked).
"""

from __future__ import annotations

import importlib.util

from hpcxlt.config import ExperimentConfig
from hpcxlt.launch.resources import model_shape, refusal
from hpcxlt.launch.site.profile import SiteProfile
from hpcxlt.tasks.registry import get_task


class SubmitCheckError(RuntimeError):
    """The run cannot be submitted as it is; the message says what to change."""


def check_before_submit(cfg: ExperimentConfig, site: SiteProfile | None, where: str) -> None:
    """Raise SubmitCheckError (prefixed with `where`, the config's file or run directory) when the run
    cannot work as configured; `site` None: the local executor."""
    from hpcxlt.train.tracking import TrackingError, require_packages  # heavy: torch + wandb

    try:
        require_packages(cfg.tracking)
    except TrackingError as err:
        raise SubmitCheckError(f"{where}: {err}") from None
    if cfg.stats.aso and importlib.util.find_spec("deepsig") is None:
        raise SubmitCheckError(
            f"{where}: stats.aso is on but the `deepsig` package is not installed (the aggregation "
            "job needs it): `pip install deepsig`, or set stats.aso: false"
        )
    if site is not None and site.offline and cfg.data.source == "hub":
        raise SubmitCheckError(
            f"{where}: site {site.name!r} ({site.source}) is offline: its compute nodes cannot reach the hub that "
            f"data.source 'hub' reads. On a login node run `hpcxlt prepare CONFIG --out DIR [--features]`, then "
            "submit with -o data.source=local -o data.root=DIR"
        )
    layer_problem = retrieval_layer_problem(cfg)
    if layer_problem:
        raise SubmitCheckError(f"{where}: {layer_problem}")
    if site is not None:
        problem = refusal(cfg, site)  # GPU memory per training stage, then the disk quota
        if problem:
            raise SubmitCheckError(f"{where}: {problem}")


def retrieval_layer_problem(cfg: ExperimentConfig) -> str | None:
    """Why `eval.retrieval_layer` cannot be read from the model (its config.json readable here), else None.

    The layer is taken only when a retrieval target is evaluated, after every training job before it: a
    layer the model lacks (XLM-R Large's 14 on a 12-layer base model) would fail every such evaluation.
    """
    if not any(get_task(task).format == "retrieval" for task in cfg.targets.tasks):
        return None
    shape, source, fallback = model_shape(cfg.model)
    if fallback:
        return None  # no config.json of the model here: nothing to hold the layer against
    layer, top = cfg.eval.retrieval_layer, shape.num_layers  # hidden states 0 (embeddings) .. num_layers
    if -(top + 1) <= layer <= top:
        return None
    return (
        f"eval.retrieval_layer {layer}: {cfg.model.name_or_path} has hidden states 0..{top} ({source}); "
        f"allowed: {-(top + 1)}..{top} (XTREME's 14 is for XLM-R Large's 24 layers)"
    )


__all__ = ["SubmitCheckError", "check_before_submit", "retrieval_layer_problem"]
