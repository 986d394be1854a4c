"""The synthetic tasks are learnable: the tiny model, trained briefly on English on the CPU, scores
far above chance on English dev for one task of every format (so the offline world can show that
training and evaluation work, not just that they run)."""

import numpy as np
import pytest
import torch

from hpcxlt.config.schema import DataConfig
from hpcxlt.data.collate import LengthGroupedBatchSampler, PadCollator, model_inputs
from hpcxlt.data.features import load_features
from hpcxlt.data.featurize import feature_lengths
from hpcxlt.data.qa_answers import postprocess_qa
from hpcxlt.demo.synth import SynthSettings, write_benchmark
from hpcxlt.demo.tiny import TinySpec, build_tiny
from hpcxlt.model.heads import build_model, dual_encoder_loss, embed
from hpcxlt.tasks.registry import get_task

pytestmark = pytest.mark.slow

# task -> (optimizer steps, chance level of the score below)
CASES = {"xnli": (120, 1 / 3), "xcopa": (150, 1 / 2), "panx": (80, 0.0), "squad": (250, 0.0), "mewslix": (60, 0.0)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from transformers import AutoTokenizer

    base = tmp_path_factory.getbasetemp()
    tiny = build_tiny(base / "learnable-tiny", TinySpec(sentences_per_language=100), languages=("en", "de", "sw"))
    bench = base / "learnable-bench"
    write_benchmark(bench, SynthSettings(train_size=2000, eval_size=200), tasks=tuple(CASES))
    data = DataConfig(source="local", root=str(bench), cache_dir=str(base / "learnable-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine one thread is ~10x faster than two fighting
    yield tiny, AutoTokenizer.from_pretrained(tiny), data
    torch.set_num_threads(threads)


def _batches(features, collate, size=64):
    for start in range(0, len(features), size):
        yield collate([features[i] for i in range(start, min(start + size, len(features)))])


def _score(spec, model, dev, collate) -> float:
    model.eval()
    features = dev.features
    with torch.no_grad():
        if spec.format in ("classification", "multiple_choice"):
            pairs = [(model(**model_inputs(b)).logits.argmax(-1), b["labels"]) for b in _batches(features, collate)]
            return float(torch.cat([p == g for p, g in pairs]).float().mean())
        if spec.format == "tagging":
            from seqeval.metrics import f1_score

            names, gold, pred = dev.label_names, [], []
            for b in _batches(features, collate):
                predicted = model(**model_inputs(b)).logits.argmax(-1)
                for labels, guess in zip(b["labels"].tolist(), predicted.tolist()):
                    gold.append([names[g] for g in labels if g != -100])
                    pred.append([names[p] for g, p in zip(labels, guess) if g != -100])
            return f1_score(gold, pred)
        if spec.format == "qa":
            width = max(len(ids) for ids in features["input_ids"])
            starts, ends = [], []
            for b in _batches(features, collate):
                out = model(**model_inputs(b))
                pad = width - out.start_logits.shape[1]
                starts.append(torch.nn.functional.pad(out.start_logits, (0, pad), value=-1e9))
                ends.append(torch.nn.functional.pad(out.end_logits, (0, pad), value=-1e9))
            answers = postprocess_qa(dev.examples, features, torch.cat(starts).numpy(), torch.cat(ends).numpy())
            return float(np.mean([answers[ex["id"]] == ex["answers"]["text"][0] for ex in dev.examples]))
        # retrieval: top-1 accuracy of each query among the split's candidates
        vectors = torch.cat(
            [torch.nn.functional.normalize(embed(model, b), dim=-1) for b in _batches(features, collate)]
        )
        role, keys = np.array(features["role"]), features["keys"]
        queries, candidates = np.where(role == 0)[0], np.where(role == 1)[0]
        best = (vectors[queries] @ vectors[candidates].T).argmax(1).tolist()
        return float(np.mean([bool(set(keys[q]) & set(keys[candidates[c]])) for q, c in zip(queries, best)]))


@pytest.mark.parametrize("task", list(CASES))
def test_tiny_model_learns_the_english_task_far_above_chance(world, task):
    tiny, tokenizer, data = world
    spec, (steps, chance) = get_task(task), CASES[task]
    train = load_features(spec, "en", "train", tokenizer, data, max_length=128).features
    dev = load_features(spec, "en", "dev", tokenizer, data, max_length=128)
    collate = PadCollator(tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = build_model(spec.format, str(tiny), label_names=spec.label_names or None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sampler = LengthGroupedBatchSampler(feature_lengths(train), 32, seed=0)
    model.train()
    step = 0
    while step < steps:
        for indices in sampler:
            batch = collate([train[i] for i in indices])
            loss = (
                dual_encoder_loss(model, batch)[0] if spec.format == "retrieval" else model(**model_inputs(batch)).loss
            )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step == steps:
                break
    score = _score(spec, model, dev, collate)
    assert score > chance + 0.25, f"{task}: dev score {score:.3f} after {steps} steps (chance {chance:.3f})"
