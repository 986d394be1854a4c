"""train_cell on the tiny XLM-R and synthetic data: a multi-task intermediate cell and the target cells
after it, 2 processes under ZeRO-3; the exported models load without DeepSpeed; chaining carries the
intermediate encoder over with a new head."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hpcxlt.config import parse_config
from hpcxlt.grid.plan import plan
from hpcxlt.store import RunStore
from hpcxlt.train.cell_setup import cell_setup, intermediate_of

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"


def experiment(root: Path, *, stage: int = 3) -> dict:
    train = {
        "lr": 1e-3,
        "micro_batch_size": 8,
        "grad_accum": 1,
        "save_every": 4,
        "zero_stage": stage,
        "precision": "fp32",
    }
    return {
        "name": "train-run-test",
        "model": {"name_or_path": str(root / "tiny")},
        "data": {"source": "local", "root": str(root / "synth"), "cache_dir": str(root / "cache")},
        "arms": [
            {"name": "none"},
            {
                "name": "mt",
                "tasks": ["mnli", "masakhaner2"],
                "languages": {"masakhaner2": ["sw", "yo"]},
                "examples": {"masakhaner2": 50},
                "sampling": {"rule": "temperature", "temperature": 2.0},
            },
        ],
        "targets": {"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}},
        "seeds": [1],
        "intermediate": {**train, "max_steps": 10, "eval_every": 5},
        "target": {**train, "max_steps": 6},
    }


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """A tiny model and a small synthetic benchmark for the three tasks."""
    from hpcxlt.demo.synth import SynthSettings, write_benchmark
    from hpcxlt.demo.tiny import TinySpec, build_tiny

    root = tmp_path_factory.mktemp("assets")
    build_tiny(root / "tiny", TinySpec(vocab_size=400, sentences_per_language=40), languages=("en", "sw", "yo", "de"))
    write_benchmark(root / "synth", SynthSettings(train_size=64, eval_size=32), tasks=("mnli", "masakhaner2", "xnli"))
    return root


def test_cell_setup_merges_arm_and_target_settings(tmp_path: Path):
    cfg = parse_config(experiment(tmp_path))
    cells = {c.key: c for c in plan(cfg).cells}
    inter = cell_setup(cfg, cells["inter.mt.s1"])
    assert inter.multi_task and [s.name for s in inter.specs] == ["mnli", "masakhaner2"]
    assert inter.languages == {"mnli": ("en",), "masakhaner2": ("sw", "yo")}
    assert inter.train.max_steps == 10 and inter.train.eval_every == 5
    target = cell_setup(cfg, cells["target.mt.xnli.s1"])
    assert not target.multi_task and target.languages == {"xnli": ("en",)} and target.train.max_steps == 6
    assert intermediate_of(cells["target.mt.xnli.s1"]) == "inter.mt.s1"
    assert intermediate_of(cells["target.none.xnli.s1"]) is None
    with pytest.raises(ValueError, match="not a training stage"):
        cell_setup(cfg, next(c for c in cells.values() if c.stage == "eval"))


def test_a_done_cell_is_not_trained_again(tmp_path: Path):
    from hpcxlt.train.run import train_cell

    cfg = parse_config(experiment(tmp_path))
    p = plan(cfg)
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, p)
    cell = next(c for c in p.cells if c.key == "target.none.xnli.s1")
    store.mark_done(cell.key, {"step": 6})
    train_cell(cfg, cell, store)  # no model, no data: it must return before touching them
    assert store.done_info(cell.key)["step"] == 6
    assert not store.checkpoints_dir(cell.key).exists()


def _encoder_state(folder: Path) -> dict:
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    return {k.removeprefix("roberta."): v for k, v in state.items() if not k.startswith(("lm_head", "classifier"))}


def run_cells(store: RunStore, *keys: str, timeout: float = 400) -> subprocess.CompletedProcess:
    """tests/cell_worker.py under torchrun with 2 processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    return subprocess.run(
        [
            str(TORCHRUN),
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            str(REPO / "tests" / "cell_worker.py"),
            str(store.root),
            *keys,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@pytest.mark.deepspeed
@pytest.mark.slow
def test_missing_data_fails_every_rank_instead_of_hanging(assets: Path, tmp_path: Path):
    raw = experiment(assets, stage=2)
    (tmp_path / "empty").mkdir()
    raw["data"] = {**raw["data"], "root": str(tmp_path / "empty")}
    cfg = parse_config(raw)
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, plan(cfg))
    out = run_cells(store, "target.none.xnli.s1", timeout=180)
    assert out.returncode != 0
    log = out.stdout + out.stderr
    # every rank reads its data before the process group exists, so none waits in a rendezvous for a rank
    # that has failed: the first to fail names the missing file, and the launcher ends the job; a rank
    # slower to start may get the launcher's SIGTERM before its own error, so that is allowed too
    assert "DataNotFoundError: no local data for task 'xnli'" in log, log[-4000:]
    assert set(re.findall(r"rank\s*:\s*(\d+) \(local_rank", log)) == {"0", "1"}, log[-4000:]
    assert not store.is_done("target.none.xnli.s1")


@pytest.mark.deepspeed
@pytest.mark.slow
def test_intermediate_then_targets_on_two_processes_zero3(assets: Path, tmp_path: Path):
    import torch

    cfg = parse_config(experiment(assets, stage=3))
    p = plan(cfg)
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, p)
    out = run_cells(store)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]

    inter, base, chained = "inter.mt.s1", "target.none.xnli.s1", "target.mt.xnli.s1"
    for key in (inter, base, chained):
        assert store.is_done(key), key
        assert not store.checkpoints_dir(key).exists()  # deleted once the model is exported

    # intermediate: the rule, realized counts per task/language, loss per task, dev-loss model selection
    events = [json.loads(line) for line in store.train_log_path(inter).read_text().splitlines()]
    start = events[0]
    assert start["event"] == "start" and start["sampling"]["rule"] == "temperature" and start["world_size"] == 2
    assert set(start["sampling"]["probabilities"]) == {"mnli:en", "masakhaner2:sw", "masakhaner2:yo"}
    # the arm's budget: 50 MasakhaNER sentences of the 2 x 64, 25 per language, the same fixed subset in every seed
    assert start["examples"] == {"masakhaner2": {"sw": 25, "yo": 25}}
    assert start["stream_sizes"]["masakhaner2:sw"] == start["stream_sizes"]["masakhaner2:yo"] == 25
    assert start["stream_sizes"]["mnli:en"] == 64
    steps = [e for e in events if "loss" in e]
    assert [e["step"] for e in steps] == list(range(1, 11))
    assert {t for e in steps for t in e["loss_per_task"]} == {"mnli", "masakhaner2"}
    assert all(e["samples_per_s"] > 0 and e["tokens_per_s"] > 0 for e in steps)
    evals = [e for e in events if e.get("event") == "eval"]
    assert [e["step"] for e in evals] == [5, 10]
    done = store.done_info(inter)
    assert sum(c["batches"] for c in done["counts"].values()) == 10
    # selection on the dev *metric* (XTREME's protocol): MNLI accuracy on en, MasakhaNER F1 on sw (no en), mean
    for e in evals:
        assert set(e["dev"]) == {"mnli:en", "masakhaner2:sw"} and all(0 <= v <= 100 for v in e["dev"].values())
        assert e["metric"] == pytest.approx(sum(e["dev"].values()) / 2)
    best = max(evals, key=lambda e: (e["metric"], -e["step"]))  # ties: the first evaluation stays the best
    assert done["selection"] == {
        "by": "metric",
        "step": best["step"],
        "metric": pytest.approx(best["metric"]),
        "stopped_early": False,
    }
    assert done["checkpoint"] == f"step-{best['step']}"
    # live curves: the cell's TensorBoard event files, read back with tensorboard's own reader
    from tests.test_tracking import read_scalars

    curves = read_scalars(store.cell_dir(inter) / "tensorboard")
    assert [step for step, _ in curves["train/loss"]] == list(range(1, 11))
    assert [step for step, _ in curves["dev/metric"]] == [5, 10]
    assert [v for _, v in curves["dev/metric"]] == pytest.approx([e["metric"] for e in evals])
    assert {
        "train/lr",
        "train/grad_norm",
        "speed/samples_per_s",
        "speed/tokens_per_s",
        "train/loss/mnli",
        "dev/mnli:en",
        "dev/masakhaner2:sw",
    } <= set(curves)

    # the exported models load with plain transformers (no DeepSpeed)
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from hpcxlt.model.heads import MultiTaskModel

    multi = MultiTaskModel.from_pretrained(store.model_dir(inter))
    assert set(multi.heads) == {"mnli", "masakhaner2"}
    # the two ranks split the dev batches (ZeRO-3): the exported (selected) model, evaluated by one
    # process on every batch, scores what the ranks logged at its step (the path end to end; that the
    # ranks' gathered predictions equal one process's, one by one, is tests/test_predict.py's)
    from types import SimpleNamespace

    from hpcxlt.train.selection import dev_metric

    setup = cell_setup(cfg, p.cell(inter))
    single = dev_metric(
        cfg,
        setup.specs,
        setup.languages,
        AutoTokenizer.from_pretrained(store.model_dir(inter)),
        multi_task=True,
        max_length=setup.train.max_length,
        doc_stride=setup.train.doc_stride,
    )
    again = single(SimpleNamespace(module=multi, global_step=best["step"]))
    assert again["dev"] == pytest.approx(best["dev"]) and again["metric"] == pytest.approx(best["metric"])
    AutoModel.from_pretrained(store.model_dir(inter))
    target = AutoModelForSequenceClassification.from_pretrained(store.model_dir(chained))
    tokenizer = AutoTokenizer.from_pretrained(store.model_dir(chained))
    logits = target(**tokenizer(["a b c"], return_tensors="pt")).logits
    assert logits.shape == (1, 3)

    # chaining: the target run starts from the intermediate encoder with a new head, and says so
    start = json.loads(store.train_log_path(chained).read_text().splitlines()[0])
    assert start["init_from"]["cell"] == inter and start["init_from"]["checkpoint"] == done["checkpoint"]
    assert store.done_info(chained)["init_from"]["cell"] == inter and store.done_info(base)["init_from"] is None
    from hpcxlt.train.cell_model import build_cell_model

    setups = {key: cell_setup(cfg, p.cell(key)) for key in (base, chained)}
    labels = {"xnli": setups[base].specs[0].label_names}
    start_chained, _, info = build_cell_model(cfg, p.cell(chained), store, setups[chained], labels)
    start_base, _, _ = build_cell_model(cfg, p.cell(base), store, setups[base], labels)
    assert info["cell"] == inter
    intermediate_encoder = _encoder_state(store.model_dir(inter))
    pretrained_encoder = _encoder_state(assets / "tiny")
    chained_state = start_chained.state_dict()
    for key, tensor in intermediate_encoder.items():
        if f"roberta.{key}" in chained_state:
            assert torch.equal(chained_state[f"roberta.{key}"], tensor), key
    moved = [
        k
        for k in pretrained_encoder
        if k in intermediate_encoder and not torch.equal(intermediate_encoder[k], pretrained_encoder[k])
    ]
    assert len(moved) > 10  # intermediate training changed the encoder, so the equality above means something
    # the head is new: the same fresh initialization as the baseline's (same seed), nothing from the intermediate
    base_state = start_base.state_dict()
    for key in [k for k in chained_state if k.startswith("classifier.")]:
        assert torch.equal(chained_state[key], base_state[key]), key


@pytest.mark.slow
def test_a_target_continues_its_prelude_whole_model(tmp_path: Path):
    """XTREME-R's XCOPA recipe: SIQA first, then COPA from the SIQA model, head included."""
    import yaml

    from hpcxlt.demo.synth import SynthSettings, write_benchmark
    from hpcxlt.demo.tiny import TinySpec, build_tiny

    build_tiny(tmp_path / "tiny", TinySpec(vocab_size=300, sentences_per_language=30), languages=("en", "et"))
    write_benchmark(tmp_path / "synth", SynthSettings(train_size=32, eval_size=16), tasks=("siqa", "xcopa"))
    data = experiment(tmp_path, stage=0)
    data.update(
        arms=[{"name": "none"}],
        targets={"tasks": ["xcopa"], "languages": {"xcopa": ["et"]}, "preludes": {"xcopa": ["siqa"]}},
    )
    config = tmp_path / "prelude.yaml"
    config.write_text(yaml.safe_dump(data))
    from tests.launch_assets import subprocess_env

    env = subprocess_env(DS_ACCELERATOR="cpu", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "submit", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    store = RunStore(tmp_path / "run")
    prelude = json.loads(store.train_log_path("target.none.xcopa.s1.siqa").read_text().splitlines()[0])
    assert prelude["event"] == "start" and list(prelude["stream_sizes"]) == ["siqa:en"]
    info = store.done_info("target.none.xcopa.s1")
    assert info["init_from"]["cell"] == "target.none.xcopa.s1.siqa" and info["init_from"]["whole_model"]
    start = json.loads(store.train_log_path("target.none.xcopa.s1").read_text().splitlines()[0])
    assert list(start["stream_sizes"]) == ["xcopa:en"]
    assert store.is_done("eval.none.xcopa.s1.et")
