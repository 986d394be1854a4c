"""`hpcxlt prepare CONFIG --out DIR`: fetch and validate every split a plan reads, for offline compute nodes."""

from __future__ import annotations

import argparse
import json
import sys

from hpcxlt.cli import UserError, add_override_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "prepare",
        help="fetch, validate and write the data a plan reads, so offline compute nodes never touch the hub",
        description="On a login node: load every (task, language, split) the plan of CONFIG reads from its "
        "source (hub, hub mirror or local files), validate it (columns, labels, QA answer offsets, unique ids, "
        "nothing empty) and write DIR/<task>/<lang>/<split>.parquet plus DIR/manifest.json. Every problem is "
        "listed at once and nothing is written unless all splits pass; splits already in DIR from the same "
        "source are kept. Compute jobs then read DIR with `-o data.source=local -o data.root=DIR`.",
    )
    parser.add_argument("config", help="experiment YAML file")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the prepared data")
    add_override_argument(parser)
    parser.add_argument(
        "--features", action="store_true", help="also tokenize everything with the plan's tokenizer into data.cache_dir"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON summary instead of text")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.data.prepare import plan_needs, prepare
    from hpcxlt.grid.experiment import load_experiment

    cfg = load_experiment(args.config, args.override)
    progress = lambda items: items  # noqa: E731
    if not (args.no_progress or args.json):
        from tqdm import tqdm

        total = len(plan_needs(cfg))
        progress = lambda items: tqdm(items, total=total, desc="prepare", unit="split", file=sys.stderr)  # noqa: E731
    from hpcxlt.data.prepare import HubUnreachableError

    try:
        report = prepare(cfg, args.out, features=args.features, progress=progress)
    except HubUnreachableError as err:
        raise UserError(str(err)) from None
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
        return 0 if report.ok else 1
    if not report.ok:
        print(
            f"hpcxlt prepare: {len(report.failed)} split(s) failed validation; nothing was written to {args.out}:",
            file=sys.stderr,
        )
        for name, problems in report.failed.items():
            print(f"  {name}:", file=sys.stderr)
            for problem in problems:
                print(f"    {problem}", file=sys.stderr)
        return 1
    rows = sum(report.rows.values())
    print(
        f"prepared {len(report.fetched)} split(s), {len(report.unchanged)} unchanged, {rows:,} rows in "
        f"{args.out} ({report.seconds:.1f} s)" + (f"; {report.features} feature sets cached" if args.features else "")
    )
    print(f"compute jobs read it with: -o data.source=local -o data.root={args.out}")
    return 0
