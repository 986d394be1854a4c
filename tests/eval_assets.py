"""Shared by the evaluation tests: one tiny XLM-R and one small synthetic benchmark per test session.

A plain module, not a conftest. Both builders are idempotent on a folder, so every test module that
asks gets the same folder under the session's base temp dir and only the first one pays.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

LANGS = ("en", "de", "sw")
"""Languages the tiny tokenizer is trained on (other scripts would be mostly <unk>)."""
TASKS = ("xnli", "panx", "xquad", "xcopa", "tatoeba", "mewslix", "lareqa")
"""Tasks of the synthetic benchmark: one of every format and every retrieval pool rule."""


def build_assets(tmp_path_factory) -> Path:
    """Folder with tiny/ (model + tokenizer) and synth/ (benchmark); built once per session."""
    from hpcxlt.demo.synth import SynthSettings, write_benchmark
    from hpcxlt.demo.tiny import TinySpec, build_tiny

    root = tmp_path_factory.getbasetemp() / "eval-assets"
    build_tiny(root / "tiny", TinySpec(vocab_size=400, sentences_per_language=40), languages=LANGS)
    write_benchmark(root / "synth", SynthSettings(train_size=256, eval_size=24), tasks=TASKS)
    return root


def data_config(assets: Path, **overrides):
    """Local data from the synthetic benchmark in `assets`, features cached there (fields of DataConfig override)."""
    from hpcxlt.config.schema import DataConfig

    return DataConfig(
        **{"source": "local", "root": str(assets / "synth"), "cache_dir": str(assets / "cache"), **overrides}
    )


@contextmanager
def one_thread():
    """Run torch on one thread: on a shared 2-core machine, tiny models are many times faster so."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Fixtures shared by the evaluation test modules (imported by name: `from tests.eval_assets import assets, ...`).
@pytest.fixture(scope="module")
def eval_threads():
    """One torch thread for the whole module (use with autouse in the importing module)."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    return build_assets(tmp_path_factory)


@pytest.fixture(scope="module")
def tokenizer(assets):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(assets / "tiny")
