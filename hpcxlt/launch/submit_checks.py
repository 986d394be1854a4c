"""What must hold before any job of a run is submitted, checked the same way by `submit`, `resume`, the
feeder job that submits a run's next wave, and the local executor.

    check_before_submit(cfg, site, where) -> None, or SubmitCheckError naming what to change

- the tracking backends the config names are installed (here, not in every job on a compute node);
- `stats.aso` has its `deepsig` package (the aggregation job needs it);
- an offline site (compute nodes without the hub) is not asked to read hub data;
- every training stage fits the site's `gpu_memory_gb`, and the grid's disk estimate its `disk_quota_gb`
  (`hpcxlt/launch/resources.py`; a site without those keys is not checked).
"""

from __future__ import annotations

import importlib.util

from hpcxlt.config import ExperimentConfig
from hpcxlt.launch.resources import refusal
from hpcxlt.launch.site.profile import SiteProfile


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
    if site is not None:
        problem = refusal(cfg, site)  # GPU memory per training stage, then the disk quota
        if problem:
            raise SubmitCheckError(f"{where}: {problem}")


__all__ = ["SubmitCheckError", "check_before_submit"]
