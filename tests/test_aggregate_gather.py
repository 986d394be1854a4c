"""The gather step on one rank: partitioning, launcher detection, merging, bad and duplicate records."""

from __future__ import annotations

import json

import pytest

from hpcxlt.aggregate.gather import gather_records, partition
from hpcxlt.aggregate.mpi_world import World, launcher_world, world
from hpcxlt.store.run_dir import list_result_names
from tests.aggregate_fixture import make_run, record, record_path

ARMS = [{"name": "none"}, {"name": "en", "tasks": ["mnli"]}]


def _score(arm, target, seed, lang, split):
    return 70.0 + 2 * (arm == "en") + seed + 0.5 * ["en", "de", "sw"].index(lang)


def _run(tmp_path, layout="files"):
    return make_run(
        tmp_path / layout, arms=ARMS, targets={"xnli": ["en", "de", "sw"]}, seeds=[1, 2], score=_score, layout=layout
    )


@pytest.mark.parametrize("n", [0, 1, 7, 10, 1001])
@pytest.mark.parametrize("size", [1, 3, 4])
def test_partition_covers_every_item_once_in_order(n, size):
    blocks = [list(range(n))[partition(n, size, rank)] for rank in range(size)]
    assert sum(blocks, []) == list(range(n))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_launcher_detection():
    assert launcher_world({}) is None
    assert launcher_world({"PMI_RANK": "2", "PMI_SIZE": "4"}) == (2, 4)
    assert launcher_world({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "3"}) == (1, 3)
    # srun step: rank and step size from Slurm
    assert launcher_world(
        {"SLURM_PROCID": "1", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "8"}
    ) == (1, 2)
    # the batch script itself is one process whatever the allocation's task count
    assert launcher_world({"SLURM_PROCID": "0", "SLURM_NTASKS": "8"}) is None
    # mpiexec inside an allocation: MPI variables win
    assert launcher_world({"PMI_RANK": "1", "PMI_SIZE": "2", "SLURM_PROCID": "0", "SLURM_STEP_ID": "0"}) == (1, 2)


def test_no_launcher_means_one_rank_without_mpi():
    w = world({})
    assert (w.rank, w.size, w.comm, w.idle) == (0, 1, None, False)


def test_single_rank_gather_groups_every_record(tmp_path):
    store = _run(tmp_path)
    got, _ = gather_records(store.results_dir, qa_convention="em_f1", world=World(rank=0, size=1))
    assert got.n_records == 12 and len(got.files) == 12 and not got.problems
    cells = got.values[("test", "en", "xnli")]
    assert cells[(2, "sw")].score == 70.0 + 2 + 2 + 1.0
    assert got.where(cells[(2, "sw")]).endswith("results/eval.en.xnli.s2.sw.test.json")


def test_job_files_and_jsonl_shards_give_the_same_scores_as_one_file_per_record(tmp_path):
    one = World(rank=0, size=1)
    files, _ = gather_records(_run(tmp_path, "files").results_dir, qa_convention="em_f1", world=one)
    shards, _ = gather_records(_run(tmp_path, "jsonl").results_dir, qa_convention="em_f1", world=one)
    jobs, _ = gather_records(_run(tmp_path, "jobs").results_dir, qa_convention="em_f1", world=one)
    assert len(shards.files) == 2
    # what eval jobs write: one file per eval job (arm x target x seed here), every language in it
    assert [f.rsplit("/", 1)[1] for f in jobs.files] == [
        f"eval.{a}.xnli.s{s}.jsonl" for a in ("en", "none") for s in (1, 2)
    ]
    flat = lambda g: {k: {c: e.score for c, e in v.items()} for k, v in g.values.items()}  # noqa: E731
    assert flat(files) == flat(shards) == flat(jobs)


def test_corrupt_file_is_reported_and_the_rest_is_kept(tmp_path):
    store = _run(tmp_path)
    bad = record_path(store, "eval.en.xnli.s1.de", "test")
    bad.write_text(bad.read_text()[:25])
    got, _ = gather_records(store.results_dir, qa_convention="em_f1", world=World(rank=0, size=1))
    [problem] = got.problems
    assert problem.path == str(bad) and problem.key == "eval.en.xnli.s1.de" and "not valid JSON" in problem.message
    assert got.n_records == 11 and (1, "de") not in got.values[("test", "en", "xnli")]


def test_duplicates_same_score_are_ignored_conflicting_ones_drop_the_cell(tmp_path):
    store = _run(tmp_path)
    same = record("en", "xnli", 1, "en", "test", _score("en", "xnli", 1, "en", "test"))
    other = record("none", "xnli", 2, "de", "test", 11.0)
    (store.results_dir / "zz-extra.jsonl").write_text(json.dumps(same) + "\n" + json.dumps(other) + "\n")
    got, _ = gather_records(store.results_dir, qa_convention="em_f1", world=World(rank=0, size=1))
    assert len(got.duplicates) == 1 and "zz-extra.jsonl:1 repeats" in got.duplicates[0]
    [conflict] = got.problems
    assert conflict.key == "eval.none.xnli.s2.de" and "conflicting records" in conflict.message
    assert (2, "de") not in got.values[("test", "none", "xnli")]
    assert (1, "en") in got.values[("test", "en", "xnli")]


def test_temporary_and_foreign_files_are_not_listed(tmp_path):
    (tmp_path / ".eval.none.xnli.s1.de.test.json").write_text("{")  # a hidden temporary
    (tmp_path / "README.txt").write_text("hi")
    (tmp_path / "b.jsonl").write_text("")
    (tmp_path / "a.json").write_text("{}")
    assert list_result_names(tmp_path) == ["a.json", "b.jsonl"]
    assert list_result_names(tmp_path / "missing") == []
