"""XLM-R Large's architecture with random weights, for running the real model size through the code on a
machine without the hub: the published configuration, any number of its layers, the tiny tokenizer beside it.

    build_random_xlmr(out, tokenizer_from="artifacts/tiny", layers=24)

Every size-dependent path (loading, ZeRO partitioning, checkpoints, the export) sees the same tensors as
with the real weights; only the values differ, which neither memory nor speed depends on. The vocabulary
stays XLM-R's 250,002 rows even though the tiny tokenizer uses only its first few thousand ids: the
embedding matrix is 46% of the model and what ZeRO must partition.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hpcxlt.io import publish_dir, write_json_atomic

XLMR_LARGE: dict[str, Any] = {
    "vocab_size": 250002,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
}
"""XLM-R Large's published configuration (huggingface.co/FacebookAI/xlm-roberta-large, config.json;
Conneau et al. 2020, Table 7: L=24, H=1024, A=16, V=250k, 550M parameters)."""
MARKER = "hpcxlt_random_xlmr.json"
"""Written last into a built folder: its presence means the folder is complete."""


def build_random_xlmr(
    out: str | os.PathLike, *, tokenizer_from: str | os.PathLike, layers: int = 24, seed: int = 0
) -> Path:
    """Save XLM-R Large's architecture (the first `layers` layers), randomly initialised, with the tokenizer
    of `tokenizer_from`, as a Hugging Face folder at `out` (atomically; a complete `out` is kept)."""
    out = Path(out)
    if (out / MARKER).is_file():
        return out
    if not 1 <= layers <= 24:
        raise ValueError(f"layers must be 1..24 (XLM-R Large has 24), got {layers}")
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    config = XLMRobertaConfig(
        **{**XLMR_LARGE, "num_hidden_layers": layers},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = XLMRobertaForMaskedLM(config)

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / MARKER, {"layers": layers, "seed": seed, "tokenizer_from": str(tokenizer_from)})

    return publish_dir(out, fill)
