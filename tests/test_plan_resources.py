"""`hpcxlt plan --site`: GPU memory per training stage, disk and makespan, and `submit` refusing what cannot fit.

The figures are held against the grid layer's functions (`grid/memory.py`, `disk.py`, `makespan.py`, tested
against their oracles in tests/test_resources.py) computed here independently, and the makespan of a tiny
grid against a hand-worked schedule.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from hpcxlt.config import arm_train_config, target_train_config
from hpcxlt.grid.disk import checkpoint_bytes, checkpoints_in_flight, export_bytes
from hpcxlt.grid.experiment import load_experiment
from hpcxlt.grid.memory import GIB, fit_advice, gpu_memory, setup_from_train
from hpcxlt.grid.plan import plan
from hpcxlt.grid.resources import XLMR_LARGE, ModelShape, parameter_count
from tests.launch_assets import run_cli
from tests.paths import CONFIGS, ROOT

SMALL = {  # an XLM-R-shaped config.json, as `save_pretrained` writes it (the keys the planner reads)
    "model_type": "xlm-roberta",
    "vocab_size": 1000,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": 130,
    "type_vocab_size": 1,
}


def _config(tmp_path, model: str, seeds=(1,), **sections) -> str:
    """A tiny grid: baseline + one English arm, XNLI (trained on en, evaluated on en and de) and Tatoeba
    (retrieval only, de and sw), one seed; round cost figures so the hours can be worked by hand."""
    data = {
        "name": "fit-test",
        "model": {"name_or_path": model},
        "arms": [{"name": "none"}, {"name": "en", "tasks": ["mnli"]}],
        "targets": {"tasks": ["xnli", "tatoeba"], "languages": {"xnli": ["en", "de"], "tatoeba": ["de", "sw"]}},
        "seeds": list(seeds),
        "intermediate": {"epochs": 1, "micro_batch_size": 4, "grad_accum": 2, "max_length": 128},
        "target": {"epochs": 1, "micro_batch_size": 8, "grad_accum": 1, "max_length": 128},
        "cost": {
            "train_samples_per_second": 1.0,
            "eval_samples_per_second": 1.0,
            "train_examples": {"mnli": 7200, "xnli": 3600},
            "eval_examples_per_language": 1800,
        },
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _site(tmp_path, name="gpu.yaml", **keys) -> str:
    data = {
        "name": "gpu-site",
        "defaults": {"partition": "gpu", "time": "04:00:00", "gpus_per_node": 2, "cpus_per_task": 4},
        "stages": {"eval": {"gpus_per_node": 1}, "aggregate": {"gpus_per_node": 0}},
        **keys,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path, monkeypatch):
    """No Hugging Face cache: a hub id has no config.json here unless a test puts one there."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    return tmp_path / "hf-hub"


@pytest.fixture
def small_model(tmp_path):
    folder = tmp_path / "small-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMALL))
    return folder


def _json_plan(*argv) -> dict:
    code, out = run_cli("plan", *argv, "--json")
    assert code == 0
    return json.loads(out)


# -------------------------------------------------------------------------------------------- plan --site
def test_plan_site_prints_memory_disk_and_makespan_as_the_grid_functions_compute_them(tmp_path, small_model):
    config = _config(tmp_path, str(small_model))
    site = _site(tmp_path, gpu_memory_gb=16, gpus=4, disk_quota_gb=100)
    code, text = run_cli("plan", config, "--site", site)
    assert code == 0
    cfg = load_experiment(config)
    shape = ModelShape.from_config(SMALL)
    # memory: the arm trains MNLI (classification, 3 labels) on 2 GPUs, bf16 ('auto' on a GPU site), ZeRO-2
    inter = setup_from_train(
        arm_train_config(cfg, cfg.arm("en")), shape, head="classification", world_size=2, num_labels=3
    )
    target = setup_from_train(
        target_train_config(cfg, "xnli"), shape, head="classification", world_size=2, num_labels=3
    )
    assert inter.precision == "bf16" and inter.zero_stage == 2
    for stage, setup in (("intermediate", inter), ("target", target)):
        need = gpu_memory(setup).total_gib + 2.0
        line = next(line for line in text.splitlines() if line.strip().startswith(stage) and "GPU(s)/job" in line)
        assert f"= {need:.1f} GiB" in line and "fits 16 GiB" in line
        assert f"{gpu_memory(setup).model_states.total / GIB:.1f} model states" in line
        assert f"micro-batch {setup.micro_batch_size} x 128 tokens" in line
    assert f"shape from {small_model / 'config.json'}" in text
    # disk: 1 intermediate + 2 target cells keep their exports; checkpoints in flight of the cells that can
    # run at once (4 GPUs / 2 per job = 2, fewer than the cells where the stage has fewer)
    params = parameter_count(shape, head="classification", num_labels=3)
    exports = 3 * export_bytes(params)
    in_flight = checkpoints_in_flight(2, select_best=False)  # keep_last 2, eval_every 0: no best checkpoint
    checkpoints = (1 + 2) * in_flight * checkpoint_bytes(params, zero_stage=2, precision="bf16")
    assert f"exports {exports / GIB:,.1f} (3 training cells)" in text
    assert f"checkpoints in flight {checkpoints / GIB:,.1f} (cells at once: intermediate 1, target 2)" in text
    assert "of 100 GiB, fits" in text
    # makespan: below, by hand
    assert "makespan: on 4 GPUs ~ " in text and "total 8.0 GPU-h" in text


def test_makespan_of_a_tiny_grid_worked_by_hand(tmp_path, small_model):
    """Jobs and GPU-hours (1 example/s; mnli 7,200 examples, xnli 3,600, 1,800 per evaluated language):
    I = inter.en (2); Tn, Te = target.{none,en}.xnli (1 each, Te after I); four eval jobs of two languages,
    1 each: Xn after Tn, Xe after Te, Rn (tatoeba of the pretrained model, no deps), Re after I.
    Critical path I -> Te -> Xe = 4 h; 8 GPU-hours.

    One GPU per job (--gpus alone). On 1 GPU: 8 h. On 2: [0,2] I, [0,1] Tn, [1,2] Xn or Rn, [2,3] Te and a
    1-h job, [3,4] Xe and the last: 4 h. On 8: the critical path, 4 h.

    The site's 2-GPU training jobs on 2 GPUs (eval jobs 1 GPU): I runs 1 h on both, Tn and Te 0.5 h each on
    both one after the other, then the four 1-h evaluations two at a time: 1 + 0.5 + 0.5 + 2 = 4 h; the
    critical path I (1) + Te (0.5) + Xe (1) = 2.5 h."""
    config = _config(tmp_path, str(small_model))
    for gpus, wall in ((1, 8.0), (2, 4.0), (8, 4.0)):
        figures = _json_plan(config, "--gpus", str(gpus))["resources"]["makespan"]
        assert figures == {"gpus": gpus, "wall_hours": wall, "critical_path_hours": 4.0, "gpu_hours": 8.0}
    figures = _json_plan(config, "--site", _site(tmp_path), "--gpus", "2")["resources"]["makespan"]
    assert figures == {"gpus": 2, "wall_hours": 4.0, "critical_path_hours": 2.5, "gpu_hours": 8.0}
    # the GPU-hours are the cost model's: plan's own estimate
    assert _json_plan(config, "--gpus", "2")["gpu_hours_total"] == 8.0
    # a training job wider than the GPUs the sweep may use: said, not scheduled
    res = _json_plan(config, "--site", _site(tmp_path), "--gpus", "1")["resources"]
    assert res["makespan"] is None and "a job needs 2 GPUs, more than the 1" in res["makespan_note"]


def test_plan_json_carries_the_resource_figures(tmp_path, small_model):
    config = _config(tmp_path, str(small_model), target={"micro_batch_size": 64, "max_length": 512})
    site = _site(tmp_path, gpu_memory_gb=0.25, gpus=4, disk_quota_gb=0.01)
    res = _json_plan(config, "--site", site)["resources"]
    assert (res["site"], res["gpu_memory_gb"], res["gpus"], res["disk_quota_gb"]) == ("gpu-site", 0.25, 4, 0.01)
    assert res["model"]["published_shape"] is False
    shape = ModelShape.from_config(SMALL)
    assert res["model"]["parameters"] == parameter_count(shape, head="retrieval")
    cfg = load_experiment(config)
    setup = setup_from_train(target_train_config(cfg, "xnli"), shape, head="classification", world_size=2, num_labels=3)
    memory = res["memory"]["target"]
    assert memory["need_gib"] == round(gpu_memory(setup).total_gib + 2.0, 3)
    assert memory["activations_gib"] == round(gpu_memory(setup).activations.total / GIB, 3)
    assert memory["fits"] is False and memory["unfit"] == ["xnli"]
    assert fit_advice(setup, 0.25) in memory["advice"]
    assert set(res["disk"]) >= {"exports_gib", "checkpoints_gib", "features_gib", "predictions_gib", "total_gib"}
    assert res["disk"]["fits"] is False and res["disk"]["advice"].startswith("the disk estimate")
    assert res["makespan"]["gpu_hours"] == 8.0


def test_a_site_without_the_keys_still_plans(tmp_path):
    """No gpu_memory_gb, gpus or disk_quota_gb (and no config.json: XLM-R Large's shape, said so)."""
    config = _config(tmp_path, "FacebookAI/xlm-roberta-large")
    code, text = run_cli("plan", config, "--site", str(ROOT / "slurm" / "sites" / "local.yaml"))
    assert code == 0
    assert "XLM-R Large's published shape" in text
    assert "(set the site's gpu_memory_gb to check)" in text
    assert "fp32 ZeRO-2" in text  # a CPU site: 'auto' is fp32
    assert "makespan: set the site's gpus" in text
    res = _json_plan(config, "--site", str(ROOT / "slurm" / "sites" / "local.yaml"))["resources"]
    assert res["memory"]["target"]["fits"] is None and res["disk"]["fits"] is None and res["makespan"] is None
    assert res["model"]["parameters"] == parameter_count(XLMR_LARGE, head="retrieval")
    # and submit does not check it
    code, _ = run_cli(
        "submit",
        config,
        "--run-dir",
        str(tmp_path / "run"),
        "--site",
        str(ROOT / "slurm/sites/local.yaml"),
        "--dry-run",
    )
    assert code == 0


def test_the_shape_comes_from_the_hub_cache_when_a_copy_is_there(tmp_path, empty_hub_cache):
    from hpcxlt.config import ModelConfig
    from hpcxlt.launch.resources import model_shape

    repo = empty_hub_cache / "models--FacebookAI--xlm-roberta-large"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps(SMALL))
    shape, source, published = model_shape(ModelConfig(name_or_path="FacebookAI/xlm-roberta-large"))
    assert shape == ModelShape.from_config(SMALL) and not published and source.endswith("abc123/config.json")
    # another revision is not there: the published shape, said so
    shape, source, published = model_shape(ModelConfig(name_or_path="FacebookAI/xlm-roberta-large", revision="v2"))
    assert shape == XLMR_LARGE and published and "no config.json of FacebookAI/xlm-roberta-large" in source


def test_plan_site_stays_light_on_a_login_node():
    code = (
        "import sys, time; t = time.perf_counter();"
        "from hpcxlt.cli import main; rc = main(['plan', {config!r}, '--site', {site!r}, '--json']);"
        "heavy = [m for m in ('torch', 'deepspeed', 'transformers', 'datasets', 'submitit', 'mpi4py', 'pandas')"
        " if m in sys.modules];"
        "print('HEAVY', heavy, file=sys.stderr); sys.exit(rc)"
    ).format(config=str(CONFIGS / "phang2020.yaml"), site=str(ROOT / "slurm/sites/example-multinode-gpu.yaml"))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    assert "HEAVY []" in proc.stderr
    assert elapsed < 3.0, f"hpcxlt plan --site took {elapsed:.2f} s"
    res = json.loads(proc.stdout)["resources"]
    assert res["memory"]["intermediate"]["fits"] is True and res["makespan"]["gpus"] == 32


# --------------------------------------------------------------------------------------- refused at submit
def test_a_stage_that_cannot_fit_is_refused_at_submit_dry_run_with_the_knob(tmp_path, capsys):
    """XLM-R Large (no config.json: the published shape), bf16 ZeRO-2 on 2 GPUs, 32 x 256 tokens: the target
    stage needs more than a 16 GiB GPU; nothing is written."""
    config = _config(tmp_path, "FacebookAI/xlm-roberta-large", target={"micro_batch_size": 32, "max_length": 256})
    site = _site(tmp_path, gpu_memory_gb=16)
    run_dir = tmp_path / "run"
    code, out = run_cli("submit", config, "--run-dir", str(run_dir), "--site", site, "--dry-run")
    err = capsys.readouterr().err
    assert code == 2
    cfg = load_experiment(config)
    setup = setup_from_train(
        target_train_config(cfg, "xnli"), XLMR_LARGE, head="classification", world_size=2, num_labels=3
    )
    advice = fit_advice(setup, 16)
    assert advice is not None and "micro_batch_size 32 -> " in advice
    line = err.strip().splitlines()[-1]
    assert line == f"hpcxlt submit: error: {config}: target stage (xnli) {advice}; set it under target"
    assert not run_dir.exists() and "sbatch" not in out
    # plan says the same
    code, text = run_cli("plan", config, "--site", site)
    assert code == 0 and "DOES NOT FIT" in text and f"target stage (xnli) {advice}" in text


def test_resume_with_a_smaller_site_is_refused_too(tmp_path, capsys):
    from hpcxlt.store import RunStore

    config = _config(tmp_path, "FacebookAI/xlm-roberta-large", target={"micro_batch_size": 32, "max_length": 256})
    cfg = load_experiment(config)
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, plan(cfg))
    code, _ = run_cli("resume", str(store.root), "--site", _site(tmp_path, gpu_memory_gb=16), "--dry-run")
    assert code == 2
    assert "target stage (xnli) needs" in capsys.readouterr().err
    code, _ = run_cli("resume", str(store.root), "--site", _site(tmp_path, gpu_memory_gb=80), "--dry-run")
    assert code == 0


def test_a_disk_estimate_over_the_quota_is_refused_naming_the_biggest_term(tmp_path, capsys, small_model):
    # XLM-R Large's exports (10 seeds: 30 training cells x 2.1 GiB) over a 20 GiB quota; one training job at
    # a time per stage (2 GPUs, 2 per job) with keep_last 1: 2 x 2 checkpoints of 7.3 GiB in flight
    one = {"keep_last": 1}
    config = _config(tmp_path, "FacebookAI/xlm-roberta-large", seeds=range(1, 11), intermediate=one, target=one)
    site = _site(tmp_path, disk_quota_gb=20, gpus=2)
    code, _ = run_cli("submit", config, "--run-dir", str(tmp_path / "a"), "--site", site, "--dry-run")
    err = capsys.readouterr().err
    assert code == 2 and "exceeds the site's disk_quota_gb 20: the biggest term is exported models" in err
    assert "(30 training cells keep theirs)" in err
    assert not (tmp_path / "a").exists()
    # keep_last 6 with a best checkpoint: 8 checkpoints of 7.3 GiB in flight per cell, the biggest term
    config = _config(tmp_path, "FacebookAI/xlm-roberta-large", target={"keep_last": 6, "eval_every": 100})
    site = _site(tmp_path, disk_quota_gb=50, gpus=4)
    code, _ = run_cli("submit", config, "--run-dir", str(tmp_path / "b"), "--site", site, "--dry-run")
    err = capsys.readouterr().err
    assert code == 2 and "the biggest term is checkpoints in flight" in err and "lower keep_last (6)" in err
    params = parameter_count(XLMR_LARGE, head="classification", num_labels=3)
    per_cell = checkpoints_in_flight(6, select_best=True) * checkpoint_bytes(params, zero_stage=2, precision="bf16")
    figures = _json_plan(config, "--site", site)["resources"]["disk"]
    intermediate = checkpoints_in_flight(2, select_best=False) * checkpoint_bytes(
        params, zero_stage=2, precision="bf16"
    )
    assert figures["checkpoints_gib"] == round((2 * per_cell + intermediate) / GIB, 3)
    # a quota that holds it: submitted (dry run)
    code, _ = run_cli(
        "submit", config, "--run-dir", str(tmp_path / "c"), "--site", _site(tmp_path, disk_quota_gb=500), "--dry-run"
    )
    assert code == 0


def test_site_keys_are_validated(tmp_path):
    from hpcxlt.launch.site.profile import SiteError, load_site

    site = load_site(_site(tmp_path, gpu_memory_gb=79.6, gpus=32, disk_quota_gb=2000))
    assert (site.gpu_memory_gb, site.gpus, site.disk_quota_gb) == (79.6, 32, 2000.0)
    assert load_site(_site(tmp_path)).gpu_memory_gb is None
    for key, value in (("gpu_memory_gb", 0), ("gpus", -1), ("disk_quota_gb", -5)):
        with pytest.raises(SiteError, match=rf"{key}: must be > 0"):
            load_site(_site(tmp_path, **{key: value}))
    with pytest.raises(SiteError, match="gpus"):
        load_site(_site(tmp_path, gpus="many"))


def test_init_site_reads_gpu_memory_from_the_gres_type():
    from hpcxlt.launch.site.discover import Cluster, Partition, gpu_memory_gib, profile_text
    from hpcxlt.launch.site.profile import parse_site

    assert gpu_memory_gib("a100_80g") == 80 and gpu_memory_gib("a100-sxm4-40gb") == 40
    assert gpu_memory_gib("h100") == 79.6 and gpu_memory_gib("a100") is None and gpu_memory_gib(None) is None

    def cluster(kind):
        part = Partition(
            name="gpu",
            default=True,
            gpus_per_node=4,
            gpu_type=kind,
            cpus_per_node=32,
            mem_mb=None,
            time_limit="1-0",
            nodes=2,
        )
        return Cluster(partitions=[part])

    assert parse_site(yaml.safe_load(profile_text(cluster("h100"), "h")), "h.yaml").gpu_memory_gb == 79.6
    text = profile_text(cluster("a100"), "a")
    assert "# gpu_memory_gb: 80" in text and parse_site(yaml.safe_load(text), "a.yaml").gpu_memory_gb is None
