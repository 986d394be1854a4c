"""XLM-R Large training throughput and model FLOPs utilization (MFU) on one GPU, through our engine.

    .venv/bin/python bench/gpu_xlmr_large.py [--seq 128 256 384] [--batch 32 32 16] [--steps 30] [--peak-tflops X]

Builds XLM-R Large from its configuration (24 layers, hidden 1024, 16 heads, vocab 250,002, 560M
parameters; random weights: throughput does not depend on their values and the hub may be out of
reach), classification head, SDPA attention, bf16 (fp16 on GPUs without bf16), ZeRO-2, torch AdamW,
through `hpcxlt.train.engine.Engine` exactly as a training cell uses it. For each sequence length it
times `--steps` optimizer steps after `--warmup` steps on full-length random batches.

MFU = achieved model FLOP/s / peak dense FLOP/s of the GPU. Model FLOPs per token for a training step
(forward + backward) = 6 x non-embedding parameters + 12 x layers x hidden x sequence length (the
attention score and value products; Kaplan et al. 2020 / PaLM appendix B convention; the embedding
lookup costs no FLOPs). Peak: --peak-tflops, or the bf16 dense figure of a known GPU name.

Refuses (exit status 2) on a machine without a GPU. The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, without sparsity).
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "A40": 150.0,
    "A10": 125.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX A6000": 155.0,
    "V100": 125.0,  # V100: fp16 (no bf16)
}


def peak_tflops(name: str) -> float | None:
    """The data-sheet peak for a GPU name as torch reports it (longest matching key wins)."""
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key.lower() in name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None


def flops_per_token(config, seq: int) -> float:
    """Training FLOPs per token: 6 N (non-embedding parameters) + 12 L d s (attention)."""
    d, layers, ffn = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    per_layer = 4 * d * d + 4 * d + 2 * d * ffn + ffn + d + 4 * d  # q, k, v, o (+biases), FFN (+biases), 2 LayerNorms
    non_embedding = layers * per_layer
    return 6 * non_embedding + 12 * layers * d * seq


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # 256: the length of the MFU goal (issue #13); 128 and 384: XTREME's classification and QA lengths
    parser.add_argument("--seq", type=int, nargs="+", default=[128, 256, 384], help="sequence lengths to measure")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 32, 16], help="micro-batch per sequence length")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per length")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (allocator, kernels)")
    parser.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s of this GPU (default: by name)")
    parser.add_argument("--zero-stage", type=int, default=2, choices=(0, 1, 2, 3))
    args = parser.parse_args()
    if len(args.batch) != len(args.seq):
        parser.error(f"--batch needs one value per --seq ({len(args.seq)}), got {len(args.batch)}")

    import torch

    if not torch.cuda.is_available():
        print(
            "bench/gpu_xlmr_large.py needs a CUDA GPU and this machine has none (torch.cuda.is_available() is "
            "False); run it on a GPU node, e.g. `srun --gpus 1 .venv/bin/python bench/gpu_xlmr_large.py`",
            file=sys.stderr,
        )
        return 2

    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from hpcxlt.config import TrainConfig
    from hpcxlt.train.engine import Engine

    gpu = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or peak_tflops(gpu)
    # XLM-R Large's configuration (FacebookAI/xlm-roberta-large config.json)
    config = XLMRobertaConfig(
        vocab_size=250002,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        max_position_embeddings=514,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        num_labels=3,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(config)
    parameters = sum(p.numel() for p in model.parameters())
    total_steps = len(args.seq) * (args.steps + args.warmup)
    results = []
    engine = None
    for seq, batch in zip(args.seq, args.batch):
        train = TrainConfig(
            lr=1e-5,
            micro_batch_size=batch,
            grad_accum=1,
            max_steps=total_steps,
            warmup_ratio=0.0,
            zero_stage=args.zero_stage,
            precision="auto",
            max_length=max(seq, 8),
        )
        if engine is None:  # one engine for all lengths: DeepSpeed does not look at the batch shape of a step
            engine = Engine(model, train, total_steps=total_steps)
        ids = torch.randint(5, config.vocab_size, (batch, seq), device=engine.device)
        ids[:, 0], ids[:, -1] = 0, 2
        data = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "labels": torch.randint(0, 3, (batch,), device=engine.device),
        }
        for _ in range(args.warmup):
            engine.step(data)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        losses = [engine.step(data).loss for _ in range(args.steps)]
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        tokens_per_s = args.steps * batch * seq / seconds
        achieved = tokens_per_s * flops_per_token(config, seq)
        row = {
            "seq": seq,
            "batch": batch,
            "samples_per_s": round(args.steps * batch / seconds, 1),
            "tokens_per_s": round(tokens_per_s),
            "model_tflops": round(achieved / 1e12, 1),
            "mfu": round(achieved / (peak * 1e12), 3) if peak else None,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
            "last_loss": round(float(losses[-1]), 4),
        }
        results.append(row)
        print(
            f"seq {seq:4d} batch {batch:3d}: {row['samples_per_s']:7.1f} samples/s, {row['tokens_per_s']:8d} tokens/s, "
            f"{row['model_tflops']:6.1f} TFLOP/s, MFU {row['mfu']}, peak {row['peak_memory_gib']} GiB",
            flush=True,
        )
    print(
        json.dumps(
            {
                "bench": "gpu_xlmr_large",
                "gpu": gpu,
                "peak_tflops": peak,
                "parameters": parameters,
                "precision": engine.precision,
                "zero_stage": args.zero_stage,
                "steps": args.steps,
                "results": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
