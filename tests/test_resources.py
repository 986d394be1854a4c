"""The resource planner's arithmetic (hpcxlt/grid/resources.py, memory.py, activations.py, disk.py, makespan.py) held
against real models, DeepSpeed's own estimators, the ZeRO and activation papers, and hand-worked DAGs."""

from __future__ import annotations

import os
import random

import pytest

from hpcxlt.config import TrainConfig
from hpcxlt.grid.activations import activation_bytes
from hpcxlt.grid.disk import (
    StageDisk,
    checkpoint_bytes,
    checkpoints_in_flight,
    export_bytes,
    feature_cache_bytes,
    grid_disk,
    prediction_bytes,
)
from hpcxlt.grid.makespan import DagJob, makespan
from hpcxlt.grid.memory import (
    GIB,
    TrainingSetup,
    fit_advice,
    gpu_memory,
    model_state_bytes,
    setup_from_train,
)
from hpcxlt.grid.resources import (
    XLMR_LARGE,
    ModelShape,
    largest_layer_params,
    multitask_parameter_count,
    parameter_count,
)

AUTO_CLASS = {
    "retrieval": "AutoModel",
    "classification": "AutoModelForSequenceClassification",
    "tagging": "AutoModelForTokenClassification",
    "qa": "AutoModelForQuestionAnswering",
    "multiple_choice": "AutoModelForMultipleChoice",
}
SMALL = {
    "vocab_size": 101,
    "hidden_size": 24,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 40,
    "max_position_embeddings": 34,
    "type_vocab_size": 1,
}


def _hf_model(format: str, config: dict, *, num_labels: int = 3, eager: bool = False):
    import transformers

    kwargs = {"num_labels": num_labels} if format in ("classification", "tagging") else {}
    if eager:
        kwargs["attn_implementation"] = "eager"
    cfg = transformers.XLMRobertaConfig(**config, **kwargs)
    return getattr(transformers, AUTO_CLASS[format]).from_config(cfg)


def _numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------- counts
def test_shape_from_config_reads_hugging_face_keys():
    import transformers

    config = transformers.XLMRobertaConfig(**SMALL).to_dict()
    assert ModelShape.from_config(config) == ModelShape(
        vocab_size=101, hidden_size=24, num_layers=2, num_heads=4, intermediate_size=40, max_positions=34
    )
    with pytest.raises(ValueError, match="num_hidden_layers"):
        ModelShape.from_config({k: v for k, v in SMALL.items() if k != "num_hidden_layers"})


@pytest.mark.parametrize("format", sorted(AUTO_CLASS))
@pytest.mark.parametrize("sizes", [SMALL, {**SMALL, "hidden_size": 32, "intermediate_size": 16, "type_vocab_size": 2}])
def test_parameter_count_equals_real_models(format, sizes):
    model = _hf_model(format, sizes, num_labels=7)
    assert parameter_count(ModelShape.from_config(sizes), head=format, num_labels=7) == _numel(model)


def test_multitask_count_equals_hpcxlt_multitask_model():
    import transformers

    from hpcxlt.model.heads import MultiTaskModel, make_head

    heads = [("classification", 3), ("multiple_choice", 2), ("tagging", 9), ("qa", 2), ("retrieval", 2)]
    encoder = transformers.AutoModel.from_config(transformers.XLMRobertaConfig(**SMALL))
    model = MultiTaskModel(
        encoder,
        {f"t{i}": make_head(fmt, SMALL["hidden_size"], num_labels=n) for i, (fmt, n) in enumerate(heads)},
    )
    assert multitask_parameter_count(ModelShape.from_config(SMALL), heads) == _numel(model)


@pytest.mark.parametrize("format", ["retrieval", "classification", "qa"])
def test_xlmr_large_counts_on_the_meta_device(format):
    import torch

    from hpcxlt.grid.resources import FORMATS

    assert format in FORMATS
    sizes = {
        "vocab_size": 250_002,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "max_position_embeddings": 514,
        "type_vocab_size": 1,
    }
    assert ModelShape.from_config(sizes) == XLMR_LARGE
    with torch.device("meta"):
        model = _hf_model(format, sizes)
    count = parameter_count(XLMR_LARGE, head=format, num_labels=3)
    assert count == _numel(model)
    assert 558e6 < count < 561e6  # the published ~560M (558.8M without the pooler)


def _ds():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.runtime.zero import stage3, stage_1_and_2

    return stage_1_and_2, stage3


def test_largest_layer_equals_deepspeeds_count():
    _, stage3 = _ds()
    for format in ("retrieval", "classification", "tagging"):
        for sizes in (SMALL, {**SMALL, "vocab_size": 7, "intermediate_size": 96}):
            model = _hf_model(format, sizes, num_labels=200)
            total, largest = stage3.model_to_params(model)
            shape = ModelShape.from_config(sizes)
            assert largest_layer_params(shape, head=format, num_labels=200) == largest
            assert parameter_count(shape, head=format, num_labels=200) == total


# ---------------------------------------------------------------------------------------- model states
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8, 64])
def test_model_states_equal_deepspeeds_estimators(precision, world_size):
    stage_1_and_2, stage3 = _ds()
    params = parameter_count(XLMR_LARGE, head="classification")
    largest = largest_layer_params(XLMR_LARGE, head="classification")
    _, zero2 = stage_1_and_2.estimate_zero2_model_states_mem_needs(
        params, num_gpus_per_node=world_size, cpu_offload=False
    )
    _, zero3, _ = stage3.estimate_zero3_model_states_mem_needs(
        params, largest, num_gpus_per_node=world_size, cpu_offload=False
    )
    ours2 = model_state_bytes(params, zero_stage=2, precision=precision, world_size=world_size)
    ours3 = model_state_bytes(params, zero_stage=3, precision=precision, world_size=world_size, largest_layer=largest)
    # DeepSpeed truncates its float to int: equal to the byte
    assert abs(ours2.total - zero2) < 1
    assert abs(ours3.total - zero3) < 1
    # and per node: 2 nodes x world_size/2 GPUs is the same world
    if world_size % 2 == 0:
        _, per_node = stage_1_and_2.estimate_zero2_model_states_mem_needs(
            params, num_gpus_per_node=world_size // 2, num_nodes=2, cpu_offload=False
        )
        assert abs(ours2.total - per_node) < 1


def test_model_states_against_the_zero_paper():
    """Rajbhandari et al. 2020, Figure 1: Ψ = 7.5B, N_d = 64, K = 12: 120 GB baseline, 31.4 GB with
    P_os, 16.6 GB with P_os+g, 1.9 GB with P_os+g+p. The paper leaves out the fp32 copy of the gradient
    partition that DeepSpeed (and we) count, and at stage 3 DeepSpeed counts the gradient partition at
    4 bytes where the paper's is 2: +2Ψ/N."""
    psi, n = 7.5e9, 64
    paper = {0: 120e9, 1: 31.4e9, 2: 16.6e9, 3: 1.9e9}  # rounded to 0.1 GB in the figure
    for stage, expected in paper.items():
        states = model_state_bytes(int(psi), zero_stage=stage, precision="bf16", world_size=n)
        grads_16bit = 2 * psi / n if stage == 3 else 0  # the paper's 2-byte gradient partition at stage 3
        assert states.total - states.fp32_grads + grads_16bit == pytest.approx(expected, rel=0.02), stage


def test_fp32_model_states():
    p, n = 1000, 4
    by_stage = {s: model_state_bytes(p, zero_stage=s, precision="fp32", world_size=n) for s in range(4)}
    assert by_stage[0].total == 16 * p  # torch AdamW: params, grads, two moments
    assert by_stage[0].master_params == by_stage[0].fp32_grads == 0
    # stages 1-2 keep the fp32 master clone, and their step flattens the gradient partition into a new
    # tensor beside the gradients (DeepSpeed 0.19 stage_1_and_2.py, step(): flatten(averaged_gradients));
    # bench/large_cpu.py measures that copy on XLM-R Large (docs/benchmarks.md)
    assert by_stage[1].total == 8 * p + 16 * p / n
    assert by_stage[2].total == 4 * p + 20 * p / n
    assert by_stage[2].master_params == 4 * p / n
    # stage 3 has no master clone (engine.share_fp32_partition) but flattens its gradient partition as well
    # (DeepSpeed 0.19 stage3.py, _prepare_fp32_grad_for_sub_group: flatten(averaged_gradients))
    stage3 = model_state_bytes(p, zero_stage=3, precision="fp32", world_size=n, largest_layer=10)
    assert stage3.total == 20 * p / n + 80 and stage3.master_params == 0
    with pytest.raises(ValueError, match="auto"):
        model_state_bytes(p, zero_stage=2, precision="auto")


# ----------------------------------------------------------------------------------------- activations
def test_activations_follow_korthikanti():
    """Korthikanti et al. 2022, Sec. 4.1: sbh(34 + 5as/h) bytes per layer in 16 bits (f = 4h)."""
    s, b, h, a, layers = 512, 8, 1024, 16, 24
    act = activation_bytes(XLMR_LARGE, seq_len=s, micro_batch_size=b, precision="bf16", head="classification")
    assert act.per_layer == s * b * h * (34 + 5 * a * s / h)
    assert act.layers == layers * act.per_layer
    # fp32: every 2-byte tensor doubles, the 1-byte dropout masks stay: 66 sbh + 9 a s^2 b
    fp32 = activation_bytes(XLMR_LARGE, seq_len=s, micro_batch_size=b, precision="fp32", head="classification")
    assert fp32.per_layer == 66 * s * b * h + 9 * a * s * s * b
    no_scores = activation_bytes(
        XLMR_LARGE, seq_len=s, micro_batch_size=b, precision="bf16", head="classification", attention_scores=False
    )
    assert no_scores.per_layer == 34 * s * b * h
    ckpt = activation_bytes(
        XLMR_LARGE, seq_len=s, micro_batch_size=b, precision="bf16", head="classification", gradient_checkpointing=True
    )
    assert ckpt.layers == 2 * s * b * h * layers + act.per_layer
    mc = activation_bytes(XLMR_LARGE, seq_len=s, micro_batch_size=2, precision="bf16", head="multiple_choice")
    assert (
        mc.per_layer
        == activation_bytes(
            XLMR_LARGE, seq_len=s, micro_batch_size=8, precision="bf16", head="classification"
        ).per_layer
    )
    tagging = activation_bytes(
        XLMR_LARGE, seq_len=s, micro_batch_size=b, precision="bf16", head="tagging", num_labels=17
    )
    assert tagging.head == 3 * s * b * h + 4 * s * b * 17


@pytest.mark.parametrize("format", ["classification", "tagging", "qa"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_activations_match_what_autograd_saves(format, checkpointing):
    """Every tensor autograd keeps for backward (unique storages, parameters excluded) of a small eager
    XLM-R in fp32 on the CPU, whose dropout keeps float masks (mask_bytes=4). With checkpointing the
    forward keeps the layer inputs; the one recomputed layer comes during backward, outside the count."""
    import torch

    torch.manual_seed(0)
    sizes = {**SMALL, "vocab_size": 500, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 3}
    sizes["max_position_embeddings"] = 80
    model = _hf_model(format, sizes, num_labels=5, eager=True)
    model.train()
    if checkpointing:
        getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)()
    s, b = 64, 4
    ids = torch.randint(5, 500, (b, s))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    estimate = activation_bytes(
        ModelShape.from_config(sizes),
        seq_len=s,
        micro_batch_size=b,
        precision="fp32",
        head=format,
        num_labels=5,
        gradient_checkpointing=checkpointing,
        mask_bytes=4,
    )
    expected = estimate.total - (estimate.per_layer if checkpointing else 0)
    assert expected == pytest.approx(sum(saved.values()), rel=0.03)


# --------------------------------------------------------------------------------------------- fitting
def _setup(**changes) -> TrainingSetup:
    base = {
        "shape": XLMR_LARGE,
        "head": "qa",
        "precision": "bf16",
        "zero_stage": 2,
        "world_size": 1,
        "micro_batch_size": 8,
        "grad_accum": 4,
        "max_length": 512,
    }
    return TrainingSetup(**{**base, **changes})


def _gib(setup: TrainingSetup, reserve: float = 2.0) -> float:
    return gpu_memory(setup).total_gib + reserve


def test_fit_advice_names_the_smallest_change():
    setup = _setup()
    assert fit_advice(setup, _gib(setup) + 0.1) is None
    # between what micro-batch 4 and 8 need: halving fits
    gpu = round((_gib(_setup(micro_batch_size=4)) + _gib(setup)) / 2, 1)
    message = fit_advice(setup, gpu)
    assert message == (
        f"needs {_gib(setup):.1f} GiB per GPU, the site's GPUs have {gpu:g} GiB: micro_batch_size 8 -> 4 fits "
        f"({_gib(_setup(micro_batch_size=4)):.1f} of {gpu:g} GiB; grad_accum 4 -> 8 keeps the global batch)"
    )
    # micro-batch 1 does not fit but ZeRO-3 over 8 GPUs does: the stage is named, 3 and not 2 -> 2
    wide = _setup(micro_batch_size=1, zero_stage=1, world_size=8, precision="fp32", max_length=128)
    gpu = round(_gib(replace_stage(wide, 2)) + 0.05, 2)
    assert _gib(wide) > gpu
    assert fit_advice(wide, gpu) == (
        f"needs {_gib(wide):.1f} GiB per GPU, the site's GPUs have {gpu:g} GiB: zero_stage 1 -> 2 fits "
        f"({_gib(replace_stage(wide, 2)):.1f} of {gpu:g} GiB)"
    )
    # one GPU, micro-batch 1, long sequences: only gradient checkpointing
    single = _setup(micro_batch_size=1, max_length=4096)
    ckpt = TrainingSetup(**{**single.__dict__, "gradient_checkpointing": True})
    gpu = round(_gib(ckpt) + 0.05, 2)
    assert fit_advice(single, gpu) == (
        f"needs {_gib(single):.1f} GiB per GPU, the site's GPUs have {gpu:g} GiB: gradient checkpointing fits "
        f"({_gib(ckpt):.1f} of {gpu:g} GiB)"
    )
    message = fit_advice(setup, 4)
    assert message is not None and message.endswith("or GPUs with more memory")


def replace_stage(setup: TrainingSetup, stage: int) -> TrainingSetup:
    return TrainingSetup(**{**setup.__dict__, "zero_stage": stage})


def test_setup_from_train_config():
    train = TrainConfig(micro_batch_size=16, grad_accum=2, max_length=256, zero_stage=3, precision="auto")
    setup = setup_from_train(train, XLMR_LARGE, head="tagging", world_size=4, num_labels=7)
    assert (setup.precision, setup.zero_stage, setup.micro_batch_size, setup.max_length) == ("bf16", 3, 16, 256)
    assert setup.world_size == 4 and setup.num_labels == 7 and setup.grad_accum == 2
    # XLM-R Large, ZeRO-2 bf16 on one GPU: 20 bytes per parameter of model states
    states = gpu_memory(_setup(zero_stage=2)).model_states
    assert states.total == 20 * parameter_count(XLMR_LARGE, head="qa")
    assert 10 < states.total / GIB < 11


# ------------------------------------------------------------------------------------------------ disk
def test_disk_figures():
    p = 1_000_000
    assert export_bytes(p, tokenizer_bytes=10) == 4 * p + 10
    assert checkpoint_bytes(p, zero_stage=0, precision="fp32") == 12 * p
    assert checkpoint_bytes(p, zero_stage=0, precision="bf16") == 14 * p
    assert checkpoint_bytes(p, zero_stage=2, precision="bf16") == 14 * p
    assert checkpoint_bytes(p, zero_stage=1, precision="fp32") == 16 * p
    assert checkpoint_bytes(p, zero_stage=3, precision="fp16") == 12 * p
    assert checkpoints_in_flight(2) == 4 and checkpoints_in_flight(2, select_best=False) == 3
    assert feature_cache_bytes(1000, 100, format="tagging") == 1000 * 100 * 24
    assert prediction_bytes(10, bytes_per_example=3) == 30
    stages = [
        StageDisk(stage="intermediate", cells=3, running=8, export_bytes=100, checkpoint_bytes=10, in_flight=4),
        StageDisk(stage="target", cells=30, running=8, export_bytes=100, checkpoint_bytes=10, in_flight=3),
    ]
    disk = grid_disk(stages, features=7, predictions=5)
    # exports: 33 cells x 100; checkpoints: min(8, 3) x 4 x 10 + 8 x 3 x 10
    assert (disk.exports, disk.checkpoints, disk.features, disk.predictions) == (3300, 120 + 240, 7, 5)
    assert disk.total == 3300 + 360 + 12


# -------------------------------------------------------------------------------------------- makespan
def _job(id: str, hours: float, *deps: str, gpus: int = 1) -> DagJob:
    return DagJob(id=id, gpus=gpus, hours=hours, deps=deps)


def test_makespan_hand_worked():
    # A(2h) -> B(3h), C(4h) alone. Bottom levels: A 5, C 4, B 3.
    jobs = [_job("A", 2), _job("B", 3, "A"), _job("C", 4)]
    # 1 GPU: A 0-2, then C (level 4) before B (3): C 2-6, B 6-9. Wall 9 = all hours; critical path 5.
    one = makespan(jobs, 1)
    assert (one.wall_hours, one.critical_path_hours, one.gpu_hours) == (9, 5, 9)
    # 2 GPUs: A and C at 0; B 2-5; C ends 4. Wall 5 = the critical path.
    assert makespan(jobs, 2).wall_hours == 5
    # Priority matters. X(1h) -> Y(10h), Z1 and Z2 (5h) alone, 2 GPUs. Levels X 11, Y 10, Z 5.
    # 0: X and Z1 start. 1: X ends, Y (10) goes before Z2 (5): Y 1-11. 5: Z1 ends, Z2 5-10. Wall 11.
    # (First come, first served would run Z1, Z2 first, then X 5-6, Y 6-16: wall 16.)
    prio = makespan([_job("Z1", 5), _job("Z2", 5), _job("X", 1), _job("Y", 10, "X")], 2)
    assert (prio.wall_hours, prio.critical_path_hours, prio.gpu_hours) == (11, 11, 21)
    # A 4-GPU job behind three 1-GPU jobs on 4 GPUs. Levels: small 2h, big 1h. 0: the smalls take 3 GPUs,
    # big does not fit in 1 and waits; 2: smalls end, big 2-3. Wall 3; GPU-hours 3 x 2 + 4 x 1 = 10.
    multi = makespan([_job("big", 1, gpus=4), _job("s1", 2), _job("s2", 2), _job("s3", 2)], 4)
    assert (multi.wall_hours, multi.critical_path_hours, multi.gpu_hours) == (3, 2, 10)
    # a job that does not fit lets a smaller one start: big needs 2 of 2 GPUs, one is busy 0-5
    backfill = makespan([_job("long", 5), _job("big", 1, gpus=2), _job("short", 1)], 2)
    # levels: long 5, big 1, short 1 (rank order: big before short). 0: long; big does not fit; short 0-1.
    # 5: long ends, big 5-6. Wall 6.
    assert backfill.wall_hours == 6


def test_makespan_properties():
    rng = random.Random(7)
    for trial in range(40):
        gpus = rng.choice([1, 2, 3, 8])
        jobs = []
        for i in range(rng.randint(1, 40)):
            deps = tuple(sorted({f"j{rng.randrange(i)}" for _ in range(rng.randint(0, 3))})) if i else ()
            jobs.append(_job(f"j{i}", rng.choice([0.5, 1, 2, 7.25]), *deps, gpus=rng.randint(1, gpus)))
        result = makespan(jobs, gpus)
        assert result.wall_hours >= max(result.critical_path_hours, result.gpu_hours / gpus) - 1e-9, trial
        assert result.wall_hours <= sum(job.hours for job in jobs) + 1e-9, trial
    for gpus, k in ((1, 5), (4, 3), (32, 10)):
        independent = makespan([_job(f"u{i}", 1) for i in range(gpus * k)], gpus)
        assert independent.wall_hours == independent.gpu_hours / gpus == k
        assert independent.critical_path_hours == 1


def test_makespan_refuses_bad_dags():
    with pytest.raises(ValueError, match="cycle"):
        makespan([_job("a", 1, "b"), _job("b", 1, "a")], 2)
    with pytest.raises(ValueError, match="unknown job"):
        makespan([_job("a", 1, "nope")], 2)
    with pytest.raises(ValueError, match="needs 3 GPUs"):
        makespan([_job("a", 1, gpus=3)], 2)
    assert makespan([], 4).wall_hours == 0
