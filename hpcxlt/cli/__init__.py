"""The `hpcxlt` command line: one small module per subcommand.

Each module `hpcxlt.cli.<name>` defines `add_parser(subparsers)` and `run(args) -> int`, and imports
heavy libraries only inside `run`, so `hpcxlt plan` stays fast on a login node.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from hpcxlt import version
from hpcxlt.config.errors import ConfigError
from hpcxlt.store import RunDirError

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
    "redo": "redo",
    "cancel": "cancel",
    "doctor": "doctor",
    "report": "report",
    "runs": "runs",
    "compare": "runs",
    "init-site": "init_site",
    "init-config": "init_config",
    "completion": "completion",
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

    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in dict.fromkeys(COMMANDS.values()):  # a module may add several commands (runs, compare)
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


def _writing_refused(err: OSError) -> bool:
    """A file could not be written or created for a reason the user can mend (no traceback for these)."""

    return err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def _refused_write(args: argparse.Namespace, err: OSError) -> str:
    """One line: which file, why, and what to do. Every write of hpcxlt is atomic (a temporary file renamed
    into place), so a refused write leaves what was there as it was."""

    where = err.filename or "a file"
    why = {
        errno.EROFS: "the file system is read-only",
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
    }.get(err.errno or 0, "permission denied")
    hint = {"aggregate": "; `--out DIR` writes the tables to a folder you can write"}.get(args.command, "")
    if args.command in ("submit", "resume") and err.errno in (errno.EACCES, errno.EPERM):
        hint = "; choose a --run-dir you can write (and its parent folder), or ask its owner for group write access"
    return f"{where}: {why}; nothing was changed{hint}"


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)

    try:
        return int(args.func(args) or 0)
    except (ConfigError, UserError, RunDirError) as err:
        print(f"hpcxlt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if not _writing_refused(err):
            raise
        print(f"hpcxlt {args.command}: error: {_refused_write(args, err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `hpcxlt plan ... | head` closed our stdout: not an error worth a traceback
        sys.stderr.close()
        return 0
