"""Evaluation throughput: length-sorted batches vs fixed-order batches, both dynamically padded, in one
process, same model, data, batch size and threads.

    .venv/bin/python bench/eval_throughput.py [--examples 2000] [--batch-size 64] [--rounds 3] [--threads 2]

Model: XLM-R shaped, hidden 256, 4 layers, vocab 8k (about 5.4M parameters), sequence classification,
random weights (throughput does not depend on them). Data: random tokens with lognormal lengths
(median 40, capped at 256), as `datasets.Dataset` features like `hpcxlt.data.features` makes.
Both modes run `hpcxlt.evaluate.predict.run_batches` (inference mode, PadCollator) and differ only in
`sort_by_length`. Each round runs both modes back to back (which one first alternates), so load on
the machine hits both alike; the reported speedup is the median over rounds of the round's ratio,
the throughputs are each mode's median. The predictions of both modes are checked to be equal.
The last line is one JSON object.
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

VOCAB, HIDDEN, LAYERS, HEADS, FFN = 8000, 256, 4, 4, 1024
MEDIAN_LEN, MAX_LEN, PAD_ID = 40, 256, 1


def make_features(n: int, seed: int = 0):
    import datasets
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(MEDIAN_LEN), 0.7, n)), 4, MAX_LEN).astype(int)
    ids = [[0, *rng.integers(5, VOCAB, k - 2).tolist(), 2] for k in lengths]
    return datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]})


def make_model(seed: int = 0):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=MAX_LEN + 2,
        pad_token_id=PAD_ID,
        num_labels=3,
        attn_implementation="sdpa",
    )
    return XLMRobertaForSequenceClassification(cfg).eval()


def padded_tokens(lengths: list[int], batch_size: int, sort_by_length: bool) -> int:
    """Tokens the model processes, padding included (each batch padded to its longest input)."""
    from hpcxlt.evaluate.predict import length_batches

    return sum(
        len(b) * max(lengths[i] for i in b) for b in length_batches(lengths, batch_size, sort_by_length=sort_by_length)
    )


def timed(model, features, batch_size: int, sort_by_length: bool) -> tuple[float, list[int]]:
    from hpcxlt.evaluate.predict import run_batches

    def argmax(m, batch):
        return m(**batch).logits.argmax(-1).tolist()

    start = time.perf_counter()
    predictions = run_batches(
        model, features, argmax, batch_size=batch_size, pad_token_id=PAD_ID, sort_by_length=sort_by_length
    )
    return time.perf_counter() - start, predictions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per pass")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    parser.add_argument("--rounds", type=int, default=3, help="passes per mode, alternating")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    import torch
    import transformers

    from hpcxlt.data.featurize import feature_lengths

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    features = make_features(args.examples)
    model = make_model()
    lengths = feature_lengths(features)
    real = sum(lengths)
    print(
        f"data: {len(lengths)} examples, median length {sorted(lengths)[len(lengths) // 2]}, max {max(lengths)}; "
        f"batch {args.batch_size}; {args.threads} threads",
        flush=True,
    )
    timed(model, features.select(range(min(128, len(lengths)))), args.batch_size, True)  # warm-up
    seconds: dict[str, list[float]] = {"sorted": [], "fixed": []}
    predictions = {}
    for round_ in range(args.rounds):
        for mode in ("sorted", "fixed") if round_ % 2 == 0 else ("fixed", "sorted"):
            elapsed, predictions[mode] = timed(model, features, args.batch_size, mode == "sorted")
            seconds[mode].append(elapsed)
            print(f"round {round_ + 1} {mode:6s} {len(lengths) / elapsed:8.1f} examples/s", flush=True)
    if predictions["sorted"] != predictions["fixed"]:
        raise SystemExit("length-sorted and fixed-order predictions differ")
    result = {}
    for mode in ("sorted", "fixed"):
        median = statistics.median(seconds[mode])
        tokens = padded_tokens(lengths, args.batch_size, mode == "sorted")
        result[mode] = {
            "examples_per_s": len(lengths) / median,
            "seconds": median,
            "padded_tokens": tokens,
            "padding_share": 1 - real / tokens,
            "rounds_s": seconds[mode],
        }
    ratios = [f / s for s, f in zip(seconds["sorted"], seconds["fixed"])]
    ratio = statistics.median(ratios)
    print(
        f"length-sorted {result['sorted']['examples_per_s']:.1f} vs fixed order {result['fixed']['examples_per_s']:.1f} "
        f"examples/s; speedup {ratio:.2f}x (median of rounds {', '.join(f'{r:.2f}' for r in ratios)}); padding "
        f"{result['sorted']['padding_share']:.1%} vs {result['fixed']['padding_share']:.1%} of the tokens",
        flush=True,
    )
    summary = {
        "bench": "eval_throughput",
        "model": {
            "vocab": VOCAB,
            "hidden": HIDDEN,
            "layers": LAYERS,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "data": {
            "examples": len(lengths),
            "median_length": sorted(lengths)[len(lengths) // 2],
            "max_length": max(lengths),
            "real_tokens": real,
        },
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.rounds,
        "sorted": result["sorted"],
        "fixed": result["fixed"],
        "speedup": ratio,
        "speedup_per_round": ratios,
        "predictions_equal": True,
        "torch": torch.__version__,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
