"""The resource planner's model arithmetic: an encoder's shape and its exact parameter count.

Pure and standard library only (the grid layer: `hpcxlt plan` imports no torch). The rest of the
planner builds on it: `grid/memory.py` (GPU memory per process: ZeRO model states, and which knob makes
a stage fit), `grid/activations.py` (activations per micro-batch), `grid/disk.py` (exports, checkpoints
in flight, feature cache, predictions) and `grid/makespan.py` (the job DAG on G GPUs). docs/resources.md
has the formulas and their sources.

Parameter count of an XLM-R / RoBERTa encoder (Hugging Face's `XLMRobertaModel`), with vocabulary V,
hidden size h, FFN size f, L layers, P positions and T token types:

    embeddings   V h + P h + T h + 2h                   (word, position, token type, LayerNorm)
    each layer   4(h^2 + h) + 2h + (h f + f) + (f h + h) + 2h  =  4h^2 + 2hf + 9h + f
                 (q, k, v, attention output with biases; LayerNorm; FFN in and out; LayerNorm)
    pooler       h^2 + h                                 (only where the model class keeps it)

The head per format, as the Auto classes of transformers build XLM-R (checked in tests/test_resources.py
against `sum(p.numel() for p in model.parameters())` of real models):

    classification   no pooler; dense h^2 + h, out_proj h C + C       (AutoModelForSequenceClassification)
    tagging          no pooler; classifier h C + C                     (AutoModelForTokenClassification)
    qa               no pooler; qa_outputs 2h + 2                      (AutoModelForQuestionAnswering)
    multiple_choice  pooler; classifier h + 1                          (AutoModelForMultipleChoice)
    retrieval        pooler; no head                                   (AutoModel, the bare encoder)

`multitask_parameter_count` counts hpcxlt's own multi-task model (`hpcxlt.model.heads.MultiTaskModel`:
the bare encoder with its pooler, plus one small head per task).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FORMATS = ("classification", "multiple_choice", "tagging", "qa", "retrieval")
"""Task formats, as in `hpcxlt.tasks.spec.TaskSpec.format`."""

QA_OUTPUTS = 2
"""Start and end logits: hpcxlt builds QA models with the config's default num_labels, 2."""


@dataclass(frozen=True, kw_only=True)
class ModelShape:
    """The sizes of an XLM-R / RoBERTa encoder that its parameter count and memory depend on."""

    vocab_size: int
    """Vocabulary size V (XLM-R: 250,002)."""
    hidden_size: int
    """Hidden size h (XLM-R Large: 1024)."""
    num_layers: int
    """Transformer layers L (XLM-R Large: 24)."""
    num_heads: int
    """Attention heads a (XLM-R Large: 16)."""
    intermediate_size: int
    """FFN size f (XLM-R Large: 4096)."""
    max_positions: int
    """Position embeddings P (XLM-R: 514, padding offset included)."""
    type_vocab_size: int = 1
    """Token type embeddings T (XLM-R: 1)."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        """The shape in a Hugging Face config.json (a dict), e.g. `json.load(open(model_dir / "config.json"))`."""
        keys = {
            "vocab_size": "vocab_size",
            "hidden_size": "hidden_size",
            "num_layers": "num_hidden_layers",
            "num_heads": "num_attention_heads",
            "intermediate_size": "intermediate_size",
            "max_positions": "max_position_embeddings",
        }
        missing = [key for key in keys.values() if key not in config]
        if missing:
            raise ValueError(f"config.json lacks {', '.join(missing)}: not an XLM-R/RoBERTa-style encoder config")
        values = {field: int(config[key]) for field, key in keys.items()}
        return cls(**values, type_vocab_size=int(config.get("type_vocab_size", 1)))


XLMR_LARGE = ModelShape(
    vocab_size=250_002,
    hidden_size=1024,
    num_layers=24,
    num_heads=16,
    intermediate_size=4096,
    max_positions=514,
    type_vocab_size=1,
)
"""FacebookAI/xlm-roberta-large's published configuration (Conneau et al. 2020)."""


def _check_format(head: str) -> None:
    if head not in FORMATS:
        raise ValueError(f"unknown head {head!r}; known: {', '.join(FORMATS)}")


def embedding_params(shape: ModelShape) -> int:
    """Word, position and token-type embeddings plus their LayerNorm."""
    h = shape.hidden_size
    return (shape.vocab_size + shape.max_positions + shape.type_vocab_size) * h + 2 * h


def layer_params(shape: ModelShape) -> int:
    """One transformer layer: 4h^2 + 2hf + 9h + f."""
    h, f = shape.hidden_size, shape.intermediate_size
    return 4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h


def pooler_params(shape: ModelShape) -> int:
    """The pooler's dense layer on the first token (h^2 + h)."""
    return shape.hidden_size * (shape.hidden_size + 1)


def head_params(shape: ModelShape, head: str, *, num_labels: int = 2) -> int:
    """The task head of the Hugging Face model for `head` (module docstring), pooler included where it has one."""
    _check_format(head)
    h = shape.hidden_size
    if head == "classification":
        return h * (h + 1) + (h + 1) * num_labels
    if head == "tagging":
        return (h + 1) * num_labels
    if head == "qa":
        return (h + 1) * QA_OUTPUTS
    if head == "multiple_choice":
        return pooler_params(shape) + h + 1
    return pooler_params(shape)  # retrieval: the bare encoder, pooler and all


def parameter_count(shape: ModelShape, *, head: str = "retrieval", num_labels: int = 2) -> int:
    """Exact parameter count of the model hpcxlt builds for a format (`hpcxlt.model.heads.build_model`):
    embeddings + L layers + the head (and pooler, where that model class has one). `num_labels` sizes
    classification and tagging heads; 'retrieval' is the bare encoder (AutoModel)."""
    return (
        embedding_params(shape)
        + shape.num_layers * layer_params(shape)
        + head_params(shape, head, num_labels=num_labels)
    )


def multitask_parameter_count(shape: ModelShape, heads: Iterable[tuple[str, int]]) -> int:
    """Parameters of hpcxlt's multi-task model: the bare encoder (pooler included) plus one head per
    (format, num_labels): classification dense h x h + projection; multiple choice dense h x h + h -> 1;
    tagging h -> C; QA h -> 2; retrieval nothing (`hpcxlt.model.heads.make_head`)."""
    h = shape.hidden_size
    total = parameter_count(shape, head="retrieval")
    for head, num_labels in heads:
        _check_format(head)
        total += {
            "classification": h * (h + 1) + (h + 1) * num_labels,
            "multiple_choice": h * (h + 1) + h + 1,
            "tagging": (h + 1) * num_labels,
            "qa": (h + 1) * QA_OUTPUTS,
            "retrieval": 0,
        }[head]
    return total


def largest_layer_params(shape: ModelShape, *, head: str = "retrieval", num_labels: int = 2) -> int:
    """Parameters of the largest single module (its own parameters, not its children's), as DeepSpeed's
    ZeRO-3 estimator counts them (`stage3.model_to_params`): the word embeddings (V h) for XLM-R,
    else the FFN's first linear (h f + f) or a head's dense layer."""
    h, f = shape.hidden_size, shape.intermediate_size
    candidates = [
        shape.vocab_size * h,
        shape.max_positions * h,
        h * f + max(h, f),  # FFN in (h f + f) or out (f h + h)
        h * (h + 1),  # q, k, v, attention output, pooler, classification dense
    ]
    if head in ("classification", "tagging"):
        candidates.append((h + 1) * num_labels)
    return max(candidates)
