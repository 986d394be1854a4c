"""The DeepSpeed config built from TrainConfig, precision choice, optimizer groups and the lr schedule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hpcxlt.config import TrainConfig
from hpcxlt.train.engine import (
    BASE_CONFIG_ENV,
    STAGE3_REDUCE_BUCKET_SIZE,
    ds_config,
    linear_schedule,
    load_base_config,
    param_groups,
    resolve_precision,
    warmup_steps,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_ds_config_per_stage(stage: int):
    train = TrainConfig(micro_batch_size=4, grad_accum=8, max_grad_norm=1.0, zero_stage=stage)
    cfg = ds_config(train, precision="fp32", persistence_threshold=0)
    assert cfg["train_micro_batch_size_per_gpu"] == 4 and cfg["gradient_accumulation_steps"] == 8
    assert "train_batch_size" not in cfg  # DeepSpeed derives it from the world size
    assert cfg["gradient_clipping"] == 1.0
    assert cfg["zero_optimization"]["stage"] == stage
    assert "optimizer" not in cfg and "scheduler" not in cfg  # torch AdamW + our schedule are passed in
    assert ("stage3_param_persistence_threshold" in cfg["zero_optimization"]) == (stage == 3)
    if stage == 3:
        assert cfg["zero_optimization"]["stage3_param_persistence_threshold"] == 0
    # ZeRO-3's bucket is ours unless a base config names one (STAGE3_REDUCE_BUCKET_SIZE); others: DeepSpeed's
    assert cfg["zero_optimization"].get("reduce_bucket_size") == (STAGE3_REDUCE_BUCKET_SIZE if stage == 3 else None)
    if stage == 3:
        base = {"zero_optimization": {"reduce_bucket_size": 1000}}
        assert ds_config(train, precision="fp32", base=base)["zero_optimization"]["reduce_bucket_size"] == 1000
    assert "bf16" not in cfg and "fp16" not in cfg
    json.dumps(cfg)


def test_ds_config_precision_sections():
    train = TrainConfig()
    assert ds_config(train, precision="bf16")["bf16"] == {"enabled": True}
    assert ds_config(train, precision="fp16")["fp16"]["enabled"] is True
    assert ds_config(TrainConfig(max_grad_norm=0.0), precision="fp32")["gradient_clipping"] == 0.0


def test_precision_on_this_machine():
    if torch.cuda.is_available():
        pytest.skip("CPU-only expectations")
    assert resolve_precision("auto") == "fp32"
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("bf16") == "bf16"  # DeepSpeed's bf16 optimizer runs on the CPU too
    with pytest.raises(ValueError, match="'fp16' needs a GPU"):
        resolve_precision("fp16")
    assert resolve_precision("auto", "cuda") in ("bf16", "fp16")


def test_schedule_warms_up_then_decays_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1.0)
    sched = linear_schedule(opt, warmup_steps=warmup_steps(TrainConfig(warmup_ratio=0.1), 20), total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)  # 2 warm-up steps
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert opt.param_groups[0]["lr"] == 0.0


def test_no_weight_decay_on_biases_and_layer_norm():
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    model = XLMRobertaForSequenceClassification(
        XLMRobertaConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
    )
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("weight") and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert any("LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_shipped_gpu_configs_merge_into_valid_deepspeed_configs(stage: int):
    from deepspeed.runtime.config import DeepSpeedConfig

    base = load_base_config(REPO / "configs" / "deepspeed" / f"zero{stage}.json")
    assert base["zero_optimization"]["stage"] == stage
    train = TrainConfig(micro_batch_size=4, grad_accum=2, zero_stage=stage, max_grad_norm=0.5)
    cfg = ds_config(train, precision="bf16", base=base)
    # the experiment config wins over the file; the file's tuning survives
    assert cfg["gradient_clipping"] == 0.5 and cfg["train_micro_batch_size_per_gpu"] == 4
    assert cfg["zero_optimization"]["reduce_bucket_size"] == base["zero_optimization"]["reduce_bucket_size"]
    # DeepSpeed's own parser accepts the result (one process: train_batch_size = 4 x 2)
    parsed = DeepSpeedConfig({**cfg, "train_batch_size": 8})
    assert parsed.zero_optimization_stage == stage and parsed.bfloat16_config.enabled
    # on a CPU the precision is fp32 whatever the file says, and another stage drops ZeRO-3-only keys
    cpu = ds_config(TrainConfig(zero_stage=1), precision="fp32", base=base)
    assert "bf16" not in cpu and not any(k.startswith("stage3_") for k in cpu["zero_optimization"])


def test_base_config_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "ds.json"
    path.write_text('{"zero_optimization": {"reduce_bucket_size": 1000}}')
    monkeypatch.setenv(BASE_CONFIG_ENV, str(path))
    assert load_base_config() == {"zero_optimization": {"reduce_bucket_size": 1000}}
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        load_base_config()
    monkeypatch.delenv(BASE_CONFIG_ENV)
    assert load_base_config() is None
