"""Disk a grid needs: exported models, checkpoints in flight, the feature cache, predictions.

Pure and standard library only; docs/resources.md has the long form. With Ψ parameters:

- **Export** of a training cell (`cells/<key>/model`): fp32 weights, 4Ψ bytes (`save_pretrained` of
  the fp32 model: issue #25 measured 2.1 GB for XLM-R Large's 560M), plus the tokenizer files.
- **A DeepSpeed checkpoint** as written to disk (`engine.save_checkpoint`), summed over the ranks:
  stage 0 writes the module in its working dtype (bΨ, b = 2 in bf16/fp16, 4 in fp32) and the optimizer
  state in one file: Adam's two fp32 moments (8Ψ), plus the FP16_Optimizer's fp32 master (4Ψ) in mixed
  precision. Stages 1 and 2 write the module once (rank 0, bΨ) and every rank its partition of the fp32
  master and moments (12Ψ in all). Stage 3 writes only the fp32 partitions and moments (12Ψ; the module
  files hold no parameters, `stage3_gather_16bit_weights_on_model_save` is off).
- **Checkpoints in flight** per running training cell: `hpcxlt.train.loop` saves, then prunes to the
  newest `keep_last` plus the best one, so during a save `keep_last + 1` (+ 1 for the best when a dev
  metric selects) are on disk. A finished cell deletes its checkpoints after the export.
- **Feature cache**: `datasets` arrow files of unpadded int64 token columns (input_ids, attention_mask;
  tagging adds labels; QA offsets), rows x tokens x 8 bytes per column.
- **Predictions**: official-layout files, bytes per example an argument (the demo's average 29 bytes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

TOKENIZER_BYTES = 32 * 1024**2
"""Allowance for the tokenizer files beside an export (XLM-R's sentencepiece.bpe.model is 5.1 MB, its
tokenizer.json a few times that)."""
FEATURE_COLUMNS_PER_TOKEN = {"classification": 2, "multiple_choice": 2, "tagging": 3, "qa": 4, "retrieval": 2}
"""int64 columns per token in the feature cache: input_ids and attention_mask; tagging labels; QA offsets (2)."""
PREDICTION_BYTES_PER_EXAMPLE = 64
"""Default size of one example's prediction (the demo averages 29 bytes; real tagging/QA lines are longer)."""


def export_bytes(params: int, *, tokenizer_bytes: int = TOKENIZER_BYTES) -> int:
    """One training cell's exported model: 4Ψ fp32 weights + the tokenizer."""
    return 4 * params + tokenizer_bytes


def checkpoint_bytes(params: int, *, zero_stage: int, precision: str) -> int:
    """One DeepSpeed checkpoint on disk, all ranks together (module docstring)."""
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision {precision!r}: choose one of fp32, bf16, fp16 (resolve 'auto' first)")
    working = 4 if precision == "fp32" else 2
    if zero_stage == 0:
        return (working + 8 + (0 if precision == "fp32" else 4)) * params
    if zero_stage in (1, 2):
        return (working + 12) * params
    if zero_stage == 3:
        return 12 * params
    raise ValueError(f"zero_stage must be 0-3, got {zero_stage}")


def checkpoints_in_flight(keep_last: int, *, select_best: bool = True) -> int:
    """Checkpoints one running training cell can hold at once: keep_last + the one being written (+ best)."""
    return keep_last + 1 + (1 if select_best else 0)


def feature_cache_bytes(rows: int, tokens_per_row: float, *, format: str) -> int:
    """The tokenized cache of `rows` features of `tokens_per_row` tokens on average (max_length bounds it;
    multiple choice: all choices of a row together)."""
    return int(rows * tokens_per_row * 8 * FEATURE_COLUMNS_PER_TOKEN[format])


def prediction_bytes(examples: int, *, bytes_per_example: int = PREDICTION_BYTES_PER_EXAMPLE) -> int:
    """Prediction files of `examples` evaluated examples."""
    return examples * bytes_per_example


@dataclass(frozen=True, kw_only=True)
class StageDisk:
    """One training stage's disk figures per cell."""

    stage: str
    cells: int
    """Training cells of the stage (each keeps its export)."""
    running: int
    """Cells training at once (each with its checkpoints in flight)."""
    export_bytes: int
    """Per cell (`export_bytes`)."""
    checkpoint_bytes: int
    """One checkpoint of one cell (`checkpoint_bytes`)."""
    in_flight: int
    """Checkpoints per running cell (`checkpoints_in_flight`)."""


@dataclass(frozen=True, kw_only=True)
class DiskEstimate:
    """Peak bytes on the run's file system."""

    exports: int
    checkpoints: int
    features: int
    predictions: int

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


def grid_disk(stages: Iterable[StageDisk], *, features: int = 0, predictions: int = 0) -> DiskEstimate:
    """The grid at its peak: every stage's exports, its running cells' checkpoints in flight (summed over
    stages: an upper bound where stages overlap), the feature cache and the predictions."""
    stages = list(stages)
    return DiskEstimate(
        exports=sum(s.cells * s.export_bytes for s in stages),
        checkpoints=sum(min(s.running, s.cells) * s.in_flight * s.checkpoint_bytes for s in stages),
        features=features,
        predictions=predictions,
    )
