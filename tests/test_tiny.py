import json

import pytest

from hpcxlt.cli import main
from hpcxlt.demo import grammar
from hpcxlt.demo.lexicon import language_lexicon, seeded_rng
from hpcxlt.demo.tiny import MARKER, TinySpec, build_tiny, is_built

LANGS = ("en", "de", "ru", "zh", "sw", "yo", "ar", "hi")
SPEC = TinySpec(vocab_size=600, sentences_per_language=30)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.getbasetemp() / "tiny-test-tiny", SPEC, languages=LANGS)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_saved_model_and_tokenizer_load_offline_as_xlm_r(tiny):
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny)
    assert config.model_type == "xlm-roberta"
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (
        64,
        2,
        2,
        128,
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    assert type(tokenizer).__name__.startswith("XLMRobertaTokenizer")
    assert len(tokenizer) == config.vocab_size == SPEC.vocab_size
    # XLM-R's special tokens, in XLM-R's order.
    assert [tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [
        0,
        1,
        2,
        3,
    ]
    assert tokenizer.mask_token == "<mask>"
    model = AutoModelForMaskedLM.from_pretrained(tiny)
    enc = tokenizer(["the dog sees a bird ."], return_tensors="pt")
    assert model(**enc).logits.shape[-1] == SPEC.vocab_size


def test_tokenizer_covers_every_language_without_unknown_pieces(tiny):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    rng = seeded_rng("test-tokenizer")
    for lang in LANGS:
        text = " ".join(grammar.render(grammar.sentence(rng).keys, language_lexicon(lang)))
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids, (lang, text)
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == text

    # English dominates the corpus (as in CC-100): fewer pieces per word than a language whose
    # invented words are in another script.
    def pieces_per_word(lang):
        rng = seeded_rng("pieces", lang)
        sentences = [grammar.render(grammar.sentence(rng).keys, language_lexicon(lang)) for _ in range(30)]
        return sum(len(tokenizer.tokenize(" ".join(s))) for s in sentences) / sum(map(len, sentences))

    assert tokenizer.tokenize("the") == ["▁the"]
    assert pieces_per_word("en") < pieces_per_word("ru")


def test_build_is_deterministic_idempotent_and_refuses_foreign_folders(tmp_path, tiny):
    again = build_tiny(tmp_path / "again", SPEC, languages=LANGS)
    for name in ("tokenizer.json", "model.safetensors", "config.json"):
        assert (again / name).read_bytes() == (tiny / name).read_bytes(), name
    stamp = (again / "model.safetensors").stat().st_mtime_ns
    assert build_tiny(again, SPEC, languages=LANGS) == again
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a tiny model"):
        build_tiny(other, SPEC, languages=LANGS)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp folders left behind
    with pytest.raises(ValueError, match="multiple of heads"):
        build_tiny(tmp_path / "bad", TinySpec(hidden=10, heads=3))
    assert not (tmp_path / "bad").exists()


def test_cli_builds_once_then_keeps(tmp_path, capsys):
    out = tmp_path / "cli-tiny"
    args = [
        "build-tiny",
        str(out),
        "--vocab-size",
        "400",
        "--hidden",
        "32",
        "--intermediate",
        "64",
        "--language",
        "en",
        "--language",
        "sw",
        "--json",
    ]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["reused"] is False and first["hidden"] == 32 and first["languages"] == ["en", "sw"]
    assert is_built(out) and json.loads((out / MARKER).read_text())["vocab_size"] == 400
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True
    assert main(["build-tiny", str(tmp_path / "x"), "--language", "xx"]) == 2
    assert "unknown language code 'xx'" in capsys.readouterr().err
