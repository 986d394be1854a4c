"""`hpcxlt build-tiny OUT`: a tiny XLM-R (local tokenizer + random weights) for offline runs and tests."""

from __future__ import annotations

import argparse
import json

from hpcxlt.cli import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "build-tiny",
        help="build a tiny XLM-R model + tokenizer for the synthetic languages (no hub needed)",
        description="Train a tokenizer on synthetic text of every language and save it with a randomly initialised "
        "XLMRobertaConfig model into OUT (save_pretrained; load with from_pretrained(OUT)). Deterministic for a "
        "seed; an existing complete OUT is kept as it is.",
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--vocab-size", type=int, default=2000, help="tokenizer vocabulary size (default 2000)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size (default 64)")
    parser.add_argument("--layers", type=int, default=2, help="transformer layers (default 2)")
    parser.add_argument("--heads", type=int, default=2, help="attention heads (default 2)")
    parser.add_argument("--intermediate", type=int, default=128, help="feed-forward size (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus and weights (default 0)")
    parser.add_argument(
        "--language",
        action="append",
        default=None,
        metavar="CODE",
        help="train the tokenizer on this language only (repeatable; default: every known language)",
    )
    parser.add_argument("--json", action="store_true", help="print the model's figures as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # deferred: the parser imports every command module; this command's code loads when it runs
    from hpcxlt.demo.tiny import MARKER, TinySpec, build_tiny, is_built
    from hpcxlt.tasks.languages import UnknownLanguageError, language

    spec = TinySpec(
        vocab_size=args.vocab_size,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        intermediate=args.intermediate,
        seed=args.seed,
    )
    try:
        spec.check()
        for code in args.language or ():
            language(code)
        existed = is_built(args.out)
        out = build_tiny(args.out, spec, languages=tuple(args.language) if args.language else None)
    except (ValueError, UnknownLanguageError, FileExistsError) as err:
        raise UserError(str(err)) from None
    with open(out / MARKER, encoding="utf-8") as handle:
        built = json.load(handle)
    summary = {"out": str(out), "reused": existed, **built}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        state = "kept (already built)" if existed else "built"
        print(
            f"tiny model {state} in {out}: vocab {built['vocab_size']}, hidden {built['hidden']}, "
            f"{built['layers']} layers, {built['heads']} heads, {len(built['languages'])} languages"
        )
    return 0
