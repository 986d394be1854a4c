"""Dev evaluation inside a multi-rank training job: every rank on every batch (before) vs the ranks
splitting the batches and gathering the outputs (`InferenceSettings.sharded`, what training now does).

    .venv/bin/python bench/dev_eval_sharded.py [--ranks 2] [--examples 2000] [--batch-size 64] [--rounds 3]

Both sides run `hpcxlt.evaluate.predict.run_batches` as a training cell's dev evaluation does (no_grad,
length-sorted batches) in the same real gloo process group of `--ranks` processes, one torch thread
each, same model and data as bench/eval_throughput.py (XLM-R shaped, 5.4M parameters, random tokens of
lognormal lengths). A side's time is the slowest rank's, from a barrier to the end of its evaluation
(the training step after it waits for that rank). Rounds alternate which side goes first; the ratio is
the median of the rounds' ratios. Every rank's outputs are checked equal to the unsharded ones. The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def rank_main(rank: int, world: int, init_file: str, out: str, examples: int, batch_size: int, rounds: int) -> None:
    import torch
    from eval_throughput import PAD_ID, make_features, make_model

    from hpcxlt.evaluate.predict import run_batches

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model, features = make_model(), make_features(examples)

    def argmax(m, batch):
        return m(**batch).logits.argmax(-1).tolist()

    def timed(sharded: bool) -> tuple[float, list]:
        torch.distributed.barrier()
        start = time.perf_counter()
        outputs = run_batches(
            model, features, argmax, batch_size=batch_size, pad_token_id=PAD_ID, inference_mode=False, sharded=sharded
        )
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        torch.distributed.all_reduce(elapsed, op=torch.distributed.ReduceOp.MAX)  # the slowest rank's time
        return float(elapsed), outputs

    seconds: dict[str, list[float]] = {"every_rank": [], "sharded": []}
    equal = True
    for number in range(rounds):
        order = ("every_rank", "sharded") if number % 2 == 0 else ("sharded", "every_rank")
        outputs = {}
        for side in order:
            took, outputs[side] = timed(side == "sharded")
            seconds[side].append(took)
        equal = equal and outputs["sharded"] == outputs["every_rank"]
    torch.distributed.destroy_process_group()
    Path(out, f"rank-{rank}.json").write_text(json.dumps({"seconds": seconds, "equal": equal}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2, help="processes in the group (one torch thread each)")
    parser.add_argument("--examples", type=int, default=2000, help="dev examples")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per forward pass")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each side once per round")
    args = parser.parse_args()

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(
            rank_main,
            args=(args.ranks, str(Path(tmp) / "init"), tmp, args.examples, args.batch_size, args.rounds),
            nprocs=args.ranks,
            join=True,
        )
        ranks = [json.loads(Path(tmp, f"rank-{r}.json").read_text()) for r in range(args.ranks)]
    if not all(r["equal"] for r in ranks):
        print("sharded outputs differ from the unsharded ones", file=sys.stderr)
        return 1
    seconds = ranks[0]["seconds"]  # all ranks hold the same maxima
    ratio = statistics.median(a / b for a, b in zip(seconds["every_rank"], seconds["sharded"]))
    every, sharded = statistics.median(seconds["every_rank"]), statistics.median(seconds["sharded"])
    print(
        f"{args.ranks} ranks, {args.examples} examples, batch {args.batch_size}: every rank on every batch "
        f"{every:.2f} s, batches split {sharded:.2f} s: {ratio:.2f}x (median of {args.rounds} rounds)"
    )
    print(
        json.dumps(
            {
                "bench": "dev_eval_sharded",
                "ranks": args.ranks,
                "examples": args.examples,
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "every_rank_s": round(every, 3),
                "sharded_s": round(sharded, 3),
                "ratio": round(ratio, 2),
                "outputs_equal": True,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
