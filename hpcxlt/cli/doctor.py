"""`hpcxlt doctor --site SITE.yaml`: a preflight job that checks a site before a sweep burns GPU-hours."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "doctor",
        help="submit one small job shaped like a training job and check every node it lands on",
        description="Submit one preflight job with a training stage's resources from SITE (nodes, tasks, GPUs, "
        "partition, account, setup lines, network settings) and report per node: srun reaches it; a "
        "torch.distributed all-reduce across all nodes completes within the timeout (NCCL on GPU nodes, gloo "
        "otherwise); the run folder is writable and shared; the nodes run the login node's Python and package "
        "versions; with --config, the config's model and data folders are readable. Each failure comes with a "
        "fix. Exit status 0 only when every check passes.",
    )
    parser.add_argument("--site", required=True, metavar="SITE.yaml", help="site profile (slurm/sites/*.yaml)")
    parser.add_argument("--nodes", type=int, metavar="N", help="nodes to check (default: the stage's nodes)")
    parser.add_argument(
        "--stage",
        default="intermediate",
        choices=("intermediate", "target"),
        help="training stage whose resources the job copies (default: intermediate)",
    )
    parser.add_argument(
        "--dir",
        default="runs",
        metavar="DIR",
        help="the folder runs will live in: must be writable and shared by all nodes (default: runs)",
    )
    parser.add_argument(
        "--config", metavar="CONFIG", help="experiment config whose model and data folders every node must read"
    )
    parser.add_argument(
        "--timeout",
        type=int,
        metavar="S",
        help="seconds for the rendezvous and all-reduce (default: the site's dist_timeout_s, at most 120)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=600,
        metavar="S",
        help="seconds to wait for the job to start before giving up (default: 600)",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    parser.set_defaults(func=run)


def _config_paths(path: str) -> list[str]:
    """Local folders a config's jobs read: the model (when it is a folder, not a hub id) and local data."""

    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.config import load_config

    cfg = load_config(path)
    paths = []
    model = cfg.model.name_or_path
    if Path(model).expanduser().is_absolute() or model.startswith((".", "~")) or Path(model).exists():
        paths.append(str(Path(model).expanduser().absolute()))
    for folder in (cfg.data.root if cfg.data.source == "local" else None, cfg.data.hub_mirror):
        if folder:
            paths.append(str(Path(folder).expanduser().absolute()))
    return paths


def run(args: argparse.Namespace) -> int:

    # deferred: the parser imports every command module; this command's code loads when it runs
    from tabulate import tabulate  # deferred: third-party, and off plan's path (the parser imports every command)

    from hpcxlt.launch.site.doctor import diagnose
    from hpcxlt.launch.site.profile import load_site
    from hpcxlt.launch.slurm.queue import QueueError

    site = load_site(args.site)
    if args.nodes is not None and args.nodes < 1:
        raise UserError(f"--nodes: must be >= 1, got {args.nodes}")
    if args.timeout is not None and args.timeout < 1:
        raise UserError(f"--timeout: must be >= 1 second, got {args.timeout}")
    # heavy: submitit (via hpcxlt.launch.slurm.shared_array)
    from hpcxlt.launch.slurm.submission import SubmitError, check_batch_path

    try:
        check_batch_path(args.dir, "--dir folder")
    except SubmitError as err:
        raise UserError(str(err)) from None
    paths = _config_paths(args.config) if args.config else []
    shown: list[str] = []

    def on_state(state: str) -> None:
        if not args.json and (not shown or shown[-1] != state):
            shown.append(state)
            print(f"hpcxlt doctor: preflight job {state.lower()}", file=sys.stderr, flush=True)

    try:
        found = diagnose(
            site,
            stage=args.stage,
            nodes=args.nodes,
            base_dir=Path(args.dir),
            paths=paths,
            timeout_s=args.timeout,
            wait_s=args.wait,
            on_state=on_state,
        )
    except QueueError as err:
        raise UserError(str(err)) from None
    if args.json:
        print(json.dumps(found.to_dict(), indent=2, sort_keys=True))
        return 0 if found.ok else 1
    mark = {True: "ok", False: "FAIL", None: "-"}
    rows = [[c.check, c.node, mark[c.ok], c.detail.replace("\n", " ")[:160]] for c in found.checks]
    print(
        f"site {found.site}, stage {found.stage}: {found.nodes} node(s) x {found.tasks_per_node} task(s)"
        + (f", job {found.job_id}" if found.job_id else "")
    )
    print(tabulate(rows, headers=["check", "node", "result", "detail"]))
    failures = [c for c in found.checks if c.ok is False]
    if failures:
        print()
        for c in failures:
            print(f"fix ({c.check}, {c.node}): {c.fix}")
        if found.log:
            print(f"job log: {found.log}")
        print(f"\n{len(failures)} check(s) failed")
        return 1
    print("\nevery check passed")
    return 0
