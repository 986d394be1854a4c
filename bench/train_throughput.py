"""Training throughput: our trainer on the exact `train_cell` path vs Hugging Face `Trainer`, timed alike.

    .venv/bin/python bench/train_throughput.py [--steps 40] [--padded-steps 12] [--rounds 3] [--threads 2] [--no-multiproc]

Model: XLM-R shaped, hidden 256, 4 layers, vocab 8k (about 5.4M parameters), sequence classification,
built before either timer starts (the same initial weights for both).
Data: 4,000 NLI pairs of random words (lognormal lengths, median 40 tokens, capped at 256) written as
local XNLI training data (`<root>/xnli/en/train.jsonl`), tokenized once by `hpcxlt.data.features` into
its Arrow feature cache before any timing; both trainers then read that same cached Arrow dataset.
Compared, one process each, batch 32:
  ours         `hpcxlt.train.streams.build_streams` (the function `train_cell` calls: cached features,
               length-grouped stream, dynamic padding) + `Engine` (ZeRO-0 fp32) + `train_loop`
  hf_grouped   Trainer, DataCollatorWithPadding, train_sampling_strategy="group_by_length"
  hf_padded    Trainer, every batch padded to 256
Both timers start at the same point: before the trainer is built. Ours: streams (cache read, lengths,
sampler), DeepSpeed engine, the loop with its resume lookup and final checkpoint. Trainer: its
construction and `train()` (with its own length computation). Every measured run is a fresh process
(no state of another trainer: Trainer would see our process group and wrap the model in DDP); ours makes
its process group and DeepSpeed's JIT-built ops before its timer (a job makes them once per process).
Rounds of ours and the grouped Trainer alternate; the median round is kept. Then ours with 2 processes (torchrun,
ZeRO-2, 16 per process), with the peak resident memory of each process. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VOCAB, HIDDEN, LAYERS, HEADS, FFN = 8000, 256, 4, 4, 1024
N_EXAMPLES, MEDIAN_LEN, MAX_LEN, BATCH = 4000, 40, 256, 32
PAD_ID = 1


WORDS = [f"w{i}" for i in range(5, VOCAB)]


def write_world(root: Path, seed: int = 0) -> Path:
    """Local XNLI training data of random words and a word-level tokenizer for it; returns the tokenizer folder."""
    import numpy as np
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    rng = np.random.default_rng(seed)
    # one pair = <s> premise </s></s> hypothesis </s>: 4 special tokens around the words
    lengths = np.clip(np.round(rng.lognormal(np.log(MEDIAN_LEN), 0.7, N_EXAMPLES)), 8, MAX_LEN).astype(int) - 4
    lines = []
    for n in lengths:
        words = rng.choice(WORDS, size=n).tolist()
        cut = max(1, int(n * 0.7))
        lines.append(
            json.dumps(
                {
                    "premise": " ".join(words[:cut]),
                    "hypothesis": " ".join(words[cut:]) or WORDS[0],
                    "label": int(rng.integers(0, 3)),
                }
            )
        )
    data = root / "data" / "xnli" / "en"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.jsonl").write_text("\n".join(lines) + "\n")
    vocab = {"<s>": 0, "<pad>": PAD_ID, "</s>": 2, "<unk>": 3, "<mask>": 4, **{w: i for i, w in enumerate(WORDS, 5)}}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = WhitespaceSplit()
    core.post_processor = TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_max_length=MAX_LEN,
    )
    tokenizer.save_pretrained(root / "tokenizer")
    return root / "tokenizer"


def experiment(root: Path, *, steps: int, micro_batch: int, stage: int):
    """The one-cell experiment whose target cell both trainers train: data, cache and hyperparameters."""
    from hpcxlt.config import parse_config

    return parse_config(
        {
            "name": "train-throughput",
            "model": {"name_or_path": str(root / "tokenizer")},
            "data": {"source": "local", "root": str(root / "data"), "cache_dir": str(root / "cache")},
            "arms": [{"name": "none"}],
            "targets": {"tasks": ["xnli"], "languages": {"xnli": ["en"]}},
            "seeds": [1],
            "target": {
                "lr": 5e-4,
                "micro_batch_size": micro_batch,
                "grad_accum": 1,
                "max_steps": steps,
                "warmup_ratio": 0.1,
                "zero_stage": stage,
                "save_every": 0,
                "precision": "fp32",
                "max_length": MAX_LEN,
            },
        }
    )


def cached_features(root: Path):
    """The XNLI training features from hpcxlt's feature cache (tokenized on the first call, outside every timer)."""
    from transformers import AutoTokenizer

    from hpcxlt.data.features import load_features
    from hpcxlt.data.featurize import MODEL_INPUTS
    from hpcxlt.tasks.registry import get_task

    cfg = experiment(root, steps=1, micro_batch=BATCH, stage=0)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    fs = load_features(get_task("xnli"), "en", "train", tokenizer, cfg.data, max_length=MAX_LEN, train=True)
    return fs.features.select_columns([c for c in MODEL_INPUTS if c in fs.features.column_names]), tokenizer


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
    return XLMRobertaForSequenceClassification(cfg)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- ours: the train_cell path -------------------------------------------------------------------------


def run_ours(root: Path, *, steps: int, stage: int, workdir: Path) -> dict:
    from transformers import AutoTokenizer

    from hpcxlt.grid.plan import plan
    from hpcxlt.train import dist
    from hpcxlt.train.cell_setup import cell_setup
    from hpcxlt.train.engine import Engine
    from hpcxlt.train.loop import LoopConfig, train_loop
    from hpcxlt.train.sampling import Mixture
    from hpcxlt.train.streams import build_streams, mixture_probabilities

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = experiment(root, steps=steps, micro_batch=BATCH // world, stage=stage)
    cell = plan(cfg).cell("target.none.xnli.s1")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    model = make_model()
    dist.barrier() if world > 1 else None
    start, cpu_start = time.perf_counter(), time.process_time()
    setup = cell_setup(cfg, cell)
    streams, _ = build_streams(cfg, setup, tokenizer, seed=cell.seed, world=world)
    engine = Engine(model, setup.train, total_steps=steps)
    sizes = {s.key: s.size for s in streams}
    mixture = Mixture(
        streams,
        mixture_probabilities(cfg, cell, setup, sizes)[0],
        seed=cell.seed,
        rank=dist.get_rank(),
        world_size=world,
    )
    loop = LoopConfig(
        total_steps=steps,
        checkpoint_dir=workdir / "ckpt",
        log_path=workdir / "log.jsonl",
        save_every=0,
        keep_last=1,
        log_every=max(1, steps // 4),
    )
    result = train_loop(engine, mixture, loop)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    examples = sum(c["examples"] for c in result.counts.values())  # global batches: every rank's examples
    return {
        "samples_per_s": examples / seconds,
        "seconds": seconds,
        "samples_per_cpu_s": examples / cpu,
        "steps": steps,
        "zero_stage": stage,
    }


# -- Hugging Face Trainer ----------------------------------------------------------------------------


def run_trainer(root: Path, *, steps: int, padded: bool, workdir: Path) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    model = make_model()
    start, cpu_start = time.perf_counter(), time.process_time()
    features, tokenizer = cached_features(root)  # a read of the same cached Arrow dataset as ours
    collator = (
        DataCollatorWithPadding(tokenizer, padding="max_length", max_length=MAX_LEN)
        if padded
        else DataCollatorWithPadding(tokenizer)
    )
    args = TrainingArguments(
        output_dir=str(workdir),
        per_device_train_batch_size=BATCH,
        max_steps=steps,
        learning_rate=5e-4,
        warmup_steps=max(1, steps // 10),
        weight_decay=0.01,
        max_grad_norm=1.0,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        seed=0,
        train_sampling_strategy="random" if padded else "group_by_length",
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=collator)
    trainer.train()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "samples_per_s": steps * BATCH / seconds,
        "samples_per_cpu_s": steps * BATCH / cpu,
        "seconds": seconds,
        "steps": steps,
    }


def run_child(kind: str, root: Path, steps: int, threads: int, workdir: Path) -> dict:
    """One measured run in a fresh process (each trainer starts from the same clean state: no process group,
    no warm caches of the other); its result is the child's last line."""
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "PYTHONPATH": str(REPO)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one",
            kind,
            "--root",
            str(root),
            "--steps",
            str(steps),
            "--threads",
            str(threads),
        ],
        env={**env, "BENCH_WORKDIR": str(workdir)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{(out.stdout + out.stderr)[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_run(args: argparse.Namespace) -> int:
    """The child of run_child: imports, model and (ours) the process group happen before the timer starts."""
    import logging

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("hpcxlt").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    root, workdir = Path(args.root), Path(os.environ["BENCH_WORKDIR"])
    if args.one == "ours":
        warm_up(root)
        result = run_ours(root, steps=args.steps, stage=0, workdir=workdir)
    else:
        result = run_trainer(root, steps=args.steps, padded=args.one == "hf_padded", workdir=workdir)
    print(json.dumps(result))
    return 0


def warm_up(root: Path, *, micro_batch: int = BATCH, stage: int = 0) -> None:
    """Once per process, before any timing: the (1-rank) process group and DeepSpeed's JIT-built ops, which a
    job also makes once per process (and, for the ops, once per machine: they are cached on disk)."""
    from hpcxlt.train.engine import Engine

    cfg = experiment(root, steps=1, micro_batch=micro_batch, stage=stage)
    Engine(make_model(), cfg.target, total_steps=1)


def worker(args: argparse.Namespace) -> int:
    """One rank of the 2-process run (started by torchrun from main); the world is prepared in --root."""
    import torch

    from hpcxlt.train import dist

    torch.set_num_threads(1)
    warm_up(Path(args.root), micro_batch=BATCH // 2, stage=2)
    result = run_ours(Path(args.root), steps=args.steps, stage=2, workdir=Path(args.worker))
    rss = dist.all_gather_object(peak_rss_mib())
    cpu = dist.all_gather_object(result["samples_per_cpu_s"])
    if dist.is_main():
        # CPU seconds of both processes together
        per_cpu_s = 1.0 / sum(1.0 / c for c in cpu)
        (Path(args.worker) / "result.json").write_text(
            json.dumps({**result, "samples_per_cpu_s": per_cpu_s, "peak_rss_mib_per_process": rss})
        )
    return 0


# -- 2 processes ---------------------------------------------------------------------------------------


def run_multiproc(root: Path, steps: int) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        cmd = [
            str(Path(sys.executable).parent / "torchrun"),
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            __file__,
            "--worker",
            tmp,
            "--root",
            str(root),
            "--steps",
            str(steps),
        ]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"2-process run failed:\n{(out.stdout + out.stderr)[-3000:]}")
        return json.loads((Path(tmp) / "result.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps for ours and the grouped Trainer")
    parser.add_argument("--padded-steps", type=int, default=12, help="steps for the Trainer padding to 256 (slow)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the one-process runs")
    parser.add_argument(
        "--rounds", type=int, default=1, help="interleaved rounds of ours / grouped Trainer (median kept)"
    )
    parser.add_argument("--no-multiproc", action="store_true", help="skip the 2-process ZeRO-2 run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--one", choices=("ours", "hf_grouped", "hf_padded"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if args.worker:
        return worker(args)
    if args.one:
        return one_run(args)

    import logging

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("hpcxlt").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_world(tmp / "world")
        features, _ = cached_features(tmp / "world")  # tokenized into the feature cache now, outside every timer
        lengths = sorted(len(ids) for ids in features["input_ids"])
        print(
            f"data: {len(lengths)} examples, median length {lengths[len(lengths) // 2]}, max {lengths[-1]}; "
            f"batch {BATCH}; {args.threads} threads",
            flush=True,
        )
        rounds: dict[str, list[dict]] = {"ours": [], "hf_grouped": []}
        for r in range(args.rounds):  # interleaved, so a busy spell of the machine hits both
            rounds["ours"].append(run_child("ours", tmp / "world", args.steps, args.threads, tmp / f"ours{r}"))
            print(
                f"ours           {rounds['ours'][-1]['samples_per_s']:7.1f} samples/s "
                f"{rounds['ours'][-1]['samples_per_cpu_s']:7.1f} per CPU-s",
                flush=True,
            )
            rounds["hf_grouped"].append(
                run_child("hf_grouped", tmp / "world", args.steps, args.threads, tmp / f"hf{r}")
            )
            print(
                f"hf grouped     {rounds['hf_grouped'][-1]['samples_per_s']:7.1f} samples/s "
                f"{rounds['hf_grouped'][-1]['samples_per_cpu_s']:7.1f} per CPU-s",
                flush=True,
            )
        for name, runs in rounds.items():  # the median round
            results[name] = sorted(runs, key=lambda x: x["samples_per_s"])[len(runs) // 2]
        results["hf_padded"] = run_child("hf_padded", tmp / "world", args.padded_steps, args.threads, tmp / "hf_padded")
        print(
            f"hf padded 256  {results['hf_padded']['samples_per_s']:7.1f} samples/s "
            f"{results['hf_padded']['samples_per_cpu_s']:7.1f} per CPU-s",
            flush=True,
        )
        multi = None if args.no_multiproc else run_multiproc(tmp / "world", args.steps)
    summary = {
        "bench": "train_throughput",
        "model": {
            "vocab": VOCAB,
            "hidden": HIDDEN,
            "layers": LAYERS,
            "parameters": sum(p.numel() for p in make_model().parameters()),
        },
        "data": {"examples": N_EXAMPLES, "median_length": MEDIAN_LEN, "max_length": MAX_LEN, "batch": BATCH},
        "threads": args.threads,
        "rounds": args.rounds,
        "ours_samples_per_s": round(results["ours"]["samples_per_s"], 1),
        "hf_grouped_samples_per_s": round(results["hf_grouped"]["samples_per_s"], 1),
        "hf_padded_samples_per_s": round(results["hf_padded"]["samples_per_s"], 1),
        "ratio_ours_vs_hf_grouped": round(results["ours"]["samples_per_s"] / results["hf_grouped"]["samples_per_s"], 2),
        "ratio_ours_vs_hf_padded": round(results["ours"]["samples_per_s"] / results["hf_padded"]["samples_per_s"], 2),
        # samples per CPU-second: insensitive to other processes on a shared machine
        "ours_samples_per_cpu_s": round(results["ours"]["samples_per_cpu_s"], 1),
        "hf_grouped_samples_per_cpu_s": round(results["hf_grouped"]["samples_per_cpu_s"], 1),
        "hf_padded_samples_per_cpu_s": round(results["hf_padded"]["samples_per_cpu_s"], 1),
        "cpu_ratio_ours_vs_hf_grouped": round(
            results["ours"]["samples_per_cpu_s"] / results["hf_grouped"]["samples_per_cpu_s"], 2
        ),
        "cpu_ratio_ours_vs_hf_padded": round(
            results["ours"]["samples_per_cpu_s"] / results["hf_padded"]["samples_per_cpu_s"], 2
        ),
    }
    if multi is not None:
        print(
            f"ours 2 proc Z2 {multi['samples_per_s']:7.1f} samples/s, peak RSS per process "
            f"{', '.join(f'{m:.0f}' for m in multi['peak_rss_mib_per_process'])} MiB",
            flush=True,
        )
        summary.update(
            {
                "ours_2proc_zero2_samples_per_s": round(multi["samples_per_s"], 1),
                "ours_2proc_zero2_samples_per_cpu_s": round(multi["samples_per_cpu_s"], 1),
                "ours_2proc_zero2_peak_rss_mib_per_process": [round(m, 1) for m in multi["peak_rss_mib_per_process"]],
            }
        )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
