"""evaluate_cells on real run directories: which model a cell reads, one load per job, one record per
language and split, official-layout predictions that `hpcxlt score` re-scores to the same numbers,
done markers per language; and (slow) honest numbers from a tiny model trained by train_cell."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hpcxlt.config import parse_config
from hpcxlt.grid.plan import plan
from hpcxlt.store import RunStore
from hpcxlt.tasks.registry import get_task
from tests.eval_assets import assets, eval_threads  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]
RECORD_FIELDS = {
    "key",
    "arm",
    "target",
    "seed",
    "lang",
    "split",
    "metrics",
    "score",
    "n_examples",
    "checkpoint",
    "config_hash",
}


@pytest.fixture(scope="module", autouse=True)
def _threads(eval_threads):
    yield


def experiment(assets: Path, **eval_settings) -> dict:
    return {
        "name": "eval-run-test",
        "model": {"name_or_path": str(assets / "tiny")},
        "data": {"source": "local", "root": str(assets / "synth"), "cache_dir": str(assets / "cache")},
        "arms": [{"name": "none"}, {"name": "mnli", "tasks": ["mnli"]}],
        # every language of xnli and tatoeba: `hpcxlt score` scores a task only when all its languages are there
        "targets": {"tasks": ["xnli", "tatoeba", "mewslix"], "languages": {"mewslix": ["de"]}},
        "seeds": [1],
        "target": {
            "lr": 5e-4,
            "micro_batch_size": 16,
            "grad_accum": 1,
            "max_steps": 200,
            "save_every": 0,
            "zero_stage": 0,
            "precision": "fp32",
        },
        "eval": {"splits": ["dev", "test"], "batch_size": 16, **eval_settings},
    }


def run_dir(assets: Path, tmp_path: Path, **eval_settings):
    cfg = parse_config(experiment(assets, **eval_settings))
    p = plan(cfg)
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, p)
    return cfg, p, store


def job_cells(p, job_key: str):
    return [p.cell(key) for key in p.job(job_key).cells]


def rows(assets: Path, task: str, lang: str, split: str = "test") -> list[dict]:
    return [json.loads(line) for line in (assets / "synth" / task / lang / f"{split}.jsonl").read_text().splitlines()]


def hpcxlt_score(pred_dir: Path, label_dir: Path) -> dict:
    """`hpcxlt score --json --partial` as a user runs it."""
    out = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "score", str(pred_dir), "--labels", str(label_dir), "--json", "--partial"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def check_records(records: list[dict], store: RunStore, p) -> None:
    for record in records:
        assert set(record) == RECORD_FIELDS
        cell = p.cell(record["key"])
        assert (record["arm"], record["target"], record["seed"], record["lang"]) == (
            cell.arm,
            cell.target,
            cell.seed,
            cell.lang,
        )
        assert record["config_hash"] == cell.fingerprint
        assert 0 <= record["score"] <= 100 and all(0 <= v <= 100 for v in record["metrics"].values())
        # in its eval job's JSON-lines file, exactly once
        assert [r for r in store.cell_records(record["key"], p) if r["split"] == record["split"]] == [record]


# --------------------------------------------------------------------------------------------------
# Which model
# --------------------------------------------------------------------------------------------------
def test_each_eval_cell_reads_the_model_of_its_dependency(assets, tmp_path):
    from hpcxlt.evaluate.eval_job import model_source

    cfg, p, store = run_dir(assets, tmp_path)
    source = lambda key: model_source(cfg, p.cell(key), store)  # noqa: E731
    xnli = source("eval.mnli.xnli.s1.de")
    assert xnli.path == str(store.model_dir("target.mnli.xnli.s1")) and xnli.format == "classification"
    assert xnli.checkpoint == "cells/target.mnli.xnli.s1/model" and not xnli.trained_retrieval
    tatoeba = source("eval.mnli.tatoeba.s1.de")
    assert tatoeba.path == str(store.model_dir("inter.mnli.s1")) and tatoeba.checkpoint == "cells/inter.mnli.s1/model"
    assert tatoeba.format == "retrieval" and not tatoeba.trained_retrieval
    baseline = source("eval.none.tatoeba.s1.sw")
    assert baseline.path == str(assets / "tiny") and baseline.checkpoint == str(assets / "tiny")
    mewslix = source("eval.none.mewslix.s1.de")
    assert mewslix.path == str(store.model_dir("target.none.mewslix.s1")) and mewslix.trained_retrieval
    with pytest.raises(ValueError, match="not an eval cell"):
        model_source(cfg, p.cell("target.none.xnli.s1"), store)


def test_the_model_cache_keeps_one_model_and_reloads_only_for_another(assets, tmp_path):
    import shutil
    from dataclasses import replace

    from hpcxlt.evaluate.eval_job import ModelCache, ModelSource

    source = ModelSource(
        path=str(assets / "tiny"), revision=None, format="retrieval", checkpoint="tiny", trained_retrieval=False
    )
    cache = ModelCache()
    first = cache.get(source)
    assert cache.get(source) is first and cache.loads == 1
    assert not first.model.training and first.retrieval_layer is None
    shutil.copytree(assets / "tiny", tmp_path / "copy")
    other = cache.get(replace(source, path=str(tmp_path / "copy")))
    assert cache.loads == 2 and other is not first and cache.get(replace(source, path=str(tmp_path / "copy"))) is other


def test_a_trained_dual_encoder_is_read_at_the_layer_it_was_trained_on(assets, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from hpcxlt.evaluate.eval_job import ModelCache, inference_settings, model_source
    from hpcxlt.model.heads import MultiTaskModel, RetrievalHead

    cfg, p, store = run_dir(assets, tmp_path, retrieval_layer=2)
    folder = store.model_dir("target.none.mewslix.s1")
    # what train_cell exports for a retrieval target: the encoder plus heads.json naming the head's layer
    MultiTaskModel(AutoModel.from_pretrained(assets / "tiny"), {"mewslix": RetrievalHead(layer=1)}).save_pretrained(
        folder
    )
    AutoTokenizer.from_pretrained(assets / "tiny").save_pretrained(folder)
    loaded = ModelCache().get(model_source(cfg, p.cell("eval.none.mewslix.s1.de"), store))
    assert loaded.retrieval_layer == 1
    assert inference_settings(cfg, get_task("mewslix"), loaded).retrieval_layer == 1
    baseline = ModelCache().get(model_source(cfg, p.cell("eval.none.tatoeba.s1.de"), store))
    assert inference_settings(cfg, get_task("tatoeba"), baseline).retrieval_layer == 2  # eval.retrieval_layer


def test_cells_of_different_models_are_not_one_job(assets, tmp_path):
    from hpcxlt.evaluate.eval_job import evaluate_cells

    cfg, p, store = run_dir(assets, tmp_path)
    with pytest.raises(ValueError, match="must share arm, target and seed"):
        evaluate_cells(cfg, [p.cell("eval.none.xnli.s1.de"), p.cell("eval.none.tatoeba.s1.de")], store)


# --------------------------------------------------------------------------------------------------
# A job end to end (Tatoeba needs no training: the baseline reads the pretrained model)
# --------------------------------------------------------------------------------------------------
def test_a_job_loads_its_model_once_and_records_every_language(assets, tmp_path):
    from hpcxlt.evaluate.eval_job import ModelCache, evaluate_cells, submission_dir

    cfg, p, store = run_dir(assets, tmp_path)
    cells = job_cells(p, "eval.none.tatoeba.s1")
    models = ModelCache()
    records = evaluate_cells(cfg, cells, store, models=models)
    assert models.loads == 1
    # tatoeba has no dev split: one test record per language
    langs = get_task("tatoeba").languages
    assert [(r["lang"], r["split"]) for r in records] == [(lang, "test") for lang in langs]
    check_records(records, store, p)
    for record in records:
        assert record["metrics"].keys() == {"accuracy"} and record["score"] == record["metrics"]["accuracy"]
        assert record["n_examples"] == len(rows(assets, "tatoeba", record["lang"]))
        assert record["checkpoint"] == str(assets / "tiny")
        assert store.is_done(record["key"])
        assert store.done_info(record["key"])["splits"] == ["test"]
    pred_dir = submission_dir(store, "none", 1)
    files = sorted(f"test-{lang}.tsv" for lang in langs)
    assert sorted(path.name for path in (pred_dir / "tatoeba").iterdir()) == files
    assert sorted(path.name for path in (store.labels_dir / "tatoeba").iterdir()) == files
    scored = hpcxlt_score(pred_dir, store.labels_dir)["tasks"]["tatoeba"]["languages"]
    assert {lang: m["accuracy"] for lang, m in scored.items()} == pytest.approx(
        {r["lang"]: r["score"] for r in records}
    )

    # done cells are skipped: no model is even loaded
    again = ModelCache()
    assert evaluate_cells(cfg, cells, store, models=again) == [] and again.loads == 0


def test_a_rerun_evaluates_only_the_languages_not_done(assets, tmp_path):
    from hpcxlt.evaluate.eval_job import ModelCache, evaluate_cells

    cfg, p, store = run_dir(assets, tmp_path)
    store.mark_done("eval.none.tatoeba.s1.de")  # as if the job was preempted after German
    cells = [p.cell(f"eval.none.tatoeba.s1.{lang}") for lang in ("de", "sw")]
    records = evaluate_cells(cfg, cells, store, models=ModelCache())
    assert [r["key"] for r in records] == ["eval.none.tatoeba.s1.sw"]
    assert store.cell_records("eval.none.tatoeba.s1.de", p) == []
    # the rest of the job later: its file keeps Swahili and adds German
    (store.cell_dir("eval.none.tatoeba.s1.de") / "done.json").unlink()
    evaluate_cells(cfg, cells, store, models=ModelCache())
    job_file = store.job_results_path(p.job_of("eval.none.tatoeba.s1.de").key)
    assert [json.loads(line)["lang"] for line in job_file.read_text().splitlines()] == ["sw", "de"]


def test_tatoeba_of_an_intermediate_arm_reads_the_intermediate_encoder(assets, tmp_path):
    import torch
    from transformers import AutoTokenizer

    from hpcxlt.evaluate.eval_job import ModelCache, evaluate_cells
    from hpcxlt.model.heads import MultiTaskModel

    cfg, p, store = run_dir(assets, tmp_path)
    # what an intermediate cell exports: the multi-task model's encoder folder with heads and tokenizer
    torch.manual_seed(0)
    model = MultiTaskModel.from_tasks(str(assets / "tiny"), {"mnli": ("classification", 3)})
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight.mul_(0)  # every sentence embeds alike: ties everywhere
    model.save_pretrained(store.model_dir("inter.mnli.s1"))
    AutoTokenizer.from_pretrained(assets / "tiny").save_pretrained(store.model_dir("inter.mnli.s1"))
    store.mark_done("inter.mnli.s1")
    models = ModelCache()
    cells = lambda arm: [p.cell(f"eval.{arm}.tatoeba.s1.{lang}") for lang in ("de", "sw")]  # noqa: E731
    records = evaluate_cells(cfg, cells("mnli"), store, models=models)
    assert models.loads == 1 and {r["checkpoint"] for r in records} == {"cells/inter.mnli.s1/model"}
    baseline = evaluate_cells(cfg, cells("none"), store, models=ModelCache())
    # the zeroed encoder cannot tell sentences apart, the pretrained one can
    assert all(r["score"] < b["score"] for r, b in zip(records, baseline))


def test_a_missing_upstream_model_is_named(assets, tmp_path):
    from hpcxlt.evaluate.eval_job import ModelCache, evaluate_cells

    cfg, p, store = run_dir(assets, tmp_path)
    cells = job_cells(p, "eval.none.xnli.s1")
    with pytest.raises(RuntimeError, match="model of cell target.none.xnli.s1, which is not done"):
        evaluate_cells(cfg, cells, store, models=ModelCache())
    store.mark_done("target.none.xnli.s1")
    with pytest.raises(FileNotFoundError, match="target.none.xnli.s1 is marked done but holds no exported model"):
        evaluate_cells(cfg, cells, store, models=ModelCache())
    assert not list(store.result_files()) and not any(store.is_done(c.key) for c in cells)


def test_a_model_folder_without_a_trained_head_is_refused(assets, tmp_path):
    import shutil

    from hpcxlt.evaluate.eval_job import ModelCache, evaluate_cells

    cfg, p, store = run_dir(assets, tmp_path)
    shutil.copytree(assets / "tiny", store.model_dir("target.none.xnli.s1"))  # a pretrained model, no classifier
    store.mark_done("target.none.xnli.s1")
    with pytest.raises(ValueError, match="holds no trained weights for classifier"):
        evaluate_cells(cfg, job_cells(p, "eval.none.xnli.s1"), store, models=ModelCache())


def test_only_rank_zero_evaluates_under_a_multi_process_launcher(assets, tmp_path, monkeypatch):
    from hpcxlt.evaluate.eval_job import ModelCache, evaluate_cells

    cfg, p, store = run_dir(assets, tmp_path)
    for name, value in {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29999",
    }.items():
        monkeypatch.setenv(name, value)
    models = ModelCache()
    assert evaluate_cells(cfg, job_cells(p, "eval.none.tatoeba.s1"), store, models=models) == []
    assert models.loads == 0 and not list(store.result_files())


# --------------------------------------------------------------------------------------------------
# Honest numbers: a model trained by train_cell
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_trained_model_scores_far_above_chance_in_english(assets, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hpcxlt.evaluate.eval_job import ModelCache, evaluate_cells, submission_dir
    from hpcxlt.evaluate.predict import InferenceSettings, predict_split

    cfg, p, store = run_dir(assets, tmp_path)
    with socket.socket() as s:  # a free rendezvous port for the 1-process group DeepSpeed needs
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    out = subprocess.run(
        [sys.executable, str(REPO / "tests" / "cell_worker.py"), str(store.root), "target.none.xnli.s1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]

    models = ModelCache()
    records = evaluate_cells(cfg, job_cells(p, "eval.none.xnli.s1"), store, models=models)
    assert models.loads == 1
    langs = get_task("xnli").languages
    assert [(r["lang"], r["split"]) for r in records] == [(lang, split) for lang in langs for split in ("dev", "test")]
    check_records(records, store, p)
    score = {(r["lang"], r["split"]): r["score"] for r in records}
    assert score["en", "test"] > 70 and score["en", "dev"] > 70  # chance: 33.3 (three balanced classes)
    assert all(r["checkpoint"] == "cells/target.none.xnli.s1/model" for r in records)

    # test-split predictions in the official layout, re-scored by `hpcxlt score` to the same numbers
    pred_dir = submission_dir(store, "none", 1)
    assert sorted(path.name for path in (pred_dir / "xnli").iterdir()) == sorted(f"test-{lang}.tsv" for lang in langs)
    scored = hpcxlt_score(pred_dir, store.labels_dir)["tasks"]["xnli"]
    assert {lang: m["accuracy"] for lang, m in scored["languages"].items()} == pytest.approx(
        {lang: score[lang, "test"] for lang in langs}
    )
    assert scored["score"] == pytest.approx(sum(score[lang, "test"] for lang in langs) / len(langs))

    # length-sorted and fixed-order inference agree on the trained model too
    folder = store.model_dir("target.none.xnli.s1")
    model, tokenizer = (
        AutoModelForSequenceClassification.from_pretrained(folder).eval(),
        AutoTokenizer.from_pretrained(folder),
    )
    a, b = (
        predict_split(
            get_task("xnli"),
            "en",
            "test",
            model,
            tokenizer,
            cfg.data,
            InferenceSettings(batch_size=5, sort_by_length=s),
        )
        for s in (True, False)
    )
    assert a.predictions == b.predictions and len(set(a.predictions)) == 3
