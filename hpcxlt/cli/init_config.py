"""`hpcxlt init-config OUT.yaml [--force]`: a commented experiment config template, made from the schema."""

from __future__ import annotations

import argparse
from pathlib import Path

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "init-config",
        help="write a commented experiment config: every key, its default and what it means",
        description="Write every key of an experiment config with its default and its meaning (from the schema "
        "itself), with a small working example for the required keys; `hpcxlt plan OUT.yaml` then shows it.",
    )
    parser.add_argument("out", metavar="OUT.yaml", help="the config to write")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.config.template import template
    from hpcxlt.io import write_text_atomic

    out = Path(args.out)
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; pass --force to replace it")
    write_text_atomic(out, template())
    print(f"wrote {out}; `hpcxlt plan {out}` shows what it runs")
    return 0
