"""Featurization throughput: `hpcxlt.data.featurize.featurize` (the path `train_cell` and `hpcxlt prepare
--features` run) against Hugging Face's own recipe for the same job, on an MNLI-sized set.

    .venv/bin/python bench/featurize_throughput.py [--examples 392702] [--rounds 3] [--tokenizer artifacts/tiny]

Data: synthetic premise/hypothesis pairs with MNLI's size (392,702 training pairs, GLUE) and columns
(`premise`, `hypothesis`, `label` as a class index), sentence lengths drawn around MNLI's (premise ~20
words, hypothesis ~10), as the `datasets.Dataset` a local or hub source yields.
Baseline: `examples/pytorch/text-classification/run_glue.py`'s preprocessing, i.e. `Dataset.map(batched=True)`
(batch size 1000) calling the fast tokenizer on the two text columns with `truncation=True, max_length`,
no padding. Ours: `featurize(get_task("mnli"), rows, tokenizer, train=True, max_length=...)`. Same tokenizer
object, same process (one), same max_length; both keep the result in memory and skip the datasets cache.
Both outputs are checked to hold the same token ids, attention masks and labels.
Each round times both back to back, alternating which goes first; the speedup is the median over rounds of
the per-round ratio (ours / baseline, in pairs per second). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MNLI_TRAIN_PAIRS = 392_702
"""GLUE MNLI train split size (Williams et al. 2018; the hub's nyu-mll/glue mnli train)."""


def synthetic_pairs(n: int, seed: int = 0):
    import datasets
    import numpy as np

    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(3000)] + ["the", "a", "is", "was", "and", "not", "of", "to", "in", "man", "woman"]
    vocab = np.array(words)

    def sentences(count: int, mean_words: float) -> list[str]:
        lengths = np.clip(rng.poisson(mean_words, count), 2, 120)
        flat = vocab[rng.integers(0, len(vocab), int(lengths.sum()))]
        out, start = [], 0
        for k in lengths:
            out.append(" ".join(flat[start : start + k]) + ".")
            start += k
        return out

    return datasets.Dataset.from_dict(
        {"premise": sentences(n, 20), "hypothesis": sentences(n, 10), "label": rng.integers(0, 3, n).tolist()}
    )


def baseline(rows, tokenizer, max_length: int):
    """run_glue.py's preprocess_function, as that script maps it (sentence1_key/sentence2_key)."""

    def preprocess_function(examples):
        result = tokenizer(
            examples["premise"], examples["hypothesis"], padding=False, max_length=max_length, truncation=True
        )
        result["label"] = examples["label"]
        return result

    return rows.map(
        preprocess_function,
        batched=True,
        remove_columns=rows.column_names,
        keep_in_memory=True,
        load_from_cache_file=False,
    )


def ours(rows, tokenizer, max_length: int):
    from hpcxlt.data.featurize import featurize
    from hpcxlt.tasks.registry import get_task

    return featurize(get_task("mnli"), rows, tokenizer, train=True, max_length=max_length)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=MNLI_TRAIN_PAIRS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--tokenizer",
        default=str(REPO / "artifacts" / "tiny"),
        help="a fast tokenizer folder (default: the demo's tiny XLM-R tokenizer; `make demo-data`)",
    )
    args = parser.parse_args(argv)
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if not tokenizer.is_fast:
        raise SystemExit(f"{args.tokenizer}: not a fast tokenizer; the recipe being compared uses one")
    rows = synthetic_pairs(args.examples)
    print(
        f"{len(rows):,} pairs, tokenizer {args.tokenizer} ({type(tokenizer).__name__}), max_length {args.max_length}",
        file=sys.stderr,
    )
    sides = {"hpcxlt": ours, "hf_map": baseline}
    rates: dict[str, list[float]] = {name: [] for name in sides}
    ratios = []
    outputs = {}
    for round_ in range(args.rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        seconds = {}
        for name in order:
            start = time.perf_counter()
            outputs[name] = sides[name](rows, tokenizer, args.max_length)
            seconds[name] = time.perf_counter() - start
            rates[name].append(len(rows) / seconds[name])
        ratios.append(rates["hpcxlt"][-1] / rates["hf_map"][-1])
        print(
            f"round {round_ + 1}: hpcxlt {seconds['hpcxlt']:.1f} s, hf_map {seconds['hf_map']:.1f} s, "
            f"ratio {ratios[-1]:.2f}",
            file=sys.stderr,
        )
    same = (
        outputs["hpcxlt"]["input_ids"] == outputs["hf_map"]["input_ids"]
        and outputs["hpcxlt"]["attention_mask"] == outputs["hf_map"]["attention_mask"]
        and outputs["hpcxlt"]["labels"] == outputs["hf_map"]["label"]
    )
    if not same:
        raise SystemExit("the two featurizations differ in token ids, attention masks or labels: not the same job")
    result = {
        "bench": "featurize_throughput",
        "examples": len(rows),
        "rounds": args.rounds,
        "max_length": args.max_length,
        "tokenizer": args.tokenizer,
        "hpcxlt_pairs_per_s": round(statistics.median(rates["hpcxlt"]), 1),
        "hf_map_pairs_per_s": round(statistics.median(rates["hf_map"]), 1),
        "speedup_median": round(statistics.median(ratios), 3),
        "same_token_ids": same,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
