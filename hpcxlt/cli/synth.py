"""`hpcxlt synth OUT`: write the synthetic XTREME-R + intermediate-task benchmark (offline world)."""

from __future__ import annotations

import argparse
import json

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "synth",
        help="write a synthetic benchmark for every registered task (no hub needed)",
        description="Write OUT/<task>/<lang>/<split>.jsonl for every task of the registry, each row in the schema "
        "of the real data set, over deterministic synthetic languages that share part of their words with "
        "English; OUT/manifest.json is written last. Use it with data.source: local, data.root: OUT.",
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the languages and examples (default 0)")
    parser.add_argument("--train-size", type=int, default=2000, help="rows per training file (default 2000)")
    parser.add_argument("--eval-size", type=int, default=200, help="rows per dev/test file (default 200)")
    parser.add_argument(
        "--task",
        action="append",
        default=None,
        metavar="NAME",
        help="only this task (repeatable; default: every registered task)",
    )
    parser.add_argument("--force", action="store_true", help="rewrite a benchmark made with other settings")
    parser.add_argument("--json", action="store_true", help="print the manifest summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.demo.synth import SynthSettings, write_benchmark
    from hpcxlt.tasks.registry import UnknownTaskError

    settings = SynthSettings(seed=args.seed, train_size=args.train_size, eval_size=args.eval_size)
    try:
        settings.check()
        manifest = write_benchmark(args.out, settings, tasks=tuple(args.task) if args.task else None, force=args.force)
    except (ValueError, UnknownTaskError, FileExistsError) as err:
        raise UserError(str(err)) from None
    files = sum(len(langs) for splits in manifest["files"].values() for langs in splits.values())
    rows = sum(n for splits in manifest["files"].values() for langs in splits.values() for n in langs.values())
    summary = {
        "out": str(args.out),
        "tasks": len(manifest["files"]),
        "files": files,
        "rows": rows,
        "seed": manifest["seed"],
        "train_size": manifest["train_size"],
        "eval_size": manifest["eval_size"],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"synthetic benchmark in {args.out}: {summary['tasks']} tasks, {files} files, {rows} rows "
            f"(seed {summary['seed']}, train {summary['train_size']}, eval {summary['eval_size']})"
        )
    return 0
