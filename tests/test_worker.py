"""run_job, the code that runs on a node: never redoes work, refuses to run before its upstream, records
real failures with their log, counts requeues against the site's cap."""

from __future__ import annotations

import pytest

from hpcxlt.config import parse_config
from hpcxlt.grid.plan import plan
from hpcxlt.launch.execute.worker import JobError, note_requeue, run_job
from hpcxlt.store import RunStore
from tests.launch_assets import assets, experiment  # noqa: F401  (fixture)


def _run_dir(tmp_path, data) -> RunStore:
    cfg = parse_config(data)
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, plan(cfg))
    return store


def test_done_cells_are_never_redone(tmp_path):
    # no model, no data: run_job must return before touching them
    store = _run_dir(tmp_path, experiment(tmp_path))
    store.mark_done("target.none.xnli.s1", {"step": 4})
    before = store.done_info("target.none.xnli.s1")
    assert run_job(store.root, "target.none.xnli.s1") == {
        "job": "target.none.xnli.s1",
        "ran": [],
        "skipped": ["target.none.xnli.s1"],
    }
    assert store.done_info("target.none.xnli.s1") == before
    assert not store.model_dir("target.none.xnli.s1").exists()


def test_a_job_whose_upstream_is_not_done_refuses_to_start(tmp_path):
    store = _run_dir(tmp_path, experiment(tmp_path))
    store.set_state("inter.en.s1", "failed", error="boom")
    with pytest.raises(
        JobError,
        match=r"target.en.xnli.s1 cannot start: upstream job\(s\) not done: "
        r"inter.en.s1 \(failed\).*hpcxlt resume",
    ):
        run_job(store.root, "target.en.xnli.s1")
    assert store.state("target.en.xnli.s1")["state"] == "pending"  # not marked failed: nothing of it ran
    with pytest.raises(JobError, match=r"'eval.en.xnli' is not a job of .*plan.json"):
        run_job(store.root, "eval.en.xnli")


def test_a_real_error_marks_the_cells_failed_with_the_log_and_is_raised(tmp_path, assets):
    data = experiment(assets, eval={"batch_size": 32})
    data["targets"]["languages"]["xnli"] = ["en", "sw"]
    store = _run_dir(tmp_path, data)
    # eval.none.xnli.s1 needs the target model, which was never trained: the evaluation raises
    store.mark_done("target.none.xnli.s1", {"note": "marker without a model"})
    log = str(tmp_path / "job.log")
    with pytest.raises(Exception) as err:
        run_job(store.root, "eval.none.xnli.s1", job_id="4711_0", log_path=log)
    for key in ("eval.none.xnli.s1.en", "eval.none.xnli.s1.sw"):
        state = store.state(key)
        assert state["state"] == "failed" and state["log"] == log and state["job_id"] == "4711_0"
        assert state["error"].startswith(type(err.value).__name__) and state["attempts"] == 1
        assert "Traceback" not in state["error"] and state["traceback"]


def test_requeues_are_capped_by_the_site_profile(tmp_path):
    store = _run_dir(tmp_path, experiment(tmp_path))
    key = "inter.en.s1"
    store.set_state(key, "running", job_id="12", log="/logs/12_0_log.out")
    assert note_requeue(store.root, key, max_requeues=2, reason="preempted")
    assert store.state(key)["state"] == "submitted" and store.state(key)["requeues"] == 1
    assert note_requeue(store.root, key, max_requeues=2, reason="preempted")
    assert not note_requeue(store.root, key, max_requeues=2, reason="Slurm job 12 preempted or at its time limit")
    state = store.state(key)
    assert state["state"] == "failed" and state["log"] == "/logs/12_0_log.out"
    assert "requeued 2 times already (max_requeues=2" in state["error"]


def test_requeues_after_progress_do_not_count(tmp_path):
    """A preemptible job whose every attempt saves a newer checkpoint is never failed for being preempted."""
    from tests.test_checkpoint import fake_checkpoint

    store = _run_dir(tmp_path, experiment(tmp_path))
    key = "inter.en.s1"
    store.set_state(key, "running", job_id="12")
    for step in range(1, 6):  # five preemptions, each after one more checkpoint
        fake_checkpoint(store.checkpoints_dir(key), step * 10)
        assert note_requeue(store.root, key, max_requeues=2, reason="preempted")
        assert store.state(key)["requeues"] == 1 and store.state(key)["progress"] == step * 10
    assert note_requeue(store.root, key, max_requeues=2, reason="preempted")  # no progress: counts
    assert not note_requeue(store.root, key, max_requeues=2, reason="preempted")
