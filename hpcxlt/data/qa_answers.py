"""QA answers from a model's per-window start and end logits: the text span each example's best pair cuts
from its context (the windows and their `offset_mapping` are `hpcxlt.data.featurize`'s)."""

from __future__ import annotations

import collections

import numpy as np


def postprocess_qa(
    examples, features, start_logits, end_logits, *, n_best: int = 20, max_answer_length: int = 30
) -> dict[str, str]:
    """Answer text per example id from per-window start/end logits (arrays [n_features, seq_len]).

    For every window of an example, the n_best start and end tokens inside the context are paired
    (end >= start, at most max_answer_length tokens); the pair with the highest start + end logit over
    all windows wins, and its text is cut from the context by the tokens' character offsets, so it
    is exactly a span of the original context. An example without any valid span gets ''.
    """
    by_example = collections.defaultdict(list)
    for index, example_id in enumerate(features["example_id"]):
        by_example[example_id].append(index)
    offsets_all = features["offset_mapping"]
    answers: dict[str, str] = {}
    for example in examples:
        context, best, best_score = example["context"], "", -np.inf
        for index in by_example.get(example["id"], []):
            offsets = offsets_all[index]
            starts = np.asarray(start_logits[index])[: len(offsets)]
            ends = np.asarray(end_logits[index])[: len(offsets)]
            for s in np.argsort(starts)[::-1][:n_best]:
                if offsets[s][0] < 0:
                    continue
                for e in np.argsort(ends)[::-1][:n_best]:
                    if offsets[e][0] < 0 or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = starts[s] + ends[e]
                    text = context[offsets[s][0] : offsets[e][1]]
                    if score > best_score and text.strip():
                        best, best_score = text, score
        answers[example["id"]] = best.strip()
    return answers
