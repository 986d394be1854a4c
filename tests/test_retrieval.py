"""Retrieval with one encoder for both sides: ranking like the official ranker, Tatoeba indices,
Mewsli-X and LAReQA pools (LAReQA pooled over all languages and embedded once per model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcxlt.evaluate import metrics, scoring
from hpcxlt.evaluate.predict import InferenceSettings, predict_split
from hpcxlt.evaluate.retrieval import encode, pool_languages, top_k
from hpcxlt.tasks.registry import get_task
from tests.eval_assets import assets, data_config, eval_threads, tokenizer  # noqa: F401  (fixtures)


@pytest.fixture(scope="module", autouse=True)
def _threads(eval_threads):
    yield


@pytest.fixture(scope="module")
def encoder(assets):
    from transformers import AutoModel

    return AutoModel.from_pretrained(assets / "tiny").eval()


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_rows(path: Path, items: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")


def test_top_k_ranks_like_the_official_ranker_ties_and_chunks_included():
    import torch

    generator = torch.Generator().manual_seed(0)
    # 0/1 vectors: many equal dot products, so the tie rule decides much of the ranking
    queries = torch.randint(0, 2, (37, 6), generator=generator).float()
    candidates = torch.randint(0, 2, (53, 6), generator=generator).float()
    ids = [f"c{i}" for i in range(53)]
    for k in (1, 7, 20):
        expected = metrics.rank_candidates((queries @ candidates.T).numpy(), ids, k=k)
        for max_elements in (10, 53 * 5, 1 << 20):  # one query per chunk, several, all at once
            ranked = top_k(queries, candidates, k, max_elements=max_elements)
            assert [[ids[i] for i in row] for row in ranked] == expected
    assert [len(r) for r in top_k(queries, candidates[:3], 20)] == [3] * 37
    with pytest.raises(ValueError, match="no candidates"):
        top_k(queries, candidates[:0], 5)


def test_embeddings_are_unit_vectors_in_input_order(assets, tokenizer, encoder):
    import torch

    from hpcxlt.data.features import load_features

    fs = load_features(get_task("tatoeba"), "de", "test", tokenizer, data_config(assets), max_length=64, train=False)
    common = dict(layer=-1, batch_size=5, pad_token_id=tokenizer.pad_token_id)
    by_length = encode(encoder, fs.features, **common)
    in_order = encode(encoder, fs.features, sort_by_length=False, **common)
    one_by_one = encode(encoder, fs.features, **{**common, "batch_size": 1})
    assert by_length.shape == (len(fs.features), encoder.config.hidden_size)
    assert torch.allclose(by_length.norm(dim=-1), torch.ones(len(fs.features)), atol=1e-5)
    assert torch.allclose(by_length, one_by_one, atol=1e-5) and torch.allclose(in_order, one_by_one, atol=1e-5)
    # another layer embeds differently (the layer setting is not ignored)
    assert not torch.allclose(encode(encoder, fs.features, **{**common, "layer": 1}), by_length, atol=1e-3)


def test_tatoeba_predicts_the_index_of_the_english_sentence(assets, tokenizer, encoder, tmp_path):
    # Both sides equal: every sentence's nearest English sentence is itself, whatever the encoder.
    seen, examples = set(), []
    for row in rows(assets / "synth" / "tatoeba" / "de" / "test.jsonl"):
        if row["source_sentence"] not in seen:
            seen.add(row["source_sentence"])
            examples.append({**row, "target_sentence": row["source_sentence"]})
    examples.reverse()  # another order than the benchmark's: indices must follow the file
    write_rows(tmp_path / "data" / "tatoeba" / "de" / "test.jsonl", examples)
    data = data_config(tmp_path, root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    prediction = predict_split(get_task("tatoeba"), "de", "test", encoder, tokenizer, data)
    assert prediction.labels == [str(i) for i in range(len(examples))]
    assert prediction.predictions == prediction.labels
    assert scoring.language_metrics("tatoeba", "de", prediction.labels, prediction.predictions) == {"accuracy": 100.0}

    real = predict_split(get_task("tatoeba"), "sw", "test", encoder, tokenizer, data_config(assets))
    n = len(rows(assets / "synth" / "tatoeba" / "sw" / "test.jsonl"))
    assert real.labels == [str(i) for i in range(n)] and real.n_examples == n
    assert all(0 <= int(p) < n for p in real.predictions)


def test_mewslix_ranks_the_shared_entity_pool(assets, tokenizer, encoder, tmp_path):
    synth = assets / "synth" / "mewslix"
    pool = rows(synth / "candidates.jsonl")
    description = {r["entity_id"]: r["description"] for r in pool}
    counts: dict[str, int] = {}
    for text in description.values():
        counts[text] = counts.get(text, 0) + 1
    # A mention worded exactly like its entity's (unique) description ranks that entity first.
    mentions = [
        {**r, "mention": description[r["entity_id"]]}
        for r in rows(synth / "de" / "test.jsonl")
        if counts[description[r["entity_id"]]] == 1
    ]
    write_rows(tmp_path / "data" / "mewslix" / "de" / "test.jsonl", mentions)
    write_rows(tmp_path / "data" / "mewslix" / "candidates.jsonl", pool)
    data = data_config(tmp_path, root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    pools: dict = {}
    prediction = predict_split(get_task("mewslix"), "de", "test", encoder, tokenizer, data, pools=pools)
    assert prediction.labels == {r["id"]: [r["entity_id"]] for r in mentions}
    assert all(len(ranking) == 20 and set(ranking) <= set(description) for ranking in prediction.predictions.values())
    assert all(prediction.predictions[r["id"]][0] == r["entity_id"] for r in mentions)
    assert scoring.language_metrics("mewslix", "de", prediction.labels, prediction.predictions) == {"map_at_20": 100.0}
    shared = [key for key in pools if key[0] == "shared"]
    assert len(shared) == 1 and len(pools[shared[0]]) == len(pool)


def test_mewslix_english_dev_pairs_rank_their_own_entities(assets, tokenizer, encoder):
    dev = rows(assets / "synth" / "mewslix" / "en" / "dev.jsonl")
    prediction = predict_split(get_task("mewslix"), "en", "dev", encoder, tokenizer, data_config(assets))
    entities = {r["entity_id"] for r in dev}
    assert all(set(ranking) <= entities for ranking in prediction.predictions.values())
    assert prediction.labels == {r["id"]: [r["entity_id"]] for r in dev}


def test_lareqa_pools_every_language_once_per_model(assets, tokenizer, encoder):
    spec = get_task("lareqa")
    langs = pool_languages(spec, "test")
    assert langs == spec.languages and len(langs) == 11
    pools: dict = {}
    settings = InferenceSettings(batch_size=16, max_length=64)
    de = predict_split(spec, "de", "test", encoder, tokenizer, data_config(assets), settings, pools=pools)
    embedded = dict(pools)
    assert sorted(key[2] for key in embedded) == sorted(langs)  # every language's sentences, once
    en = predict_split(spec, "en", "test", encoder, tokenizer, data_config(assets), settings, pools=pools)
    assert pools.keys() == embedded.keys() and all(pools[k] is embedded[k] for k in pools)

    questions = rows(assets / "synth" / "lareqa" / "de" / "test.jsonl")
    assert set(de.labels) == {f"de:{q['id']}" for q in questions} and set(en.labels) == {
        f"en:{q['id']}" for q in questions
    }
    for relevant in de.labels.values():
        # the parallel answer sentence in every language is relevant (LAReQA's language-agnostic pool)
        assert sorted(item.split(":")[0] for item in relevant) == sorted(langs)
    ranked_langs = {item.split(":")[0] for ranking in de.predictions.values() for item in ranking}
    assert len(ranked_langs) > 1
    score = scoring.language_metrics("lareqa", "de", de.labels, de.predictions)["map_at_20"]
    assert 0 <= score <= 100
