"""Grouping a plan into Slurm arrays: element-wise alignment, MaxArraySize splits, what resume resubmits.

Pure: no cluster needed. `alive` dicts stand for squeue's answer (job id -> state).
"""

import pytest

from hpcxlt.grid import plan
from hpcxlt.grid.experiment import load_experiment
from hpcxlt.launch.slurm.arrays import build_arrays, dependency, placeholder_ids
from hpcxlt.launch.slurm.pending import pending_work
from hpcxlt.store import RunStore
from tests.paths import CONFIGS


@pytest.fixture(scope="module")
def demo():
    cfg = load_experiment(CONFIGS / "demo.yaml")
    return cfg, plan(cfg)


def _check_alignment(grid, specs):
    """Every job waits for exactly its own upstream job(s): aftercorr task i <- upstream task i."""
    by_name = {s.name: s for s in specs}
    where = {key: (s.name, i) for s in specs for i, key in enumerate(s.jobs)}
    for spec in specs:
        for i, key in enumerate(spec.jobs):
            deps = set(grid.job(key).deps)
            waits = set()
            if spec.corr:
                waits.add(by_name[spec.corr].jobs[i])
            waits |= {by_name[name].jobs[idx] for name, idx in spec.after}
            assert waits == {d for d in deps if d in where}, (spec.name, key)
            # upstream is always submitted before
            for dep in deps & set(where):
                assert specs.index(by_name[where[dep][0]]) < specs.index(spec)


def test_demo_grid_arrays_align_element_wise(demo):
    _, grid = demo
    specs = build_arrays(grid, list(grid.jobs), max_array_size=1001)
    assert sorted(k for s in specs for k in s.jobs) == sorted(j.key for j in grid.jobs)  # each job exactly once
    _check_alignment(grid, specs)
    # one target array per target task over the intermediate array's (arm, seed) order
    inter = [s for s in specs if s.stage == "intermediate"]
    assert len(inter) == 1 and len(inter[0].jobs) == 6
    aligned_targets = [s for s in specs if s.stage == "target" and s.corr == inter[0].name]
    assert sorted(s.label for s in aligned_targets) == ["panx", "xnli", "xquad"]
    for s in aligned_targets:
        assert [k.split(".")[1] + k[-3:] for k in s.jobs] == [k.split(".")[1] + k[-3:] for k in inter[0].jobs]
    # baseline targets wait for nothing; nothing in this plan needs a one-off afterok job
    assert all(s.corr is None and not s.after for s in specs if s.stage == "target" and ".none." in s.jobs[0])
    assert not any(s.after for s in specs)


def test_a_target_after_its_prelude_is_aligned_with_the_prelude_array():
    grid = plan(load_experiment(CONFIGS / "phang2020.yaml"))
    specs = build_arrays(grid, list(grid.jobs), max_array_size=1001)
    _check_alignment(grid, specs)
    preludes = [s for s in specs if s.label == "xcopa(siqa first)"]
    assert preludes and all(s.stage == "target" for s in preludes)
    xcopa = [s for s in specs if s.label == "xcopa" and s.stage == "target"]
    assert {s.corr for s in xcopa} == {s.name for s in preludes}


def test_arrays_above_max_array_size_split_and_dependants_split_alike(demo):
    _, grid = demo
    specs = build_arrays(grid, list(grid.jobs), max_array_size=5)
    assert max(len(s.jobs) for s in specs) <= 5
    assert [len(s.jobs) for s in specs if s.stage == "intermediate"] == [5, 1]
    _check_alignment(grid, specs)
    # the piece of one element went in as a plain job: its dependants wait for it with afterok
    single = next(s for s in specs if s.stage == "intermediate" and len(s.jobs) == 1)
    ids = {s.name: placeholder_ids(s) for s in specs}
    follower = next(s for s in specs if s.corr == single.name)
    assert dependency(follower, ids) == f"afterok:@{single.name}"
    big = next(s for s in specs if s.stage == "intermediate" and len(s.jobs) == 5)
    assert dependency(next(s for s in specs if s.corr == big.name), ids) == f"aftercorr:@{big.name}"


def test_ragged_and_external_dependencies_wait_for_exactly_their_upstream_task(demo):
    _, grid = demo
    inter = grid.stage_jobs("intermediate")
    # resubmit all intermediate runs but only one target run: it cannot be aligned, it waits for its own task
    jobs = list(inter) + [grid.job("target.en_lowres.xnli.s2")]
    specs = build_arrays(grid, jobs, max_array_size=1001)
    lone = specs[-1]
    assert lone.jobs == ("target.en_lowres.xnli.s2",) and lone.corr is None
    index = specs[0].jobs.index("inter.en_lowres.s2")
    assert dependency(lone, {s.name: placeholder_ids(s) for s in specs}) == f"afterok:@intermediate.0_{index}"
    # an eval job whose target is still queued from an earlier submission waits for that job id
    ev = grid.job("eval.en.xnli.s1")
    specs = build_arrays(grid, [ev], external={"target.en.xnli.s1": "4711_3"}, max_array_size=1001)
    assert [s.jobs for s in specs] == [("eval.en.xnli.s1",)]
    assert dependency(specs[0], {}) == "afterok:4711_3"


def _store_with(tmp_path, cfg, grid):
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, grid)
    return store


def test_pending_work_skips_done_and_queued_and_waits_for_queued_upstream(tmp_path, demo):
    cfg, grid = demo
    store = _store_with(tmp_path, cfg, grid)
    for job in grid.jobs:  # everything submitted once as job 100_<i>
        for cell in job.cells:
            store.set_state(cell, "submitted", job_id=f"100_{grid.jobs.index(job)}")
    idx = {job.key: grid.jobs.index(job) for job in grid.jobs}
    store.mark_done("inter.en.s1")
    # target.en.xnli.s1 still queued; its eval job was scancelled; inter.en.s2 failed (gone from the queue)
    alive = {f"100_{i}": "PENDING" for key, i in idx.items() if key not in ("eval.en.xnli.s1", "inter.en.s2")}
    pending = pending_work(store, grid, alive, with_aggregate=False)
    resubmitted = [job.key for job in pending.jobs]
    # inter.en.s2 plus its queued dependants (they wait for a dead id), and the cancelled eval job
    downstream_of_s2 = [
        j.key
        for j in grid.jobs
        if j.deps and (j.deps[0] == "inter.en.s2" or (j.deps[0].startswith("target.en.") and j.deps[0].endswith(".s2")))
    ]
    assert set(resubmitted) == {"inter.en.s2", "eval.en.xnli.s1", *downstream_of_s2}
    assert sorted(pending.cancel) == sorted(f"100_{idx[k]}" for k in downstream_of_s2)
    assert pending.external == {"target.en.xnli.s1": f"100_{idx['target.en.xnli.s1']}"}
    # once everything resubmitted is recorded as queued, a second pass submits nothing
    for job in pending.jobs:
        for cell in job.cells:
            store.set_state(cell, "submitted", job_id=f"200_{idx[job.key]}")
        alive[f"200_{idx[job.key]}"] = "PENDING"
    assert pending_work(store, grid, alive, with_aggregate=False).jobs == []


def test_running_jobs_are_never_cancelled_and_aggregate_follows_resubmitted_evals(tmp_path, demo):
    cfg, grid = demo
    store = _store_with(tmp_path, cfg, grid)
    for i, job in enumerate(grid.jobs):
        for cell in job.cells:
            store.set_state(cell, "submitted", job_id=f"7_{i}")
    alive = {f"7_{i}": "RUNNING" for i in range(len(grid.jobs))}
    ev = next(i for i, j in enumerate(grid.jobs) if j.key == "eval.none.panx.s1")
    del alive[f"7_{ev}"]
    from hpcxlt.launch.record import set_aggregate_state

    set_aggregate_state(store, "submitted", job_id="8")
    alive["8"] = "PENDING"
    pending = pending_work(store, grid, alive, with_aggregate=True)
    assert [j.key for j in pending.jobs] == ["eval.none.panx.s1"] and not pending.cancel[:-1]
    target = next(i for i, j in enumerate(grid.jobs) if j.key == "target.none.panx.s1")
    assert pending.external == {"target.none.panx.s1": f"7_{target}"}  # still running: wait for it
    # the queued aggregation waits for the cancelled eval: it is replaced by one waiting for the new one
    assert pending.cancel == ["8"] and pending.aggregate
    assert (
        f"7_{ev}" not in pending.aggregate_external
        and len(pending.aggregate_external) == sum(1 for j in grid.jobs if j.stage == "eval") - 1
    )


def test_a_wave_takes_jobs_in_plan_order_whose_upstream_is_done_queued_or_in_the_wave(tmp_path, demo):
    from hpcxlt.launch.slurm.waves import split_wave

    cfg, grid = demo
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, grid)
    pending = pending_work(store, grid, {}, with_aggregate=True)
    wave, deferred = split_wave(store, pending, 7)
    assert len(wave.jobs) == 7 and deferred == len(pending.jobs) - 7 + 1  # + the aggregation, kept for the last wave
    taken = {job.key for job in wave.jobs}
    assert all(dep in taken for job in wave.jobs for dep in job.deps)  # nothing here is done or queued yet
    assert not wave.aggregate
    everything, rest = split_wave(store, pending, len(pending.jobs) + 1)
    assert rest == 0 and everything.aggregate and len(everything.jobs) == len(pending.jobs)


def test_arrays_go_in_side_by_side_only_when_none_waits_for_another_of_its_batch(demo):
    from hpcxlt.launch.slurm.arrays import aggregate_spec
    from hpcxlt.launch.slurm.submission import independent_batches

    _, grid = demo
    specs = build_arrays(grid, list(grid.jobs), max_array_size=3)  # small arrays: several per stage
    specs.append(aggregate_spec(specs, []))
    batches = independent_batches(specs)
    assert [spec for batch in batches for spec in batch] == specs  # every array, in order
    assert len(batches) < len(specs) and max(len(b) for b in batches) > 1
    for batch in batches:
        names = {spec.name for spec in batch}
        for spec in batch:
            assert not ({spec.corr} | {name for name, _ in spec.after} | set(spec.after_all)) & names
    position = {spec.name: index for index, batch in enumerate(batches) for spec in batch}
    for spec in specs:  # what an array waits for went in an earlier batch
        for upstream in {spec.corr} - {None} | {name for name, _ in spec.after} | set(spec.after_all):
            assert position[upstream] < position[spec.name]
