import pytest
import torch

from hpcxlt.config.schema import DataConfig
from hpcxlt.data.collate import PadCollator, model_inputs
from hpcxlt.data.features import load_features
from hpcxlt.demo.synth import SynthSettings, write_benchmark
from hpcxlt.demo.tiny import TinySpec, build_tiny
from hpcxlt.model.heads import (
    MultiTaskModel,
    build_model,
    dual_encoder_loss,
    embed,
    init_from_intermediate,
    make_head,
)
from hpcxlt.tasks.registry import get_task

TASKS = {"xnli": "en", "xcopa": "en", "panx": "en", "squad": "en", "mewslix": "en"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from transformers import AutoTokenizer

    base = tmp_path_factory.getbasetemp()
    tiny = build_tiny(base / "heads-tiny", TinySpec(vocab_size=400, sentences_per_language=30), languages=("en", "de"))
    bench = base / "heads-bench"
    write_benchmark(bench, SynthSettings(train_size=8, eval_size=8), tasks=tuple(TASKS))
    data = DataConfig(source="local", root=str(bench), cache_dir=str(base / "heads-cache"))
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    collate = PadCollator(tokenizer.pad_token_id)
    batches = {
        task: collate(list(load_features(get_task(task), lang, "train", tokenizer, data, max_length=48).features))
        for task, lang in TASKS.items()
    }
    return tiny, batches


def test_build_model_gives_the_hugging_face_head_of_each_format(world):
    tiny, batches = world
    xnli = get_task("xnli")
    model = build_model("classification", str(tiny), label_names=xnli.label_names)
    assert type(model).__name__ == "XLMRobertaForSequenceClassification"
    assert model.config.id2label == dict(enumerate(xnli.label_names))
    out = model(**model_inputs(batches["xnli"]))
    assert out.logits.shape == (8, 3) and out.loss > 0
    assert type(build_model("multiple_choice", str(tiny))).__name__ == "XLMRobertaForMultipleChoice"
    assert build_model("multiple_choice", str(tiny))(**model_inputs(batches["xcopa"])).logits.shape == (8, 2)
    tagger = build_model("tagging", str(tiny), num_labels=7)
    assert tagger(**model_inputs(batches["panx"])).logits.shape[-1] == 7
    qa = build_model("qa", str(tiny))(**model_inputs(batches["squad"]))
    assert qa.start_logits.shape == batches["squad"]["input_ids"].shape
    encoder = build_model("retrieval", str(tiny))
    assert type(encoder).__name__ == "XLMRobertaModel"
    loss, logits = dual_encoder_loss(encoder, batches["mewslix"])
    assert logits.shape == (8, 8) and loss > 0
    with pytest.raises(ValueError, match="needs num_labels or label_names"):
        build_model("tagging", str(tiny))
    with pytest.raises(ValueError, match="unknown format"):
        build_model("ranking", str(tiny))


def test_embed_is_a_masked_mean_of_the_chosen_layer(world):
    tiny, _ = world
    model = build_model("retrieval", str(tiny)).eval()
    ids = torch.tensor([[0, 10, 11, 2]])
    padded = {"input_ids": torch.tensor([[0, 10, 11, 2, 1, 1]]), "attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0]])}
    plain = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        assert torch.allclose(embed(model, plain, layer=1), embed(model, padded, layer=1), atol=1e-5)
        hidden = model(**plain, output_hidden_states=True).hidden_states
        assert torch.allclose(embed(model, plain, layer=0), hidden[0].mean(1), atol=1e-6)
        assert torch.allclose(embed(model, plain, layer=-1), hidden[-1].mean(1), atol=1e-6)
        assert not torch.allclose(embed(model, plain, layer=1), embed(model, plain, layer=2))
    with pytest.raises(ValueError, match="layer 7 does not exist"):
        embed(model, plain, layer=7)


def test_multi_task_model_shares_one_encoder_and_saves_round_trip(world, tmp_path):
    tiny, batches = world
    model = MultiTaskModel.from_tasks(
        str(tiny),
        {
            "xnli": ("classification", 3),
            "xcopa": ("multiple_choice", None),
            "panx": ("tagging", 7),
            "squad": ("qa", None),
            "mewslix": ("retrieval", None),
        },
    )
    model.eval()
    outputs = {}
    for task, batch in batches.items():
        outputs[task] = model(task=task, **model_inputs(batch))
        assert outputs[task].loss is not None and torch.isfinite(outputs[task].loss)
    assert outputs["xcopa"].logits.shape == (8, 2) and outputs["panx"].logits.shape[-1] == 7
    assert outputs["squad"].start_logits.shape == batches["squad"]["input_ids"].shape
    # One encoder: a step on one task's loss changes what every other task sees.
    before = model(task="panx", **model_inputs(batches["panx"])).logits.detach()
    outputs["xnli"].loss.backward()
    with torch.no_grad():
        for p in model.encoder.parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
    assert not torch.allclose(before, model(task="panx", **model_inputs(batches["panx"])).logits)
    with pytest.raises(KeyError, match="no head for task 'udpos'"):
        model(task="udpos", **model_inputs(batches["panx"]))
    model.save_pretrained(tmp_path / "mt")
    loaded = MultiTaskModel.from_pretrained(tmp_path / "mt").eval()
    with torch.no_grad():
        for task, batch in batches.items():
            assert torch.allclose(
                model(task=task, **model_inputs(batch)).logits,
                loaded(task=task, **model_inputs(batch)).logits,
                atol=1e-5,
            ), task


def test_init_from_intermediate_copies_the_encoder_and_keeps_the_head_new(world, tmp_path):
    tiny, batches = world
    intermediate = MultiTaskModel.from_tasks(str(tiny), {"mnli": ("classification", 3)})
    with torch.no_grad():
        for p in intermediate.encoder.parameters():
            p.add_(0.01)  # "trained": differs from the pretrained weights
    intermediate.save_pretrained(tmp_path / "inter")
    target = build_model("tagging", str(tiny), num_labels=7)
    head_before = target.classifier.weight.detach().clone()
    copied = init_from_intermediate(target, tmp_path / "inter")
    assert "roberta.encoder.layer.0.attention.self.query.weight" in copied
    assert not any(key.startswith("classifier") for key in copied)
    assert torch.equal(
        target.roberta.encoder.layer[1].output.dense.weight, intermediate.encoder.encoder.layer[1].output.dense.weight
    )
    assert torch.equal(target.classifier.weight, head_before)
    # A target trained from an HF checkpoint with a head ('roberta.' prefixed keys) works the same way.
    build_model("classification", str(tiny), num_labels=3).save_pretrained(tmp_path / "hf")
    assert init_from_intermediate(build_model("qa", str(tiny)), tmp_path / "hf")
    other = build_tiny(
        tmp_path / "wider", TinySpec(vocab_size=400, hidden=32, heads=2, sentences_per_language=5), languages=("en",)
    )
    with pytest.raises(ValueError, match="do not fit the target model"):
        init_from_intermediate(build_model("qa", str(other)), tmp_path / "inter")
    with pytest.raises(FileNotFoundError, match="no model weights"):
        init_from_intermediate(target, tmp_path)


def test_make_head_checks_its_arguments():
    assert make_head("qa", 16).spec() == {"format": "qa", "hidden_size": 16}
    with pytest.raises(ValueError, match="needs num_labels"):
        make_head("classification", 16)
