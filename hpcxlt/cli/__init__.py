"""The `hpcxlt` command line: one small module per subcommand.

Each module `hpcxlt.cli.<name>` defines `add_parser(subparsers)` and `run(args) -> int`, and imports
heavy libraries only inside `run`, so `hpcxlt plan` stays fast on a login node.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# subcommand -> module under hpcxlt.cli
COMMANDS = {
    "plan": "plan",
    "prepare": "prepare",
    "synth": "synth",
    "build-tiny": "build_tiny",
    "score": "score",
    "aggregate": "aggregate",
    "submit": "submit",
    "status": "status",
    "resume": "resume",
    "cancel": "cancel",
    "doctor": "doctor",
}


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    """The `-o KEY=VALUE` option of every command that reads an experiment config."""
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted config override, e.g. -o target.lr=2e-5 (repeatable)",
    )


class UserError(Exception):
    """A mistake in the user's input: printed as one clear line, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpcxlt",
        description="Intermediate-task training sweeps on XTREME-R: plan, submit, resume, score, aggregate.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        importlib.import_module(f"hpcxlt.cli.{module_name}").add_parser(sub)
    return parser


def _quiet_libraries() -> None:
    """Keep Hugging Face chatter (per-load reports, per-save progress bars) out of hpcxlt's own output.

    A grid loads and saves hundreds of models; their expected "head newly initialized" reports
    would bury the progress bar and the tables. Explicit user settings win (setdefault).
    """
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    from hpcxlt.config.errors import ConfigError
    from hpcxlt.store import RunDirError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, UserError, RunDirError) as err:
        print(f"hpcxlt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `hpcxlt plan ... | head` closed our stdout: not an error worth a traceback
        sys.stderr.close()
        return 0
