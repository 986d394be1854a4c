"""What one rank of `hpcxlt doctor`'s preflight job does on a compute node, and writes for the login node.

    srun python -m hpcxlt.launch.site.preflight PROBE_DIR [--path PATH ...]

Every rank: writes `PROBE_DIR/rank-<R>.json` step by step (so a rank that dies or hangs still leaves
what it found): host, interpreter, package versions, GPUs; then joins a `torch.distributed` group over
the same rendezvous a training job uses (`hpcxlt.launcher_env`, the site's dist_timeout_s, interface
and master address suffix) and all-reduces one tensor (NCCL on GPUs, gloo otherwise); then, after that
collective (a barrier), looks for every other rank's marker file (the shared file system is shared);
then checks that each PATH (model and data folders) is readable. `hpcxlt.launch.site.doctor` judges.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from hpcxlt.launcher_env import detect, dist_timeout_s

PACKAGES = ("hpcxlt", "torch", "deepspeed", "transformers", "datasets", "tokenizers", "submitit", "mpi4py", "numpy")
"""Packages whose versions must match the login node's: a job imports them from the interpreter it runs."""
SHARED_DIR_WAIT_S = 20


def package_versions() -> dict[str, str | None]:
    """Installed version of each of PACKAGES (None when missing), without importing them."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """What the login node compares against its own: interpreter and package versions."""
    return {"python": sys.executable, "python_version": sys.version.split()[0], "packages": package_versions()}


def readable(path: str) -> str | None:
    """None when `path` (a file or folder) can be read here, else why not."""
    target = Path(path)
    if not target.exists():
        return "does not exist"
    try:
        if target.is_dir():
            next(iter(os.scandir(target)), None)
        else:
            with open(target, "rb") as handle:
                handle.read(1)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    return None


class Report:
    """This rank's findings, rewritten atomically after each step."""

    def __init__(self, probe: Path, rank: int) -> None:
        self.path = probe / f"rank-{rank}.json"
        self.data: dict[str, Any] = {
            "rank": rank,
            "host": socket.gethostname(),
            "node": os.environ.get("SLURMD_NODENAME", socket.gethostname()),
            "steps": {},
        }

    def step(self, name: str, **fields: Any) -> None:
        self.data["steps"][name] = fields
        self.save()

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def _all_reduce(dist_env, timeout_s: int) -> dict[str, Any]:

    import torch  # heavy: torch
    import torch.distributed as tdist  # heavy: torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend = "nccl" if gpus else "gloo"
    if gpus:
        torch.cuda.set_device(dist_env.local_rank % gpus)
    started = time.monotonic()
    tdist.init_process_group(
        backend=backend,
        init_method=f"tcp://{dist_env.master_addr}:{dist_env.master_port}",
        rank=dist_env.rank,
        world_size=dist_env.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )
    joined = time.monotonic() - started
    value = torch.ones(1, device="cuda" if gpus else "cpu") * (dist_env.rank + 1)
    tdist.all_reduce(value)
    total = float(value.item())
    expected = dist_env.world_size * (dist_env.world_size + 1) / 2
    return {
        "ok": total == expected,
        "backend": backend,
        "gpus": gpus,
        "sum": total,
        "expected": expected,
        "join_s": round(joined, 3),
        "total_s": round(time.monotonic() - started, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hpcxlt.launch.site.preflight",
        description="One rank of hpcxlt doctor's preflight job (run under srun).",
    )
    parser.add_argument("probe", type=Path, help="shared folder for the ranks' reports")
    parser.add_argument("--path", action="append", default=[], help="a model or data path every node must read")
    args = parser.parse_args(argv)

    dist_env = detect()
    report = Report(args.probe, dist_env.rank)
    report.data.update(
        world_size=dist_env.world_size,
        master=f"{dist_env.master_addr}:{dist_env.master_port}",
        interface=os.environ.get("GLOO_SOCKET_IFNAME") or os.environ.get("NCCL_SOCKET_IFNAME"),
    )
    report.step("started", ok=True)
    report.step("environment", ok=True, **environment())
    (args.probe / f"marker-{dist_env.rank}").write_text(report.data["host"])
    status = 0
    try:
        report.step("all_reduce", **_all_reduce(dist_env, dist_timeout_s()))
    except Exception as err:  # noqa: BLE001 - what went wrong is the finding
        report.step(
            "all_reduce",
            ok=False,
            error=f"{type(err).__name__}: {err}"[:2000],
            traceback=traceback.format_exc(limit=3)[-2000:],
        )
        status = 1
    # after the collective every rank has written its marker: each must be visible from here (a little
    # patience for network file systems that cache directory entries, or for a collective that failed)
    deadline = time.monotonic() + SHARED_DIR_WAIT_S
    while True:
        missing = [r for r in range(dist_env.world_size) if not (args.probe / f"marker-{r}").exists()]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    report.step("shared_dir", ok=not missing, missing_ranks=missing)
    unreadable = {path: why for path in args.path if (why := readable(path)) is not None}
    report.step("paths", ok=not unreadable, checked=args.path, unreadable=unreadable)
    report.step("finished", ok=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
