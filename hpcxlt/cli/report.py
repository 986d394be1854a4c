"""`hpcxlt report RUN [--out FILE]`: one self-contained HTML page with the answer and its provenance."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="write one self-contained HTML page: the question, the answer, tables, plots, provenance",
        description="Write RUN/report.html (or --out FILE) from what `hpcxlt aggregate RUN` wrote: the question and "
        "design, the tested comparisons (zero-shot rows first), every table and plot (inline), per-language detail "
        "folded, what is missing, and provenance (hpcxlt's commit, package versions, config and site, dates, hours).",
    )
    parser.add_argument("run_dir", metavar="RUN", help="run directory (aggregated)")
    parser.add_argument("--out", metavar="FILE", help="where to write the page (default: RUN/report.html)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.launch.manage.html_report import ReportError, write_report
    from hpcxlt.store import RunStore

    store = RunStore(args.run_dir)
    out = Path(args.out) if args.out else store.report_path
    try:
        path = write_report(store, out)
    except ReportError as err:
        raise UserError(str(err)) from None
    print(f"wrote {path}")
    return 0
