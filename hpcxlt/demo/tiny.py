"""A tiny XLM-R for the offline world: a local Unigram tokenizer over the synthetic languages and a
randomly initialised XLMRobertaConfig model, saved like any hub model (save_pretrained).

The tokenizer is the same kind XLM-R uses (SentencePiece Unigram with the '▁' metaspace and the
<s> <pad> </s> <unk> <mask> specials), so every code path that runs on XLM-R Large runs on it.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from hpcxlt.io import publish_dir, write_json_atomic

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
MARKER = "hpcxlt_tiny.json"
"""Written last into a built model folder: its presence means the folder is complete."""


@dataclass(frozen=True, kw_only=True)
class TinySpec:
    """What a tiny model is built from; equal specs give byte-identical weights and vocabularies."""

    vocab_size: int = 2000
    """Tokenizer vocabulary size, special tokens included."""
    hidden: int = 64
    """Hidden size of the encoder."""
    layers: int = 2
    """Transformer layers."""
    heads: int = 2
    """Attention heads per layer (must divide hidden)."""
    intermediate: int = 128
    """Feed-forward size."""
    max_positions: int = 514
    """Position embeddings (XLM-R keeps 2 for the padding offset: 512 usable)."""
    seed: int = 0
    """Seed of the corpus and of the weight initialisation."""
    sentences_per_language: int = 200
    """Synthetic sentences per language the tokenizer is trained on."""

    def check(self) -> None:
        for name in (
            "vocab_size",
            "hidden",
            "layers",
            "heads",
            "intermediate",
            "max_positions",
            "sentences_per_language",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        if self.vocab_size < 300:
            raise ValueError(
                f"vocab_size must be >= 300 to hold the letters of every synthetic script, got {self.vocab_size}"
            )


def tokenizer_corpus(languages: tuple[str, ...], *, seed: int, per_language: int) -> list[str]:
    """Synthetic sentences in every language (plus every word once), for tokenizer training.

    English gets ten times the sentences of any other language, as it dominates real pre-training
    corpora (CC-100), so English words end up as whole pieces and others more often split. Half the
    sentences carry one of the words the tasks hinge on (label cues, question words), which the
    plain grammar never produces, so they are common enough to become pieces of their own.
    """
    from hpcxlt.demo import grammar
    from hpcxlt.demo.lexicon import (
        CONCEPTS,
        CUES,
        PLAUSIBLE_CUES,
        QUESTION_WORDS,
        concept,
        language_lexicon,
        seeded_rng,
    )

    groups = (*CUES.values(), *QUESTION_WORDS.values(), PLAUSIBLE_CUES)
    special = sorted({concept(w, upos).key for group in groups for w, upos in group})
    lines = []
    for lang in languages:
        lex = language_lexicon(lang, seed=seed)
        rng = seeded_rng("tokenizer-corpus", seed, lang)
        for _ in range(per_language * (10 if lang == "en" else 1)):
            keys = grammar.sentence(rng).keys
            if rng.random() < 0.5:
                keys.insert(rng.randrange(len(keys)), rng.choice(special))
            lines.append(" ".join(grammar.render(keys, lex)))
        # Every word at least once, so no word of any language falls back to <unk>.
        lines.append(" ".join(lex.words[key] for key in sorted(CONCEPTS)))
    return lines


def train_tokenizer(lines: list[str], vocab_size: int, *, split_punctuation: bool = False):
    """A tokenizer trained on `lines`, wrapped as the XLM-R tokenizer class (a Unigram model).

    The pieces are learned with BPE and then given equal Unigram scores, so a word is cut into the
    fewest pieces. Why not train Unigram directly: on a corpus this small (a few hundred word types
    per language) both the `tokenizers` and the SentencePiece Unigram trainers keep even the most
    frequent words in pieces ('every' -> 'ever' + 'y'), which makes the tiny model needlessly slow
    to learn; BPE merges frequent words whole. `split_punctuation` keeps punctuation out of word
    pieces while learning (real text: XLM-R's SentencePiece has 'word' and '،' apart, not 'word،').
    """
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import XLMRobertaTokenizer  # tokenizers-backed in transformers 5 (...Fast is its alias)

    raw = Tokenizer(BPE(unk_token="<unk>"))
    # The same pre-tokenisation XLMRobertaTokenizer applies, so training and use agree.
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            *([pre_tokenizers.Punctuation(behavior="isolated")] if split_punctuation else []),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
        ]
    )
    trainer = BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False)
    raw.train_from_iterator(lines, trainer=trainer)
    ids = raw.get_vocab()
    pieces = sorted(ids, key=ids.__getitem__)
    if pieces[: len(SPECIAL_TOKENS)] != list(SPECIAL_TOKENS):
        raise RuntimeError(f"tokenizer training put the special tokens out of order: {pieces[:5]}")
    # Equal scores (a tiny tie-break by merge order, earlier = more frequent) -> fewest pieces.
    vocab = [(piece, 0.0) for piece in SPECIAL_TOKENS]
    vocab += [(piece, -1.0 - 1e-4 * rank) for rank, piece in enumerate(pieces[len(SPECIAL_TOKENS) :])]
    return XLMRobertaTokenizer(vocab=vocab)


def is_built(out: str | os.PathLike) -> bool:
    """True when `out` holds a completely built tiny model."""
    return (Path(out) / MARKER).is_file()


def build_tiny(
    out: str | os.PathLike, spec: TinySpec = TinySpec(), *, languages: tuple[str, ...] | None = None
) -> Path:
    """Build the tokenizer and the model into `out` (atomically); an existing complete `out` is kept.

    Returns `out`. Load the result with `from_pretrained(out)` of AutoTokenizer / AutoModel*.
    """
    spec.check()
    out = Path(out)
    if is_built(out):
        return out
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(
            f"{out} exists, is not empty and holds no {MARKER}: not a tiny model; remove it or pick another folder"
        )
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM

    from hpcxlt.tasks.languages import LANGUAGES

    langs = tuple(sorted(languages if languages is not None else LANGUAGES))
    tokenizer = train_tokenizer(
        tokenizer_corpus(langs, seed=spec.seed, per_language=spec.sentences_per_language), spec.vocab_size
    )
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        intermediate_size=spec.intermediate,
        max_position_embeddings=spec.max_positions,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(spec.seed)
    model = XLMRobertaForMaskedLM(config)

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / MARKER, {**asdict(spec), "languages": list(langs)})

    try:
        return publish_dir(out, fill)
    except OSError:
        if is_built(out):  # another process finished the same build first
            return out
        raise
