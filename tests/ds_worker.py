"""One real DeepSpeed training run of a tiny XLM-R on random token data, for the multi-process tests.

Run under any launcher (torchrun, mpiexec, srun) or alone:
    python tests/ds_worker.py --out DIR --stage 2 --steps 12 --save-every 3
Writes DIR/run-<stage>/{checkpoints/, train_log.jsonl, final.pt (rank 0: consolidated fp32 weights),
result.json}. Exits with hpcxlt.train.preemption.EXIT_PREEMPTED after a preemption signal.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import sys
from pathlib import Path

import torch

from hpcxlt.config import TrainConfig
from hpcxlt.io import write_json_atomic
from hpcxlt.train import dist
from hpcxlt.train.checkpoint import seed_everything
from hpcxlt.train.engine import Engine, consolidated_state_dict
from hpcxlt.train.loop import LoopConfig, train_loop
from hpcxlt.train.preemption import EXIT_PREEMPTED, Preempted
from hpcxlt.train.sampling import Mixture, Stream

VOCAB = 120
N_EXAMPLES = 96


def tiny_model(seed: int) -> torch.nn.Module:
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(seed)
    cfg = XLMRobertaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        num_labels=2,
        attn_implementation="sdpa",
    )
    return XLMRobertaForSequenceClassification(cfg)


def random_examples(seed: int) -> list[dict]:
    """Sequences of 4-24 tokens; label 0 draws from the lower half of the vocabulary, label 1 from the upper."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    half = VOCAB // 2
    for _ in range(N_EXAMPLES):
        n = int(torch.randint(4, 24, (1,), generator=g))
        label = int(torch.randint(0, 2, (1,), generator=g))
        ids = torch.randint(3 + label * half, half + label * half, (n,), generator=g)
        rows.append({"input_ids": [0, *ids.tolist(), 2], "labels": label})
    return rows


def collate(rows: list[dict]) -> dict:
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), 1, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, row in enumerate(rows):
        ids[j, : len(row["input_ids"])] = torch.tensor(row["input_ids"])
        mask[j, : len(row["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["labels"] for r in rows])}


def full_data_loss(model: torch.nn.Module, data: list[dict], state: dict | None = None) -> float:
    """Mean loss over all examples in eval mode (plain PyTorch, no DeepSpeed)."""
    if state is not None:
        model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        losses = [
            model(**collate(data[i : i + 16])).loss.item() * len(data[i : i + 16]) for i in range(0, len(data), 16)
        ]
    return sum(losses) / len(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stage", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--save-every", type=int, default=3)
    parser.add_argument("--keep-last", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--grad-accum", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--prefetch", type=int, default=2, help="micro-batches prepared ahead (LoopConfig.prefetch)")
    parser.add_argument("--eval-every", type=int, default=0, help="a dev evaluation (the full-data loss) every N steps")
    parser.add_argument(
        "--dev-metrics",
        type=str,
        default="",
        help="comma-separated scripted dev metrics (higher is better), one per evaluation step "
        "(step // eval-every - 1), instead of the full-data loss",
    )
    parser.add_argument("--patience", type=int, default=0, help="LoopConfig.patience")
    parser.add_argument("--min-delta", type=float, default=0.0, help="LoopConfig.min_delta")
    parser.add_argument(
        "--signal-at",
        type=int,
        default=0,
        help="this process sends itself SIGUSR2 while it computes step N (a deterministic preemption)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[rank %(process)d] %(name)s %(levelname)s: %(message)s")
    logging.getLogger("hpcxlt").setLevel(logging.INFO)

    data = random_examples(args.seed)
    scripted = [float(v) for v in args.dev_metrics.split(",")] if args.dev_metrics else []
    for stage in args.stage:
        run = args.out / f"run-{stage}"
        seed_everything(args.seed)
        model = tiny_model(args.seed)
        train = TrainConfig(
            lr=args.lr,
            micro_batch_size=args.micro_batch,
            grad_accum=args.grad_accum,
            max_steps=args.steps,
            warmup_ratio=0.1,
            zero_stage=stage,
            save_every=args.save_every,
            keep_last=args.keep_last,
            max_grad_norm=1.0,
        )
        engine = Engine(model, train, total_steps=args.steps, persistence_threshold=0)
        # different dropout masks per rank, as with real data-parallel training
        seed_everything(args.seed * 1000 + dist.get_rank())
        world = dist.get_world_size()
        global_batch = args.micro_batch * world

        def epoch_batches(epoch: int, global_batch: int = global_batch) -> list[list[int]]:
            order = list(range(len(data)))
            random.Random(args.seed * 100 + epoch).shuffle(order)
            return [order[i : i + global_batch] for i in range(0, len(order), global_batch)]

        stream = Stream(task="cls", lang="en", dataset=data, epoch_batches=epoch_batches, collate=collate)
        mixture = Mixture([stream], {"cls:en": 1.0}, seed=args.seed, rank=dist.get_rank(), world_size=world)
        loop_cfg = LoopConfig(
            total_steps=args.steps,
            checkpoint_dir=run / "checkpoints",
            log_path=run / "train_log.jsonl",
            save_every=args.save_every,
            keep_last=args.keep_last,
            log_every=1,
            eval_every=args.eval_every,
            greater_is_better=bool(scripted),
            prefetch=args.prefetch,
            patience=args.patience,
            min_delta=args.min_delta,
        )

        def signal_hook(task: str, engine=engine) -> dict:
            if args.signal_at and engine.global_step == args.signal_at - 1:
                os.kill(os.getpid(), signal.SIGUSR2)
            return {}

        def evaluate(engine) -> float:
            if scripted:  # a dev curve chosen by the test; the step says which point of it this is
                return scripted[engine.global_step // args.eval_every - 1]
            loss = full_data_loss(engine.module, data)
            engine.module.train()
            return loss

        try:
            result = train_loop(
                engine,
                mixture,
                loop_cfg,
                forward_kwargs=signal_hook if args.signal_at else None,
                evaluate=evaluate if args.eval_every else None,
            )
        except Preempted as stop:
            print(f"rank {dist.get_rank()}: {stop}", flush=True)
            return EXIT_PREEMPTED
        if dist.is_main():
            final = consolidated_state_dict(result.final_checkpoint)
            torch.save(final, run / "final.pt")
            if result.best_checkpoint is not None:
                torch.save(consolidated_state_dict(result.best_checkpoint), run / "best.pt")
            write_json_atomic(
                run / "result.json",
                {
                    "step": result.step,
                    "final_checkpoint": str(result.final_checkpoint),
                    "resumed_from": result.resumed_from,
                    "world_size": world,
                    "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
                    "selection": result.selection,
                    "initial_loss": full_data_loss(tiny_model(args.seed), data),
                    "final_loss": full_data_loss(tiny_model(args.seed), data, final),
                },
            )
        dist.barrier()
    return 0


if __name__ == "__main__":
    sys.exit(main())
