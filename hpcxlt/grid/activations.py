"""Activation memory of one training micro-batch of a transformer encoder.

Pure and standard library only; docs/resources.md has the long form.

**Activations** per micro-batch (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", Sec. 4.1: sbh(34 + 5as/h) bytes per layer in 16 bits, no tensor parallelism): with
s tokens, b sequences, hidden h, a heads, FFN f, p bytes per element (2 in bf16/fp16, 4 in fp32) and
1-byte dropout masks, one layer keeps

    attention (5p + 1) sbh + (2p + 1) a s^2 b     QKV input, Q, K, V, output-projection input, dropout
                                                  mask; softmax output, its dropout mask and output
    FFN       (p + 1) sbh + 2p sbf                input, GeLU input and output, dropout mask
    LayerNorm 2p sbh                              two LayerNorm inputs

which is Korthikanti's 34 sbh + 5 a s^2 b for p = 2, f = 4h. The 1-byte masks are CUDA's bool masks;
PyTorch's CPU dropout keeps its mask in the activation dtype (`mask_bytes=p`). Attention kernels that do
not store the s x s scores (SDPA flash / memory-efficient) drop the a s^2 b term (`attention_scores=False`).
Embeddings keep (p + 1) sbh (LayerNorm input, dropout mask); the head keeps its input and fp32 logits (tagging
4sbC, QA 4 x 2sb, Korthikanti's 4sbv convention). With gradient checkpointing only each layer's input
(p sbh per layer, Korthikanti's "2sbhL") plus one layer's full activations during its recomputation are
held. Multiple choice runs b x choices sequences, retrieval b queries + b candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcxlt.grid.resources import FORMATS, QA_OUTPUTS, ModelShape

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
"""Bytes per element of the working parameters, gradients and activations."""


def check_precision(precision: str) -> None:
    if precision not in BYTES:
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(BYTES)} (resolve 'auto' first)")


@dataclass(frozen=True, kw_only=True)
class Activations:
    """Activation bytes of one micro-batch in training (module docstring)."""

    per_layer: float
    """One transformer layer's full activations."""
    layers: float
    """What all layers hold at the peak: L x per_layer, or with checkpointing L layer inputs + one layer."""
    embeddings: float
    """Embedding LayerNorm input and dropout mask."""
    head: float
    """The head's input and fp32 logits."""

    @property
    def total(self) -> float:
        return self.layers + self.embeddings + self.head


def sequences_per_micro_batch(head: str, micro_batch_size: int, *, num_choices: int = 4) -> int:
    """Encoder sequences in one micro-batch: examples x choices (multiple choice), x 2 (retrieval pairs)."""
    if head == "multiple_choice":
        return micro_batch_size * num_choices
    if head == "retrieval":
        return micro_batch_size * 2
    return micro_batch_size


def activation_bytes(
    shape: ModelShape,
    *,
    seq_len: int,
    micro_batch_size: int,
    precision: str,
    head: str = "classification",
    num_labels: int = 2,
    num_choices: int = 4,
    gradient_checkpointing: bool = False,
    attention_scores: bool = True,
    mask_bytes: int = 1,
) -> Activations:
    """Activations of one training micro-batch of `micro_batch_size` examples of `seq_len` tokens
    (padded length: the planner passes max_length, an upper bound under dynamic padding). `mask_bytes`:
    a dropout mask's bytes per element, 1 for CUDA's bool masks; PyTorch's CPU dropout keeps its mask
    in the activation dtype (pass 4 in fp32 on the CPU)."""
    if head not in FORMATS:
        raise ValueError(f"unknown head {head!r}; known: {', '.join(FORMATS)}")
    check_precision(precision)
    p, m = BYTES[precision], mask_bytes
    s, h, f, a = seq_len, shape.hidden_size, shape.intermediate_size, shape.num_heads
    b = sequences_per_micro_batch(head, micro_batch_size, num_choices=num_choices)
    sbh = float(s * b * h)
    scores = (2 * p + m) * a * s * s * b if attention_scores else 0
    attention = (5 * p + m) * sbh + scores
    ffn = (p + m) * sbh + 2 * p * s * b * f
    per_layer = attention + ffn + 2 * p * sbh  # + the two LayerNorm inputs
    if gradient_checkpointing:
        layers = shape.num_layers * p * sbh + per_layer
    else:
        layers = shape.num_layers * per_layer
    if head == "tagging":
        head_bytes = (p + m) * sbh + 4.0 * s * b * num_labels
    elif head == "qa":
        head_bytes = p * sbh + 4.0 * s * b * QA_OUTPUTS
    elif head == "retrieval":
        head_bytes = p * sbh + 4.0 * micro_batch_size * micro_batch_size
    else:  # classification, multiple choice: a few vectors per sequence
        head_bytes = 2.0 * (p + m) * b * h + 4.0 * b * num_labels
    return Activations(per_layer=per_layer, layers=layers, embeddings=(p + m) * sbh, head=head_bytes)
