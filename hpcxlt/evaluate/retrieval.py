"""Zero-shot retrieval with one encoder for both sides: Tatoeba, LAReQA and Mewsli-X.

Queries and candidates are embedded by the same encoder (a dual encoder with shared weights) as the
masked mean of one hidden layer's states (`hpcxlt.model.heads.embed`), L2-normalised, and ranked by
cosine similarity. Which candidates a query searches follows `hpcxlt.data.schemas.RETRIEVAL_POOLS`:

- tatoeba: the English sentences of the same language file; the prediction is the index of the
  nearest one and the metric accuracy (XTREME's `run_retrieval.py`: cosine nearest neighbour);
- lareqa: every sentence of every language's paragraphs pooled (LAReQA's "language-agnostic"
  setting: the answer sentence in all 11 languages is relevant), mAP@20;
- mewslix: the shared candidate-entity pool, mAP@20 (the gold entity is the one relevant item).

The candidate embeddings shared between languages are kept in the caller's `pools` dict, so a job
that evaluates all languages of one model embeds the LAReQA pool or the Mewsli-X entities once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hpcxlt.config.schema import DataConfig
from hpcxlt.data.features import load_candidate_features, load_features
from hpcxlt.data.schemas import RETRIEVAL_POOLS
from hpcxlt.evaluate.inference import InferenceSettings, Prediction, device_of, run_batches
from hpcxlt.evaluate.metrics import MAP_K
from hpcxlt.tasks.spec import TaskSpec

MAX_SCORE_ELEMENTS = 1 << 25
"""Similarity scores held at once while ranking (32 Mi floats = 128 MiB, plus the sort's indices)."""


@dataclass(frozen=True, kw_only=True)
class Items:
    """Embedded queries or candidates: ids, relevance keys and unit vectors, row-aligned."""

    ids: tuple[str, ...]
    """Item ids (query ids as submitted, candidate ids as ranked)."""
    keys: tuple[tuple[str, ...], ...]
    """A candidate is relevant to a query when their keys intersect."""
    vectors: torch.Tensor
    """(n, dim) float32 L2-normalised embeddings on the host."""

    def __len__(self) -> int:
        return len(self.ids)


def encode(
    model,
    features,
    *,
    layer: int,
    batch_size: int,
    pad_token_id: int,
    sort_by_length: bool = True,
    inference_mode: bool = True,
) -> torch.Tensor:
    """L2-normalised mean-pooled embeddings from hidden layer `layer` of every feature row, in input order."""
    from hpcxlt.model.heads import embed  # heavy: transformers

    def forward(model, batch):
        vectors = torch.nn.functional.normalize(embed(model, batch, layer).float(), dim=-1)
        return list(vectors.cpu())

    rows = run_batches(
        model,
        features,
        forward,
        batch_size=batch_size,
        pad_token_id=pad_token_id,
        sort_by_length=sort_by_length,
        inference_mode=inference_mode,
    )
    if not rows:
        return torch.empty(0, model.config.hidden_size)
    return torch.stack(rows)


def top_k(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    *,
    device: torch.device | str | None = None,
    max_elements: int = MAX_SCORE_ELEMENTS,
) -> list[list[int]]:
    """Indices of the k candidates with the highest dot product per query (cosine for unit vectors),
    best first. Equal scores keep candidate order, as `metrics.rank_candidates` does, so rankings
    are deterministic. Queries are scored in chunks of at most `max_elements` scores."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if queries.ndim != 2 or candidates.ndim != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"top_k: queries {tuple(queries.shape)} and candidates {tuple(candidates.shape)} do not match")
    if len(candidates) == 0:
        raise ValueError("top_k: no candidates to rank")
    device = torch.device(device) if device is not None else candidates.device
    cands = candidates.to(device)
    k = min(k, len(cands))
    chunk = max(1, max_elements // len(cands))
    ranked: list[list[int]] = []
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk].to(device) @ cands.T
        if torch.isnan(scores).any():
            raise ValueError("top_k: similarity scores contain NaN")
        ranked.extend(_stable_top_k(scores, k).cpu().tolist())
    return ranked


def _stable_top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    # torch.topk is linear in the pool size (a full sort of a million-entity pool per query is not)
    # but orders ties arbitrarily. So: keep everything above each row's k-th score, fill up with the
    # lowest-index items equal to it, and sort those k stably in index order.
    kth = torch.topk(scores, k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    take = above | (tied & (tied.cumsum(dim=1) <= k - above.sum(dim=1, keepdim=True)))
    columns = take.nonzero()[:, 1].view(-1, k)  # row-major: ascending columns within a row
    order = torch.sort(scores.gather(1, columns), dim=1, descending=True, stable=True).indices
    return columns.gather(1, order)


def _items(features, vectors: torch.Tensor, role: int) -> Items:
    roles = features["role"]
    rows = [i for i, r in enumerate(roles) if r == role]
    ids, keys = features["item_id"], features["keys"]
    return Items(
        ids=tuple(str(ids[i]) for i in rows),
        keys=tuple(tuple(str(k) for k in keys[i]) for i in rows),
        vectors=vectors[rows] if rows else vectors[:0],
    )


def _concat(parts: Sequence[Items]) -> Items:
    return Items(
        ids=tuple(i for p in parts for i in p.ids),
        keys=tuple(k for p in parts for k in p.keys),
        vectors=torch.cat([p.vectors for p in parts]),
    )


def language_items(
    spec: TaskSpec,
    lang: str,
    split: str,
    model,
    tokenizer,
    data_cfg: DataConfig,
    settings: InferenceSettings,
    pools: dict,
) -> tuple[Items, Items]:
    """(queries, candidates) of one language split, embedded once per `pools`."""

    key = ("language", spec.name, lang, split, settings.retrieval_layer)
    if key not in pools:
        fs = load_features(spec, lang, split, tokenizer, data_cfg, max_length=settings.max_length, train=False)
        vectors = encode(
            model,
            fs.features,
            layer=settings.retrieval_layer,
            batch_size=settings.batch_size,
            pad_token_id=tokenizer.pad_token_id,
            sort_by_length=settings.sort_by_length,
            inference_mode=settings.inference_mode,
        )
        pools[key] = (_items(fs.features, vectors, 0), _items(fs.features, vectors, 1))
    return pools[key]


def shared_pool(
    spec: TaskSpec, model, tokenizer, data_cfg: DataConfig, settings: InferenceSettings, pools: dict
) -> Items:
    """The task's shared candidate pool (Mewsli-X entities), embedded once per `pools`."""

    key = ("shared", spec.name, settings.retrieval_layer)
    if key not in pools:
        fs = load_candidate_features(spec, tokenizer, data_cfg, max_length=settings.max_length)
        vectors = encode(
            model,
            fs.features,
            layer=settings.retrieval_layer,
            batch_size=settings.batch_size,
            pad_token_id=tokenizer.pad_token_id,
            sort_by_length=settings.sort_by_length,
            inference_mode=settings.inference_mode,
        )
        pools[key] = _items(fs.features, vectors, 1)
    return pools[key]


def pool_languages(spec: TaskSpec, split: str) -> tuple[str, ...]:
    """Languages whose candidates form the LAReQA pool of `split`: every task language with that split."""
    have = spec.data.get(split, {})
    return tuple(lang for lang in spec.languages if lang in have)


def candidates_for(
    spec: TaskSpec,
    lang: str,
    split: str,
    own: Items,
    model,
    tokenizer,
    data_cfg: DataConfig,
    settings: InferenceSettings,
    pools: dict,
) -> Items:
    """The candidates the queries of `lang` search (see the module docstring)."""

    policy = RETRIEVAL_POOLS.get(spec.schema)
    if policy == "language":
        return own
    if policy == "all_languages":
        langs = pool_languages(spec, split) or (lang,)
        parts = [language_items(spec, other, split, model, tokenizer, data_cfg, settings, pools)[1] for other in langs]
        return _concat(parts)
    if policy == "candidates":
        return own if len(own) else shared_pool(spec, model, tokenizer, data_cfg, settings, pools)
    raise ValueError(
        f"task {spec.name!r}: no retrieval pool rule for schema {spec.schema!r}; known: {sorted(RETRIEVAL_POOLS)}"
    )


def predict_retrieval(
    spec: TaskSpec,
    lang: str,
    split: str,
    model,
    tokenizer,
    data_cfg: DataConfig,
    settings: InferenceSettings,
    *,
    pools: dict,
) -> Prediction:
    """Gold and predictions of one language split of a retrieval task (Tatoeba: index of the nearest
    English sentence; LAReQA and Mewsli-X: top-20 candidate ids)."""

    queries, own = language_items(spec, lang, split, model, tokenizer, data_cfg, settings, pools)
    if len(queries) == 0:
        raise ValueError(f"{spec.name}/{lang}/{split}: no queries to evaluate")
    candidates = candidates_for(spec, lang, split, own, model, tokenizer, data_cfg, settings, pools)
    by_key: dict[str, list[int]] = {}
    for index, keys in enumerate(candidates.keys):
        for key in keys:
            by_key.setdefault(key, []).append(index)
    relevant = [sorted({i for key in keys for i in by_key.get(key, ())}) for keys in queries.keys]
    answerable = [q for q, rel in enumerate(relevant) if rel]
    notes: tuple[str, ...] = ()
    if len(answerable) < len(queries):
        if not answerable:
            raise ValueError(f"{spec.name}/{lang}/{split}: no query has a relevant candidate among {len(candidates)}")
        notes = (
            f"{spec.name}/{lang}/{split}: {len(queries) - len(answerable)} of {len(queries)} queries have no "
            "relevant candidate in the pool and are not scored",
        )
    k = 1 if spec.metric == "accuracy" else MAP_K
    labels: list[str] | dict[str, list[str]]
    predictions: list[str] | dict[str, list[str]]
    ranked = top_k(queries.vectors[answerable], candidates.vectors, k, device=device_of(model))
    if spec.metric == "accuracy":
        # Tatoeba's official files hold the index of the English sentence, one line per query.
        labels = [str(relevant[q][0]) for q in answerable]
        predictions = [str(row[0]) for row in ranked]
    else:
        labels = {queries.ids[q]: [candidates.ids[i] for i in relevant[q]] for q in answerable}
        predictions = {queries.ids[q]: [candidates.ids[i] for i in row] for q, row in zip(answerable, ranked)}
    return Prediction(
        task=spec.name,
        lang=lang,
        split=split,
        labels=labels,
        predictions=predictions,
        n_examples=len(answerable),
        notes=notes,
    )
