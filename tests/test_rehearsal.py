"""`hpcxlt submit --rehearse` (docs/rehearsal.md): the cuts as overrides, the calibration arithmetic, and a
local rehearsal of a tiny grid: every job runs, each training stage's first job is preempted, requeued and
resumed once, the aggregation runs, rehearsal.json holds the verdicts, rates and the real run's estimate,
and the real run's directory is never touched. (On the local Slurm cluster: tests/test_slurm_rehearsal.py.)"""

from __future__ import annotations

import json
import os

import pytest

from hpcxlt.config import arm_train_config, parse_config, target_train_config
from hpcxlt.grid.calibrate import MeasuredRates, calibrated_estimate
from hpcxlt.grid.cost import estimate
from hpcxlt.grid.plan import plan
from hpcxlt.launch.rehearsal import Cuts, check_apart, cut_overrides, default_dir, known_fix
from hpcxlt.store import RunStore
from hpcxlt.store.rehearsal import measured_rates, read_rehearsal
from tests.launch_assets import assets, experiment, run_cli, write_config  # noqa: F401  (fixture)


def _raw(tmp_path) -> dict:
    data = experiment(tmp_path, name="cuts")
    data["intermediate"].update(eval_every=100, save_every=50, max_steps=1000)
    data["target"].update(eval_every=0, max_steps=None, epochs=3)
    data["arms"][1]["train"] = {"max_steps": 500, "lr": 2e-5}
    data["targets"]["overrides"] = {"xnli": {"eval_every": 40, "keep_last": 3}}
    return data


def test_the_cuts_are_overrides_of_every_training_section_and_the_data_caps(tmp_path):
    raw = _raw(tmp_path)
    cut = cut_overrides(raw, Cuts(steps=3, eval_examples=5), world=2)
    assert cut == [
        "intermediate.max_steps=3",
        "intermediate.save_every=0",
        "intermediate.keep_last=1",
        "intermediate.eval_every=3",  # the config evaluates on dev: once, at the end
        "target.max_steps=3",
        "target.save_every=0",
        "target.keep_last=1",  # target.eval_every stays 0: the config never evaluates on dev there
        "arms.1.train.max_steps=3",
        "targets.overrides.xnli.keep_last=1",
        "targets.overrides.xnli.eval_every=3",
        "data.max_train_examples=48",  # 3 steps x 8 x 1 x 2 processes
        "data.max_eval_examples=5",  # min(5, the config's 24)
    ]
    cfg = parse_config(raw, cut)
    for train in (arm_train_config(cfg, cfg.arms[1]), target_train_config(cfg, "xnli"), cfg.intermediate):
        assert train.max_steps == 3 and train.save_every == 0 and train.keep_last == 1
    assert target_train_config(cfg, "xnli").eval_every == 3 and cfg.target.eval_every == 0
    assert arm_train_config(cfg, cfg.arms[1]).lr == 2e-5  # what is not cut stays
    # the grid is the same grid
    assert [c.key for c in plan(cfg).cells] == [c.key for c in plan(parse_config(_raw(tmp_path))).cells]


def test_a_rehearsal_directory_lies_apart_from_the_real_run(tmp_path):
    assert default_dir(tmp_path / "runs" / "lowres") == tmp_path / "runs" / "lowres.rehearsal"
    check_apart(tmp_path / "runs" / "lowres.rehearsal", tmp_path / "runs" / "lowres")
    for bad in (tmp_path / "runs" / "lowres", tmp_path / "runs" / "lowres" / "r", tmp_path / "runs"):
        with pytest.raises(ValueError, match="must lie apart"):
            check_apart(bad, tmp_path / "runs" / "lowres")


def test_known_failures_get_their_fix():
    assert "micro_batch_size" in known_fix("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB")
    assert "keep_last" in known_fix("OSError: [Errno 122] Disk quota exceeded")
    # the error heads.embed raises, as the lowres rehearsal with the tiny model logged it
    assert "eval.retrieval_layer" in known_fix("ValueError: layer 14 does not exist: the model has hidden states 0..2")
    assert known_fix("ValueError: something new") is None


def test_calibrated_gpu_hours_are_the_plans_examples_at_the_measured_rates(tmp_path):
    cfg = parse_config(_raw(tmp_path))
    grid = plan(cfg)
    rates = MeasuredRates(
        source="r",
        train_samples_per_second={"intermediate": 10.0},  # target not measured: the config's figure
        eval_samples_per_second=100.0,
        job_overhead_s={"eval": 36.0},
        gpus_per_job={"eval": 2},
    )
    base = {c.stage: c for c in estimate(cfg, grid)}
    got = {c.stage: c for c in calibrated_estimate(cfg, grid, rates)}
    assert got["intermediate"].gpu_hours == pytest.approx(base["intermediate"].samples / 10 / 3600)
    assert got["target"].measured is False
    assert got["target"].gpu_hours == pytest.approx(base["target"].gpu_hours)
    jobs = len(grid.stage_jobs("eval"))
    assert got["eval"].gpu_hours == pytest.approx(base["eval"].samples / 100 / 3600 + jobs * 36 * 2 / 3600)
    assert got["eval"].config_gpu_hours == base["eval"].gpu_hours


@pytest.mark.slow
def test_a_local_rehearsal_runs_every_job_with_one_requeue_per_training_stage(tmp_path, assets, capsys):
    data = experiment(assets, name="rehearse", targets={"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}})
    data["intermediate"].update(max_steps=400, eval_every=200)  # what the real run would do
    config = write_config(tmp_path, data)
    real = tmp_path / "runs" / "real"
    real.mkdir(parents=True)
    (real / "keep.txt").write_text("the real run's")
    before = sorted((p.relative_to(real), p.stat().st_mtime_ns) for p in real.rglob("*"))

    code, out = run_cli("submit", str(config), "--run-dir", str(real), "--local", "--rehearse", "--no-progress")
    assert code == 0, out
    assert sorted((p.relative_to(real), p.stat().st_mtime_ns) for p in real.rglob("*")) == before
    store = RunStore(default_dir(real))
    assert "rehearsal" in out and "PASSED" in out and "forced requeue inter.en.s1" in out
    record = read_rehearsal(store)
    assert record is not None
    settings, report = record["settings"], record["report"]
    assert settings["preempt"] == ["inter.en.s1", "target.none.xnli.s1"]
    assert "intermediate.max_steps=2" in settings["cut_overrides"]
    assert report["ok"] and report["finished"]
    assert [(s["stage"], s["verdict"]) for s in report["stages"]] == [
        ("intermediate", "passed"),
        ("target", "passed"),
        ("eval", "passed"),
        ("aggregate", "passed"),
    ]
    # every job ran: each cell has its done marker, the tables are written
    assert all(store.is_done(c.key) for c in store.load_plan().cells)
    assert store.tables_json.is_file()
    # one forced requeue per training stage: preempted after step 1 with its checkpoint, resumed from it
    for forced in report["requeues"]:
        assert forced["ok"], forced
        assert forced["attempts"] == 2 and forced["resumed_from"].endswith("step-1")
        events = [
            json.loads(line).get("event") for line in store.train_log_path(forced["job"]).read_text().splitlines()
        ]
        dev = ["eval"] if forced["job"].startswith("inter.") else []  # the real config evaluates there only
        assert [e for e in events if e] == ["start", "preempted", "resume", *dev, "end"]
    unforced = [c.key for c in store.load_plan().stage_cells("target") if c.key != "target.none.xnli.s1"]
    assert all(store.done_info(k)["resumed_from"] is None and store.done_info(k)["step"] == 2 for k in unforced)
    # the rates and the real run's estimate from them
    rates = report["rates"]
    assert rates["intermediate"]["seconds_per_step"] > 0 and rates["target"]["samples_per_second_per_gpu"] > 0
    assert rates["eval"]["examples_measured"] > 0 and rates["eval"]["seconds_per_example"] > 0
    rows = {r["stage"]: r for r in report["estimate"]["stages"]}
    assert rows["intermediate"]["samples"] == 400 * 8 and all(r["measured"] for r in rows.values())
    assert report["estimate"]["gpu_hours"] > 0
    # the store's reader gives `plan --calibrate` the same rates
    measured = measured_rates(store.root)
    assert measured.rate("intermediate") == rates["intermediate"]["samples_per_second_per_gpu"]
    assert measured.rate("eval") == rates["eval"]["samples_per_second_per_gpu"]
    # `hpcxlt plan --calibrate` prints the real grid's GPU-hours at those rates (and refuses a non-rehearsal)
    code, out = run_cli("plan", str(config), "--calibrate", str(store.root), "--json")
    planned = json.loads(out)
    assert code == 0 and planned["gpu_hours_from"] == f"rates measured by {store.root}"
    assert planned["gpu_hours_total"] == pytest.approx(report["estimate"]["gpu_hours"], abs=0.01)
    assert run_cli("plan", str(config), "--calibrate", str(real))[0] == 2
    # `hpcxlt status` of the rehearsal prints the table too
    code, out = run_cli("status", str(store.root))
    assert code == 0 and "forced requeue target.none.xnli.s1: preempted, requeued and resumed" in out
    # a rehearsal never goes into the real run's directory, and takes no --reuse-from
    code, _ = run_cli("submit", str(config), "--run-dir", str(real), "--rehearse", "--rehearsal-dir", str(real))
    assert code == 2
    assert os.listdir(real) == ["keep.txt"]


def test_the_wait_ends_when_only_an_aggregation_that_can_never_start_is_left():
    """Rehearsing lowres with the tiny model: Tatoeba's evaluations failed, and the aggregation job (afterok on
    every evaluation) would sit in the queue for ever; `submit --rehearse --wait` waited for it."""
    from hpcxlt.launch.rehearsal import never_starts

    def status(agg: str, **counts: int) -> dict:
        return {"aggregate": {"state": agg}, "counts": {"submitted": 0, "running": 0, "failed": 0, **counts}}

    assert never_starts(status("submitted", failed=3))
    assert not never_starts(status("submitted", failed=3, running=1))  # an evaluation may still fail or pass
    assert not never_starts(status("submitted", failed=3, submitted=2))
    assert not never_starts(status("submitted"))  # nothing failed: it starts when the last evaluation ends
    assert not never_starts(status("running", failed=3))
