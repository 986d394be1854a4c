"""The metrics of the official XTREME-R scorer, each returning points (0-100).

The definitions (not the code) follow google-research/xtreme:
- `evaluate.py`: accuracy is exact equality of stripped labels; udpos and panx are scored with
  seqeval's entity F1 in its default (conlleval-like) mode, UPOS tags included;
- `third_party/evaluate_squad.py` (SQuAD v1.1 script, used for xquad and tydiqa in every language);
- `third_party/evaluate_mlqa.py` (MLQA script: per-language normalisation, used for mlqa);
- `third_party/utils_mewslix.py` (MRR over the top 20 entities, reported as "MRR/MAP@20", which is
  AP@20 with a single gold entity) and `third_party/utils_lareqa.py` (`average_precision_at_k`, k=20).
Only numpy and seqeval are needed, both imported inside the functions that use them.
"""

from __future__ import annotations

import re
import string
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

MAP_K = 20
"""Cut-off of mAP for mewslix and lareqa in XTREME-R (utils_mewslix.TOP_K, mean_avg_prec_at_k(k=20))."""

MLQA_LANGUAGES = ("en", "es", "de", "ar", "hi", "vi", "zh")
"""Languages the MLQA normaliser knows; the official script raises for any other."""


def _points(fraction: float) -> float:
    return 100.0 * float(fraction)


# --- accuracy (xnli, xcopa, tatoeba) -----------------------------------------------------------


def accuracy(labels: Sequence[object], predictions: Sequence[object]) -> dict[str, float]:
    """Share of positions where prediction == label, in points: {'accuracy': ...}."""
    if len(labels) != len(predictions):
        raise ValueError(f"accuracy: {len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("accuracy: no examples to score")
    correct = sum(1 for gold, pred in zip(labels, predictions) if gold == pred)
    return {"accuracy": _points(correct / len(labels))}


# --- seqeval entity F1 (udpos, panx) -----------------------------------------------------------


def seqeval_f1(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro entity F1/precision/recall of seqeval's default mode, in points.

    This is what the official scorer does for both panx (IOB2; an I- tag without a B- opens an
    entity, as in conlleval) and udpos. For UPOS tags seqeval reads the first letter as a chunk
    prefix and the rest as the type, so a run of equal tags ('NOUN NOUN') is one "entity" and tags
    starting with S ('SYM', 'SCONJ') are single-token ones. We keep that quirk so that our numbers
    equal the official scorer's. Which release reads the type differs: seqeval >= 1.0 takes `tag[1:]`
    as the type, so SCONJ and CCONJ both become 'CONJ' and merge into one chunk; seqeval 0.0.x (the
    official scorer's era) did not. On XTREME's own mock UD-POS submission that is F1 70.398 (1.x)
    against 70.217 (0.0.x); `hpcxlt score --json` records the seqeval version it ran with. PAN-X tags
    (B-/I- prefixes) score the same under both.
    """
    if len(labels) != len(predictions):
        raise ValueError(f"seqeval_f1: {len(predictions)} predicted sentences for {len(labels)} labelled ones")
    if not labels:
        raise ValueError("seqeval_f1: no sentences to score")
    for index, (gold, pred) in enumerate(zip(labels, predictions)):
        if len(gold) != len(pred):
            raise ValueError(
                f"seqeval_f1: sentence {index + 1} has {len(pred)} predicted tags for {len(gold)} gold tags"
            )
    from seqeval.metrics import f1_score, precision_score, recall_score  # heavy: seqeval

    gold_lists = [list(sentence) for sentence in labels]
    pred_lists = [list(sentence) for sentence in predictions]
    with warnings.catch_warnings():
        # seqeval warns about UPOS tags ("not a NE tag") and about 0/0 precision; both are expected.
        warnings.simplefilter("ignore")
        return {
            "f1": _points(f1_score(gold_lists, pred_lists)),
            "precision": _points(precision_score(gold_lists, pred_lists)),
            "recall": _points(recall_score(gold_lists, pred_lists)),
        }


# --- extractive QA: SQuAD v1.1 (xquad, tydiqa) and MLQA (mlqa) -----------------------------------

_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = frozenset(string.punctuation)

# Per-language articles of the MLQA script; hi and zh have none. For Arabic the official pattern
# ("\sال^|ال") can only ever match its second branch, so every "ال" becomes a space.
_MLQA_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile("ال"),
}
# MLQA segments Chinese into single CJK characters (the script's range U+4E00-U+9FA5).
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def squad_normalize(text: str) -> str:
    """SQuAD v1.1 normalisation: lower-case, drop ASCII punctuation, drop a/an/the, squeeze spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
    text = _SQUAD_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _is_mlqa_punct(ch: str) -> bool:
    # MLQA's punctuation: every Unicode P* category character plus ASCII string.punctuation
    # (which adds the ASCII symbols $+<=>^`|~).
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def _mixed_segmentation(text: str) -> list[str]:
    tokens: list[str] = []
    pending = ""
    for ch in text:
        if _CJK.match(ch) or _is_mlqa_punct(ch):
            tokens.extend(pending.split())
            pending = ""
            tokens.append(ch)
        else:
            pending += ch
    tokens.extend(pending.split())
    return tokens


def mlqa_normalize(text: str, lang: str) -> str:
    """MLQA normalisation: lower-case, drop Unicode punctuation, drop `lang`'s articles, re-tokenise.

    Chinese is split into single CJK characters plus whitespace tokens ("mixed segmentation");
    every other language is split on whitespace. Tokens are joined by single spaces.
    """
    if lang not in MLQA_LANGUAGES:
        raise ValueError(f"mlqa_normalize: unknown language {lang!r}; MLQA knows {', '.join(MLQA_LANGUAGES)}")
    text = text.lower()
    text = "".join(ch for ch in text if not _is_mlqa_punct(ch))
    articles = _MLQA_ARTICLES.get(lang)
    if articles is not None:
        text = articles.sub(" ", text)
    tokens = _mixed_segmentation(text) if lang == "zh" else text.split()
    return " ".join(token for token in tokens if token.strip())


def token_f1(prediction_tokens: Sequence[str], gold_tokens: Sequence[str]) -> float:
    """Bag-of-tokens F1 in [0, 1]; 0 when nothing overlaps (so two empty answers score 0, as in SQuAD v1.1)."""
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(prediction_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _qa_em_f1(golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str], normalize) -> dict[str, float]:
    if not golds:
        raise ValueError("QA: no questions to score")
    exact = f1 = 0.0
    for qid, answers in golds.items():
        if not answers:
            raise ValueError(f"QA: question {qid!r} has no gold answer")
        if qid not in predictions:
            continue  # an unanswered question counts as 0, and still counts in the total
        pred = normalize(predictions[qid])
        pred_tokens = pred.split()
        # Max over gold answers, separately for EM and for F1.
        exact += max(float(pred == normalize(answer)) for answer in answers)
        f1 += max(token_f1(pred_tokens, normalize(answer).split()) for answer in answers)
    return {"exact_match": _points(exact / len(golds)), "f1": _points(f1 / len(golds))}


def squad_em_f1(golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1 in points, maximised over each question's gold answers.

    `golds` maps question id -> gold answer texts; `predictions` maps question id -> answer text.
    Every gold question counts; one without a prediction scores 0; predictions for unknown ids are
    ignored (as in the official script).
    """
    return _qa_em_f1(golds, predictions, squad_normalize)


def mlqa_em_f1(golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str], lang: str) -> dict[str, float]:
    """MLQA exact match and F1 in points, with `lang`'s normalisation (see `mlqa_normalize`)."""
    if lang not in MLQA_LANGUAGES:
        raise ValueError(f"mlqa_em_f1: unknown language {lang!r}; MLQA knows {', '.join(MLQA_LANGUAGES)}")
    return _qa_em_f1(golds, predictions, lambda text: mlqa_normalize(text, lang))


# --- retrieval: mAP@k (mewslix, lareqa) ----------------------------------------------------------


def average_precision_at_k(relevant: Iterable[str], ranked: Sequence[str], k: int = MAP_K) -> float:
    """AP@k in [0, 1]: sum of precision@i over the ranks i <= k that hold a new relevant item,
    divided by min(#relevant, k). A repeated id earns nothing the second time (utils_lareqa)."""
    if k < 1:
        raise ValueError(f"average_precision_at_k: k must be >= 1, got {k}")
    relevant = set(relevant)
    if not relevant:
        raise ValueError("average_precision_at_k: no relevant item")
    hits = 0
    total = 0.0
    seen: set[str] = set()
    for rank, item in enumerate(ranked[:k], start=1):
        if item in relevant and item not in seen:
            hits += 1
            total += hits / rank
        seen.add(item)
    return total / min(len(relevant), k)


def map_at_k(
    golds: Mapping[str, Iterable[str]], rankings: Mapping[str, Sequence[str]], k: int = MAP_K
) -> dict[str, float]:
    """Mean AP@k over every gold query, in points: {'map_at_<k>': ...}.

    `golds` maps query id -> relevant ids (one entity for mewslix, the answer in every language for
    lareqa); `rankings` maps query id -> ids ranked best first. A query without a ranking scores 0
    and ranking ids without a gold query are ignored, as in utils_mewslix.evaluate.
    """
    if not golds:
        raise ValueError("map_at_k: no queries to score")
    total = sum(average_precision_at_k(relevant, rankings.get(qid, ()), k) for qid, relevant in golds.items())
    return {f"map_at_{k}": _points(total / len(golds))}


def rank_candidates(scores, candidate_ids: Sequence[str], k: int = MAP_K) -> list[list[str]]:
    """Top-k candidate ids per query from a (queries x candidates) score matrix, best first.

    Tie-breaking rule: equal scores keep candidate order (the lower column index ranks first), so a
    ranking, and the mAP computed from it, is deterministic. NaN scores are refused.
    """
    import numpy as np  # heavy: numpy

    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(candidate_ids):
        raise ValueError(
            f"rank_candidates: scores of shape {matrix.shape} do not match {len(candidate_ids)} candidates"
        )
    if np.isnan(matrix).any():
        raise ValueError("rank_candidates: scores contain NaN")
    order = np.argsort(-matrix, axis=1, kind="stable")[:, :k]
    return [[candidate_ids[j] for j in row] for row in order]
