"""`hpcxlt aggregate RUN_DIR`: gather the result records (under mpiexec/srun: in parallel) into tables and plots."""

from __future__ import annotations

import argparse
import json
import sys

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "aggregate",
        help="tables (mean ± std over seeds, deltas vs 'none', XTREME-R, low vs high resource) and plots of a run",
        description="Read every results/<key>.<split>.json (and results/*.jsonl shard) of RUN_DIR and write tables "
        "(markdown, CSV, LaTeX, JSON) and PNG plots to RUN_DIR/tables. Under `mpiexec -n N` or `srun` the record "
        "files are split across the ranks and gathered on rank 0; the result is the same as with one process. "
        "Missing cells and bad records are listed, never averaged over silently.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (holds config.yaml, plan.json, results/)")
    parser.add_argument("--json", action="store_true", help="print the tables as one JSON object")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="compute figures from the cells present (marked partial) instead of leaving them empty",
    )
    parser.add_argument("--split", default="test", choices=("dev", "test"), help="split to tabulate (default: test)")
    parser.add_argument(
        "--plot-arm",
        action="append",
        dest="plot_arms",
        metavar="ARM",
        help="arm to plot per-language deltas for (repeatable; default: every arm except 'none')",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--out", metavar="DIR", help="folder for the files (default: RUN_DIR/tables)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # heavy: numpy (via hpcxlt.aggregate.tables)
    from hpcxlt.aggregate.aggregate_run import AggregateError, Options, aggregate
    from hpcxlt.aggregate.render import LEGEND, terminal, terminal_gaps  # heavy: numpy (via hpcxlt.aggregate.tables)

    options = Options(
        split=args.split,
        partial=args.partial,
        out=args.out,
        plot_arms=tuple(args.plot_arms) if args.plot_arms else None,
        plots=not args.no_plots,
    )
    try:
        report = aggregate(args.run_dir, options)
    except AggregateError as err:
        raise UserError(str(err)) from None
    if report is None:  # an MPI rank other than 0: rank 0 prints
        return 0
    for note in report.notes:
        print(f"hpcxlt aggregate: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.data, indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    data = report.data
    counts = data["records"]
    ranks = report.gathered.ranks
    how = f"{ranks} MPI ranks: {ranks - 1} reading, rank 0 loading the plan" if ranks > 1 else "1 rank"
    print(
        f"{data['experiment']}: {counts['valid']} records from {counts['files']} files ({how}), "
        f"split {data['split']}" + (", --partial" if data["partial_mode"] else "")
    )
    print(LEGEND)
    for note in data["notes"]:
        print(f"note: {note}")
    for table in report.tables:
        print()
        print(terminal(table))
    gaps = terminal_gaps(data)
    if gaps:
        print()
        print(gaps)
    print()
    print("files:")
    for path in report.files:
        print(f"  {path}")
    return 0
