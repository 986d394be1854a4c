"""A task without a dev split in an arm (tydiqa_lowres: TyDiQA-GoldP's dev set is XTREME's TyDiQA test, so
the registry gives it none) is trained on and not dev-evaluated; the arm selects on its other tasks' dev
metric. Found by rehearsing configs/lowres.yaml on the local cluster: the squad_lowres, squad_highres and
en3_* intermediate jobs all failed at their first dev evaluation (docs/benchmarks.md)."""

from __future__ import annotations

import json

import pytest

from hpcxlt.store import RunStore
from tests.launch_assets import experiment, run_cli, write_config


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from hpcxlt.demo.synth import SynthSettings, write_benchmark
    from hpcxlt.demo.tiny import TinySpec, build_tiny

    root = tmp_path_factory.mktemp("dev-splits")
    build_tiny(root / "tiny", TinySpec(vocab_size=400, sentences_per_language=40), languages=("en", "de", "sw"))
    write_benchmark(
        root / "synth", SynthSettings(train_size=48, eval_size=16), tasks=("mnli", "tydiqa_lowres", "xnli", "tydiqa")
    )
    return root


def test_the_synthetic_world_has_no_tydiqa_lowres_dev_split(assets):
    """The premise, from the files: train only (as TyDiQA-GoldP's release gives the intermediate task)."""
    assert sorted(p.name for p in (assets / "synth" / "tydiqa_lowres" / "sw").iterdir()) == ["train.jsonl"]


def test_an_arm_with_a_task_without_dev_split_trains_and_selects_on_its_other_tasks(tmp_path, assets):
    data = experiment(
        assets,
        name="dev-splits",
        arms=[{"name": "none"}, {"name": "qa_lowres", "tasks": ["mnli", "tydiqa_lowres"]}],
        targets={"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}},
    )
    data["arms"][1]["languages"] = {"tydiqa_lowres": ["sw"]}
    data["intermediate"].update(max_steps=4, eval_every=2, select_by="metric")
    run_dir = tmp_path / "run"
    code, out = run_cli("submit", str(write_config(tmp_path, data)), "--run-dir", str(run_dir), "--local")
    assert code == 0, out
    store = RunStore(run_dir)
    assert all(store.is_done(cell.key) for cell in store.load_plan().cells)
    lines = [json.loads(line) for line in store.train_log_path("inter.qa_lowres.s1").read_text().splitlines()]
    evaluated = [line["dev"] for line in lines if line.get("dev")]
    # two dev evaluations (steps 2 and 4), each of MNLI's English dev split alone
    assert len(evaluated) == 2 and all(set(dev) == {"mnli:en"} for dev in evaluated), evaluated


def refusal(tmp_path, data, capsys) -> str:
    """What `submit --local` says refusing `data`, after checking it refused (exit 2) and made no run folder."""
    code, _ = run_cli("submit", str(write_config(tmp_path, data)), "--run-dir", str(tmp_path / "run"), "--local")
    assert code == 2 and not (tmp_path / "run").exists()
    return capsys.readouterr().err


def test_an_arm_with_no_dev_split_at_all_is_refused_before_anything_runs(tmp_path, assets, capsys):
    data = experiment(assets, name="no-dev", arms=[{"name": "none"}, {"name": "ty", "tasks": ["tydiqa_lowres"]}])
    data["arms"][1]["languages"] = {"tydiqa_lowres": ["sw"]}
    data["intermediate"].update(eval_every=2, select_by="metric")
    assert (
        "arms[1] (ty): select_by 'metric' evaluates a dev split every 2 steps, and none of its tasks "
        "['tydiqa_lowres'] has one in its dev language; allowed: select_by 'last', or eval_every 0, for this arm"
    ) in refusal(tmp_path, data, capsys)


def test_a_target_without_a_dev_split_keeps_its_last_checkpoint_and_is_never_dev_evaluated(tmp_path, assets):
    """TyDiQA-GoldP (English train, no dev split): select_by 'last' trains to the end with eval_every set,
    as configs/phang2020.yaml and lowres.yaml now say for it; the cell is evaluated in its test languages."""
    data = experiment(
        assets,
        name="tydiqa-last",
        arms=[{"name": "none"}],
        targets={"tasks": ["tydiqa"], "languages": {"tydiqa": ["sw"]}},
    )
    data["targets"]["overrides"] = {"tydiqa": {"select_by": "last", "patience": 0, "eval_every": 2}}
    run_dir = tmp_path / "run"
    code, out = run_cli("submit", str(write_config(tmp_path, data)), "--run-dir", str(run_dir), "--local")
    assert code == 0, out
    store = RunStore(run_dir)
    assert all(store.is_done(cell.key) for cell in store.load_plan().cells)
    lines = [json.loads(line) for line in store.train_log_path("target.none.tydiqa.s1").read_text().splitlines()]
    assert lines and not any(line.get("dev") for line in lines)


def test_a_target_without_a_dev_split_selecting_on_it_is_refused(tmp_path, assets, capsys):
    data = experiment(
        assets,
        name="tydiqa-metric",
        arms=[{"name": "none"}],
        targets={"tasks": ["tydiqa"], "languages": {"tydiqa": ["sw"]}},
    )
    data["target"].update(eval_every=2, select_by="metric")
    assert (
        "targets.overrides.tydiqa: select_by 'metric' evaluates tydiqa's English dev split every 2 steps, and "
        "tydiqa has none; allowed: select_by 'last', or eval_every 0, for this target"
    ) in refusal(tmp_path, data, capsys)
