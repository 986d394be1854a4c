"""`hpcxlt prepare`: what a plan reads, fetched and validated once, written for offline compute nodes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpcxlt.cli import main
from hpcxlt.config import parse_config
from hpcxlt.data.prepare import Need, plan_needs, prepare, prepared_config
from hpcxlt.grid.experiment import load_experiment
from tests.launch_assets import assets, experiment, subprocess_env, write_config  # noqa: F401  (fixture)
from tests.paths import CONFIGS, ROOT


def test_the_demo_plan_needs_what_its_jobs_read():
    needs = set(plan_needs(load_experiment(CONFIGS / "demo.yaml")))
    expected = {Need("mnli", "en", "train"), Need("squad", "en", "train")}  # arms en, en_lowres
    expected |= {Need("masakhaner2", lang, "train") for lang in ("sw", "yo", "ha")}
    expected |= {Need("wikiann_highres", lang, "train") for lang in ("de", "es", "fr")}  # en_highres, the control
    expected |= {Need(task, "en", "train") for task in ("xnli", "panx", "xquad")}  # tatoeba has none
    for task, langs in {
        "xnli": "en de sw ur",
        "panx": "en de sw yo",
        "xquad": "en de ar",
        "tatoeba": "de sw tl",
    }.items():
        expected |= {Need(task, lang, "test") for lang in langs.split()}
    assert needs == expected  # no eval_every: no dev splits; eval.splits: [test]


def test_the_research_plans_need_dev_data_candidates_preludes_and_every_lareqa_language():
    needs = set(plan_needs(load_experiment(CONFIGS / "lowres.yaml")))
    assert Need("siqa", "en", "train") in needs and Need("siqa", "en", "dev") in needs  # XCOPA's prelude
    assert Need("mewslix", "*", "candidates") in needs and Need("mewslix", "en", "dev") in needs
    assert {Need("lareqa", lang, "test") for lang in ("ar", "de", "zh")} <= needs
    assert Need("mnli", "en", "dev") in needs  # eval_every: the English dev split of a training language
    assert Need("sib200", "az", "dev") in needs and Need("sib200", "sw", "dev") not in needs  # its first language


def _run(config: Path, run_dir: Path, *overrides: str) -> None:
    env = subprocess_env()
    argv = [sys.executable, "-m", "hpcxlt", "submit", str(config), "--run-dir", str(run_dir), "--no-progress"]
    for override in overrides:
        argv += ["-o", override]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def _scores(run_dir: Path) -> dict:
    """(key, split) -> metrics of every record the eval jobs wrote (one JSON-lines file per job)."""
    records = [
        json.loads(line)
        for path in sorted((run_dir / "results").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    return {(r["key"], r["split"]): r["metrics"] for r in records}


@pytest.mark.slow
def test_a_grid_on_prepared_data_scores_as_on_its_source_and_a_second_prepare_does_nothing(tmp_path, assets, capsys):
    config = write_config(tmp_path, experiment(assets, name="prepare-test"))
    cfg = load_experiment(config)
    out = tmp_path / "prepared"
    capsys.readouterr()
    assert main(["prepare", str(config), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and sorted(report["fetched"]) == sorted(n.name for n in plan_needs(cfg))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["entries"]["xnli/de/test"]["rows"] == 24 and manifest["entries"]["xnli/de/test"][
        "source"
    ].startswith("local:")
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    again = prepare(cfg, out)
    assert again.fetched == [] and sorted(again.unchanged) == sorted(report["fetched"])
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == stamps

    _run(config, tmp_path / "from-source")
    _run(
        config,
        tmp_path / "from-prepared",
        "data.source=local",
        f"data.root={out}",
        f"data.cache_dir={tmp_path / 'cache'}",
    )
    assert _scores(tmp_path / "from-prepared") == _scores(tmp_path / "from-source") != {}


def test_features_are_cached_for_the_jobs(tmp_path, assets):
    from transformers import AutoTokenizer

    from hpcxlt.data.features import load_features
    from hpcxlt.tasks.registry import get_task

    data = experiment(assets, name="prepare-features")
    data["data"]["cache_dir"] = str(tmp_path / "cache")
    cfg = parse_config(data)
    report = prepare(cfg, tmp_path / "prepared", features=True)
    assert report.ok and report.features >= len(plan_needs(cfg))
    local = prepared_config(cfg, tmp_path / "prepared")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    train = load_features(
        get_task("xnli"),
        "en",
        "train",
        tokenizer,
        local.data,
        max_length=cfg.target.max_length,
        doc_stride=cfg.target.doc_stride,
        train=True,
    )
    assert train.cache_hit  # the training job will not tokenize


def _corrupt(source: Path, target: Path) -> None:
    shutil.copytree(source, target)
    path = target / "xnli" / "de" / "test.jsonl"  # a missing column
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "hypothesis"}) + "\n" for r in rows))
    path = target / "xnli" / "en" / "train.jsonl"  # an unknown label in row 3
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["label"] = "maybe"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = target / "tatoeba" / "sw" / "test.jsonl"  # an empty sentence in row 2
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["source_sentence"] = " "
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_corrupted_copy_is_refused_naming_every_split_and_row_and_nothing_is_written(tmp_path, assets, capsys):
    _corrupt(assets / "synth", tmp_path / "bad")
    data = experiment(assets, name="prepare-bad")
    data["data"]["root"] = str(tmp_path / "bad")
    config = write_config(tmp_path, data)
    out = tmp_path / "prepared"
    capsys.readouterr()
    assert main(["prepare", str(config), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "3 split(s) failed validation; nothing was written" in err
    assert "xnli/de/test:" in err and "missing column(s) ['hypothesis']" in err
    assert "xnli/en/train:" in err and "row 3:" in err and "'maybe'" in err
    assert "tatoeba/sw/test:" in err and "row 2: empty sentence" in err
    assert not out.exists()


def test_a_squad_answer_off_its_offset_is_refused(tmp_path):
    from hpcxlt.config.schema import DataConfig
    from hpcxlt.data.load import load_split
    from hpcxlt.data.prepare import validate
    from hpcxlt.tasks.registry import get_task

    squad = {
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": "Paris is big. Rome is old.",
                        "qas": [
                            {"id": "q1", "question": "What is big?", "answers": [{"text": "Paris", "answer_start": 0}]},
                            {"id": "q2", "question": "What is old?", "answers": [{"text": "Rome", "answer_start": 13}]},
                            {"id": "q1", "question": "Again?", "answers": [{"text": "Paris", "answer_start": 0}]},
                        ],
                    }
                ],
            }
        ]
    }
    (tmp_path / "xquad" / "de").mkdir(parents=True)
    (tmp_path / "xquad" / "de" / "test.json").write_text(json.dumps(squad))
    rows = load_split(get_task("xquad"), "de", "test", DataConfig(source="local", root=str(tmp_path)))
    problems = validate(get_task("xquad"), rows, Need("xquad", "de", "test"))
    assert problems == [
        "row 2: answer 'Rome' is not at answer_start 13 (the context has ' Rom' there)",
        "row 3: id 'q1' repeats row 1",
    ]


def test_an_offline_site_refuses_a_hub_config_before_submitting(tmp_path, capsys):
    import yaml

    site = yaml.safe_load((ROOT / "slurm" / "sites" / "local.yaml").read_text())
    site["offline"] = True
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(site))
    capsys.readouterr()
    code = main(
        [
            "submit",
            str(CONFIGS / "phang2020.yaml"),
            "--run-dir",
            str(tmp_path / "run"),
            "--site",
            str(path),
            "--dry-run",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is offline" in err and "hpcxlt prepare configs" not in err and "hpcxlt prepare" in err
    assert not (tmp_path / "run").exists()


def test_resume_runs_the_same_submit_checks_as_submit(tmp_path, capsys):
    """`resume --site` (and the feeder job, which resumes the next wave) go through launch_slurm, which runs
    the submit-time checks itself: an offline site is refused for a hub config there too."""
    import yaml

    from hpcxlt.grid.experiment import load_experiment
    from hpcxlt.grid.plan import plan
    from hpcxlt.launch.record import write_launch
    from hpcxlt.store import RunStore

    site = yaml.safe_load((ROOT / "slurm" / "sites" / "local.yaml").read_text())
    site["offline"] = True
    path = tmp_path / "offline.yaml"
    path.write_text(yaml.safe_dump(site))
    cfg = load_experiment(CONFIGS / "phang2020.yaml")
    store = RunStore(tmp_path / "run")
    store.initialize(cfg, plan(cfg))
    write_launch(store, "local")
    capsys.readouterr()
    code = main(["resume", str(store.root), "--site", str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "is offline" in err and str(store.root) in err


@pytest.mark.parametrize(
    "env,why",
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}, "http://127.0.0.1:9 does not answer"),
    ],
)
def test_prepare_without_the_hub_fails_at_once_with_the_ways_out(tmp_path, env, why):
    """One probe of the hub endpoint (a closed loopback port here), not every split retried: the message
    names the reason and the ways out, and nothing is written."""
    import os
    import subprocess
    import sys

    out = tmp_path / "prepared"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpcxlt",
            "prepare",
            str(CONFIGS / "demo.yaml"),
            "-o",
            "data.source=hub",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"the Hugging Face hub cannot be reached from this machine ({why}" in done.stderr
    assert "data.hub_mirror" in done.stderr and "data.source: local" in done.stderr
    assert not out.exists()
