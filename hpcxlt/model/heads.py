"""Models per format: Hugging Face heads for single-task training, a shared encoder with one head per
task for multi-task intermediate training, mean-pooled sentence embeddings for retrieval, and the
hand-over of an intermediate encoder to a fresh target model (Phang et al. 2020's second step).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from transformers.utils import ModelOutput

if TYPE_CHECKING:
    from transformers import PreTrainedModel

AUTO_CLASSES = {
    "classification": "AutoModelForSequenceClassification",
    "multiple_choice": "AutoModelForMultipleChoice",
    "tagging": "AutoModelForTokenClassification",
    "qa": "AutoModelForQuestionAnswering",
    "retrieval": "AutoModel",
}
HEADS_FILE = "heads.pt"
HEADS_SPEC = "heads.json"


@dataclass
class HeadOutput(ModelOutput):
    """Loss (when labels were given) and logits of one head; QA adds start/end logits."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None


def _check_format(format: str) -> None:
    if format not in AUTO_CLASSES:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(AUTO_CLASSES)}")


def build_model(
    format: str,
    model_name_or_path: str,
    *,
    num_labels: int | None = None,
    label_names: tuple[str, ...] | None = None,
    num_choices: int | None = None,
    revision: str | None = None,
    weights: bool = True,
):
    """The Hugging Face model for a format, its head new: AutoModelFor{SequenceClassification,
    MultipleChoice, TokenClassification, QuestionAnswering}, or the bare encoder (AutoModel) for
    retrieval. `label_names` (or `num_labels`) sizes classification and tagging heads; multiple
    choice takes any number of choices per batch (`num_choices` is only checked). `weights=False`
    gives the architecture alone on the meta device, for a caller that assigns every weight itself."""
    import transformers

    _check_format(format)
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    if format in ("classification", "tagging"):
        if label_names:
            if num_labels is not None and num_labels != len(label_names):
                raise ValueError(f"num_labels={num_labels} but {len(label_names)} label_names")
            kwargs.update(
                num_labels=len(label_names),
                id2label=dict(enumerate(label_names)),
                label2id={name: i for i, name in enumerate(label_names)},
            )
        elif num_labels:
            kwargs["num_labels"] = num_labels
        else:
            raise ValueError(f"a {format} model needs num_labels or label_names")
    if format == "multiple_choice" and num_choices is not None and num_choices < 2:
        raise ValueError(f"num_choices must be >= 2, got {num_choices}")
    auto = getattr(transformers, AUTO_CLASSES[format])
    if weights:
        return auto.from_pretrained(model_name_or_path, **kwargs)
    config = transformers.AutoConfig.from_pretrained(model_name_or_path, **kwargs)
    with torch.device("meta"):  # nothing read, nothing allocated: the caller assigns the weights
        return auto.from_config(config)


def encoder_of(model) -> nn.Module:
    """The transformer encoder inside a Hugging Face model (itself for a bare encoder)."""
    return getattr(model, "base_model", model)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states of real (unmasked) tokens: (batch, len, dim) -> (batch, dim)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def embed(model, batch: Mapping[str, torch.Tensor], layer: int = -1, *, prefix: str = "") -> torch.Tensor:
    """Masked-mean sentence embeddings from hidden layer `layer` (0 = embeddings, -1 = last; XTREME
    retrieves with layer 14 of XLM-R Large's 24). `prefix` picks 'query_' / 'cand_' columns."""
    input_ids, mask = batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"]
    encoder = encoder_of(model)
    out = encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
    hidden_states = out.hidden_states
    if not -len(hidden_states) <= layer < len(hidden_states):
        raise ValueError(f"layer {layer} does not exist: the model has hidden states 0..{len(hidden_states) - 1}")
    return mean_pool(hidden_states[layer], mask)


def dual_encoder_loss(model, batch: Mapping[str, torch.Tensor], *, layer: int = -1, scale: float = 20.0):
    """In-batch-negative softmax loss of query/candidate pairs (row i's candidate is query i's
    positive, every other row's a negative), on cosine similarities times `scale`.
    Returns (loss, similarity logits [batch, batch])."""
    queries = nn.functional.normalize(embed(model, batch, layer, prefix="query_"), dim=-1)
    cands = nn.functional.normalize(embed(model, batch, layer, prefix="cand_"), dim=-1)
    logits = scale * queries @ cands.T
    target = torch.arange(logits.size(0), device=logits.device)
    return nn.functional.cross_entropy(logits, target), logits


# --------------------------------------------------------------------------------------------------
# Multi-task: one encoder, one head per task
# --------------------------------------------------------------------------------------------------
class _Head(nn.Module):
    format: str = ""

    def spec(self) -> dict:
        raise NotImplementedError


class ClassificationHead(_Head):
    """Sentence(-pair) classification on the <s> token (dense, tanh, dropout, projection), like XLM-R's."""

    format = "classification"

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.hidden_size, self.num_labels, self.dropout_p = hidden_size, num_labels, dropout
        self.dense, self.dropout = nn.Linear(hidden_size, hidden_size), nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)

    def spec(self) -> dict:
        return {
            "format": self.format,
            "hidden_size": self.hidden_size,
            "num_labels": self.num_labels,
            "dropout": self.dropout_p,
        }

    def forward(self, encoder, input_ids, attention_mask, labels=None, **_):
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]
        logits = self.out(self.dropout(torch.tanh(self.dense(self.dropout(hidden)))))
        loss = nn.functional.cross_entropy(logits, labels, ignore_index=-100) if labels is not None else None
        return HeadOutput(loss=loss, logits=logits)


class MultipleChoiceHead(_Head):
    """Scores each (context, choice) pair from its <s> token; softmax over the choices."""

    format = "multiple_choice"

    def __init__(self, hidden_size: int, dropout: float = 0.1):
        super().__init__()
        self.hidden_size, self.dropout_p = hidden_size, dropout
        self.dense, self.dropout, self.out = (
            nn.Linear(hidden_size, hidden_size),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, 1),
        )

    def spec(self) -> dict:
        return {"format": self.format, "hidden_size": self.hidden_size, "dropout": self.dropout_p}

    def forward(self, encoder, input_ids, attention_mask, labels=None, **_):
        batch, choices, length = input_ids.shape
        hidden = encoder(
            input_ids=input_ids.reshape(-1, length), attention_mask=attention_mask.reshape(-1, length)
        ).last_hidden_state[:, 0]
        logits = self.out(self.dropout(torch.tanh(self.dense(hidden)))).reshape(batch, choices)
        loss = nn.functional.cross_entropy(logits, labels, ignore_index=-100) if labels is not None else None
        return HeadOutput(loss=loss, logits=logits)


class TaggingHead(_Head):
    """A tag per token (trained on each word's first sub-word; -100 elsewhere)."""

    format = "tagging"

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.hidden_size, self.num_labels, self.dropout_p = hidden_size, num_labels, dropout
        self.dropout, self.out = nn.Dropout(dropout), nn.Linear(hidden_size, num_labels)

    def spec(self) -> dict:
        return {
            "format": self.format,
            "hidden_size": self.hidden_size,
            "num_labels": self.num_labels,
            "dropout": self.dropout_p,
        }

    def forward(self, encoder, input_ids, attention_mask, labels=None, **_):
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = self.out(self.dropout(hidden))
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100
            )
        return HeadOutput(loss=loss, logits=logits)


class QAHead(_Head):
    """Start and end logits per token for extractive QA."""

    format = "qa"

    def __init__(self, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.out = nn.Linear(hidden_size, 2)

    def spec(self) -> dict:
        return {"format": self.format, "hidden_size": self.hidden_size}

    def forward(self, encoder, input_ids, attention_mask, start_positions=None, end_positions=None, **_):
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        start_logits, end_logits = self.out(hidden).unbind(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            length = start_logits.size(1)
            loss = (
                nn.functional.cross_entropy(start_logits, start_positions.clamp(0, length - 1))
                + nn.functional.cross_entropy(end_logits, end_positions.clamp(0, length - 1))
            ) / 2
        return HeadOutput(
            loss=loss,
            logits=torch.stack([start_logits, end_logits], -1),
            start_logits=start_logits,
            end_logits=end_logits,
        )


class RetrievalHead(_Head):
    """No parameters: a dual-encoder loss on mean-pooled embeddings of the shared encoder."""

    format = "retrieval"

    def __init__(self, layer: int = -1, scale: float = 20.0):
        super().__init__()
        self.layer, self.scale = layer, scale

    def spec(self) -> dict:
        return {"format": self.format, "layer": self.layer, "scale": self.scale}

    def forward(self, encoder, **batch):
        loss, logits = dual_encoder_loss(encoder, batch, layer=self.layer, scale=self.scale)
        return HeadOutput(loss=loss, logits=logits)


_HEAD_CLASSES: dict[str, type[_Head]] = {
    cls.format: cls for cls in (ClassificationHead, MultipleChoiceHead, TaggingHead, QAHead, RetrievalHead)
}


def make_head(format: str, hidden_size: int, *, num_labels: int | None = None, dropout: float = 0.1) -> nn.Module:
    """A fresh head for a format (num_labels for classification and tagging)."""
    _check_format(format)
    if format in ("classification", "tagging"):
        if not num_labels:
            raise ValueError(f"a {format} head needs num_labels")
        return _HEAD_CLASSES[format](hidden_size, num_labels, dropout)
    if format == "multiple_choice":
        return MultipleChoiceHead(hidden_size, dropout)
    if format == "qa":
        return QAHead(hidden_size)
    return RetrievalHead()


def _head_from_spec(spec: dict) -> nn.Module:
    spec = dict(spec)
    return _HEAD_CLASSES[spec.pop("format")](**spec)


class MultiTaskModel(nn.Module):
    """One shared encoder and one head per task; forward(task=..., **batch) -> HeadOutput."""

    def __init__(self, encoder: nn.Module, heads: Mapping[str, nn.Module]):
        super().__init__()
        if not heads:
            raise ValueError("a MultiTaskModel needs at least one head")
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))

    @classmethod
    def from_tasks(
        cls,
        model_name_or_path: str,
        tasks: Mapping[str, tuple[str, int | None]],
        *,
        revision: str | None = None,
        weights: bool = True,
    ) -> MultiTaskModel:
        """Encoder from a pretrained model + a new head per task: tasks = {name: (format, num_labels)}.
        `weights=False`: the architecture alone on the meta device (the caller assigns every weight)."""
        from transformers import AutoConfig, AutoModel

        kwargs = {"revision": revision} if revision else {}
        if weights:
            encoder = AutoModel.from_pretrained(model_name_or_path, **kwargs)
            hidden = encoder.config.hidden_size
            return cls(encoder, {name: make_head(fmt, hidden, num_labels=n) for name, (fmt, n) in tasks.items()})
        config = AutoConfig.from_pretrained(model_name_or_path, **kwargs)
        with torch.device("meta"):
            encoder = AutoModel.from_config(config)
            heads = {name: make_head(fmt, config.hidden_size, num_labels=n) for name, (fmt, n) in tasks.items()}
            return cls(encoder, heads)

    def forward(self, task: str, **batch) -> HeadOutput:
        if task not in self.heads:
            raise KeyError(f"no head for task {task!r}; heads: {', '.join(self.heads)}")
        return self.heads[task](self.encoder, **batch)

    def save_pretrained(self, out: str | os.PathLike) -> None:
        """The encoder as a Hugging Face model folder (loadable by init_from_intermediate and
        AutoModel) plus the heads (heads.pt, heads.json)."""
        from hpcxlt.io import write_json_atomic

        out = Path(out)
        cast("PreTrainedModel", self.encoder).save_pretrained(out)  # a Hugging Face encoder (from_tasks)
        torch.save({name: head.state_dict() for name, head in self.heads.items()}, out / HEADS_FILE)
        write_json_atomic(out / HEADS_SPEC, {name: cast(_Head, head).spec() for name, head in self.heads.items()})

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> MultiTaskModel:
        """A MultiTaskModel saved with save_pretrained."""
        from transformers import AutoModel

        path = Path(path)
        specs = json.loads((path / HEADS_SPEC).read_text())
        states = torch.load(path / HEADS_FILE, map_location="cpu", weights_only=True)
        heads = {}
        for name, spec in specs.items():
            heads[name] = _head_from_spec(spec)
            heads[name].load_state_dict(states[name])
        return cls(AutoModel.from_pretrained(path), heads)


# --------------------------------------------------------------------------------------------------
# Intermediate -> target
# --------------------------------------------------------------------------------------------------
def _read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if (folder / "model.safetensors").is_file():
        return load_file(str(folder / "model.safetensors"))
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(str(folder / shard)))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder}: no model weights (model.safetensors, its sharded index, or pytorch_model.bin)")


def init_from_intermediate(target_model, intermediate_dir: str | os.PathLike) -> list[str]:
    """Copy the encoder weights of an intermediate checkpoint into `target_model` (its head stays new).

    `intermediate_dir` is a Hugging Face model folder: a MultiTaskModel's save_pretrained (bare
    encoder) or any XLM-R model with a head. Returns the target's state-dict keys that were copied;
    raises when the encoder does not match (other size or vocabulary).
    """
    folder = Path(intermediate_dir)
    source = _read_state_dict(folder)
    base = encoder_of(target_model)
    prefix = getattr(target_model, "base_model_prefix", "")
    # Source keys without their model prefix ('roberta.encoder...' -> 'encoder...').
    prefixes = tuple(dict.fromkeys(p for p in (f"{prefix}." if prefix else "", "roberta.") if p))
    stripped = {}
    for key, value in source.items():
        for p in prefixes:
            if key.startswith(p):
                key = key[len(p) :]
                break
        stripped[key] = value
    target_state = base.state_dict()
    copied, mismatched = [], []
    with torch.no_grad():
        for key, tensor in target_state.items():
            if key not in stripped:
                continue
            if stripped[key].shape != tensor.shape:
                mismatched.append(f"{key} {tuple(stripped[key].shape)} vs {tuple(tensor.shape)}")
                continue
            tensor.copy_(stripped[key])
            copied.append(key)
    if mismatched:
        raise ValueError(
            f"{folder}: encoder weights do not fit the target model (another model size or "
            f"tokenizer?): {'; '.join(mismatched[:5])}"
        )
    needed = [k for k in target_state if k.startswith(("embeddings.", "encoder."))]
    missing = [k for k in needed if k not in copied]
    if missing:
        raise ValueError(
            f"{folder}: holds no encoder weights for {len(missing)} of the target's encoder "
            f"tensors (e.g. {missing[:3]}); is it an XLM-R checkpoint?"
        )
    names = {id(t): n for n, t in target_model.state_dict(keep_vars=True).items()}
    base_vars = base.state_dict(keep_vars=True)
    return [names.get(id(base_vars[k]), k) for k in copied]
