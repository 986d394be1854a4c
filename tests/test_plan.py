"""Grid planning: hand-computed counts, stable keys, element-wise dependencies, fingerprints."""

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpcxlt.grid import plan
from hpcxlt.grid.cost import cell_samples, estimate
from hpcxlt.grid.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Languages per XTREME-R task (../shared/notes/research.md).
LANGS = {
    "xnli": 15,
    "xcopa": 11,
    "udpos": 38,
    "panx": 48,
    "xquad": 12,
    "mlqa": 7,
    "tydiqa": 9,
    "tatoeba": 41,
    "mewslix": 11,
    "lareqa": 11,
}


def test_phang2020_counts_match_hand_computation():
    grid = plan(load_experiment(CONFIGS / "phang2020.yaml"))
    arms, trained_arms, seeds = 11, 10, 3  # none + 9 single tasks + all-9 mix
    assert len(grid.stage_cells("intermediate")) == trained_arms * seeds == 30
    # tatoeba has no target training; xcopa trains on SIQA first (XTREME-R's recipe): one more cell each
    assert len(grid.stage_cells("target")) == arms * 9 * seeds + arms * seeds == 330
    assert len(grid.stage_cells("eval")) == arms * seeds * sum(LANGS.values()) == 6699
    # one eval job per (arm, target, seed) loads the model once for all its languages
    assert len(grid.stage_jobs("eval")) == arms * 10 * seeds == 330
    assert len(grid.jobs) == 30 + 330 + 330


def test_a_prelude_is_its_own_cell_and_the_target_continues_it():
    cfg = load_experiment(CONFIGS / "phang2020.yaml")
    grid = plan(cfg)
    prelude = grid.cell("target.mnli.xcopa.s2.siqa")
    assert (prelude.stage, prelude.target, prelude.trains, prelude.deps) == (
        "target",
        "xcopa",
        "siqa",
        ("inter.mnli.s2",),
    )
    assert grid.cell("target.mnli.xcopa.s2").deps == ("target.mnli.xcopa.s2.siqa",)
    assert grid.cell("target.none.xcopa.s1.siqa").deps == ()
    assert grid.cell("eval.mnli.xcopa.s2.et").deps == ("target.mnli.xcopa.s2",)
    # the prelude's recipe changes the prelude and everything after it, nothing else
    other = plan(dataclasses.replace(cfg, targets=dataclasses.replace(cfg.targets, preludes={})))
    changed = {c.key for c in grid.cells} ^ {c.key for c in other.cells}
    assert changed == {c.key for c in grid.cells if c.trains}
    before = {c.key: c.fingerprint for c in other.cells}
    differs = {c.key for c in grid.cells if c.key in before and before[c.key] != c.fingerprint}
    assert differs and all(".xcopa." in key for key in differs)


def test_a_prelude_of_another_format_is_refused(tmp_path):
    import yaml

    from hpcxlt.config import ConfigError

    data = yaml.safe_load((CONFIGS / "phang2020.yaml").read_text())
    data["targets"]["preludes"] = {"xcopa": ["mnli"]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"targets.preludes.xcopa\[0\]: 'mnli' cannot come before 'xcopa'"):
        load_experiment(path)


def test_demo_counts():
    grid = plan(load_experiment(CONFIGS / "demo.yaml"))
    # arms none/en/en_lowres/en_highres, 2 seeds, targets xnli(4) panx(4) xquad(3) tatoeba(3 langs, no training)
    assert grid.counts() == {
        "intermediate": {"cells": 6, "jobs": 6},
        "target": {"cells": 4 * 3 * 2, "jobs": 24},
        "eval": {"cells": 4 * 2 * (4 + 4 + 3 + 3), "jobs": 4 * 4 * 2},
    }


def test_keys_and_dependencies(tmp_path):
    grid = plan(load_experiment(CONFIGS / "demo.yaml"))
    keys = [cell.key for cell in grid.cells]
    assert len(keys) == len(set(keys))
    assert "inter.en.s1" in keys and "inter.none.s1" not in keys
    assert grid.cell("target.en.xnli.s2").deps == ("inter.en.s2",)
    assert grid.cell("target.none.xnli.s1").deps == ()
    assert grid.cell("eval.en.xnli.s1.de").deps == ("target.en.xnli.s1",)
    # tatoeba has no English training data: evaluated straight from the intermediate checkpoint
    assert grid.cell("eval.en_lowres.tatoeba.s2.sw").deps == ("inter.en_lowres.s2",)
    assert grid.cell("eval.none.tatoeba.s1.de").deps == ()
    # one intermediate checkpoint serves every target: it is planned once per (arm, seed)
    consumers = [c for c in grid.cells if "inter.en.s1" in c.deps]
    assert {c.target for c in consumers} == {"xnli", "panx", "xquad", "tatoeba"}
    # every dependency is planned before its dependant (the executors rely on this order)
    seen = set()
    for cell in grid.cells:
        assert set(cell.deps) <= seen
        seen.add(cell.key)


def test_replanning_is_identical_and_serialises():
    cfg = load_experiment(CONFIGS / "phang2020.yaml")
    first, second = plan(cfg), plan(cfg)
    assert first == second
    assert type(first).from_dict(json.loads(json.dumps(first.to_dict()))) == first


def test_eval_fingerprints_hash_the_same_text_as_every_other_fingerprint():
    """plan() hashes eval cells without a dict per cell (`_eval_hasher`); the text is `_hash`'s, so
    fingerprints, and the done cells of existing run directories, stay what they were."""
    from hpcxlt.config import config_to_dict
    from hpcxlt.grid.plan import _hash, eval_languages

    cfg = load_experiment(CONFIGS / "phang2020.yaml", ["seeds=[1,2]", "eval.languages_per_job=4"])
    grid = plan(cfg)
    settings = {
        "source": cfg.data.source,
        "root": cfg.data.root,
        "max_eval_examples": cfg.data.max_eval_examples,
        "splits": list(cfg.eval.splits),
        "retrieval_layer": cfg.eval.retrieval_layer,
    }
    evals = grid.stage_cells("eval")
    assert len(evals) == 2 * 11 * sum(len(eval_languages(cfg, t)) for t in cfg.targets.tasks)
    for cell in evals:
        pretrained = _hash({"pretrained": config_to_dict(cfg.model)})
        upstream = grid.cell(cell.deps[0]).fingerprint if cell.deps else pretrained
        expected = {"stage": "eval", "from": upstream, "task": cell.target, "lang": cell.lang, "eval": settings}
        assert cell.fingerprint == _hash(expected), cell.key


def test_changed_config_changes_only_affected_cells():
    base = plan(load_experiment(CONFIGS / "demo.yaml"))
    changed = plan(load_experiment(CONFIGS / "demo.yaml", ["targets.overrides.panx={lr: 5e-4}"]))
    before = {c.key: c.fingerprint for c in base.cells}
    after = {c.key: c.fingerprint for c in changed.cells}
    assert before.keys() == after.keys()
    differ = {k for k in before if before[k] != after[k]}
    assert differ == {c.key for c in base.cells if c.target == "panx"}

    arm_changed = plan(load_experiment(CONFIGS / "demo.yaml", ["arms.1.sampling.rule=uniform"]))
    after = {c.key: c.fingerprint for c in arm_changed.cells}
    differ = {k for k in before if before[k] != after[k]}
    assert differ == {c.key for c in base.cells if c.arm == "en"}


def test_languages_per_job_splits_eval_jobs():
    grid = plan(load_experiment(CONFIGS / "phang2020.yaml", ["eval.languages_per_job=10"]))
    panx_jobs = [j for j in grid.stage_jobs("eval") if j.key.startswith("eval.none.panx.s1")]
    assert [len(j.cells) for j in panx_jobs] == [10, 10, 10, 10, 8]
    assert len({j.key for j in grid.jobs}) == len(grid.jobs)


def test_gpu_hour_estimate_uses_config_throughput():
    cfg = load_experiment(CONFIGS / "demo.yaml")
    costs = {c.stage: c for c in estimate(cfg, plan(cfg))}
    # 2 seeds x (en: mnli + squad, from cost.train_examples 1000 each; en_lowres: + its masakhaner2 budget 300;
    # en_highres: + its wikiann_highres budget 300) x 1 epoch
    assert costs["intermediate"].samples == 2 * (2000 + 2300 + 2300)
    assert costs["intermediate"].gpu_hours == pytest.approx(13200 / 400 / 3600)
    slower = dataclasses.replace(cfg, cost=dataclasses.replace(cfg.cost, train_samples_per_second=200))
    assert {c.stage: c for c in estimate(slower, plan(slower))}["target"].gpu_hours == pytest.approx(
        2 * costs["target"].gpu_hours
    )


def test_the_estimate_counts_only_the_examples_the_data_caps_let_through():
    """A capped run (a smoke test, a rehearsal) reads at most data.max_train_examples per task and language
    and data.max_eval_examples per evaluated language: so does the estimate (it once used the full sizes)."""
    cfg = load_experiment(
        CONFIGS / "phang2020.yaml", ["data.max_train_examples=64", "data.max_eval_examples=16", "seeds=[1]"]
    )
    samples = cell_samples(cfg, plan(cfg))
    # by hand: MNLI (392,702 English examples) capped to 64, 2 epochs (phang2020's intermediate and target)
    assert samples["inter.mnli.s1"] == 64 * 2
    assert samples["target.none.xnli.s1"] == 64 * 2
    # evaluation: min(cost.eval_examples_per_language 2,000, 16) x the splits dev and test
    assert samples["eval.none.xnli.s1.de"] == 16 * 2
    uncapped = cell_samples(load_experiment(CONFIGS / "phang2020.yaml", ["seeds=[1]"]), plan(cfg))
    assert uncapped["target.none.xnli.s1"] == 392_702 * 2 and uncapped["eval.none.xnli.s1.de"] == 2000 * 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("targets.tasks=[xnli, panx, xquad, tatoeba, paws]", "targets.tasks[4]: unknown XTREME-R target task 'paws'"),
        ("arms.1.tasks=[mnli, squadd]", "arms[1].tasks[1]: unknown intermediate task 'squadd' (did you mean 'squad'?)"),
        (
            "arms.2.languages={masakhaner2: [de]}",
            "arms[2].languages.masakhaner2: masakhaner2 has no training data in 'de'",
        ),
        ("targets.languages.xnli=[en, xx]", "targets.languages.xnli: xnli is not evaluated in 'xx'"),
        ("cost.train_examples={foo: 3}", "cost.train_examples.foo: unknown task 'foo'"),
    ],
)
def test_registry_errors_name_file_and_key(override, message):
    with pytest.raises(Exception) as err:
        load_experiment(CONFIGS / "demo.yaml", [override])
    assert str(err.value).startswith(f"-o {override}: ")  # set on the command line: blamed on the -o
    assert message in str(err.value)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_loads_and_plans(name):
    cfg = load_experiment(CONFIGS / name)
    assert plan(cfg).cells


def test_plan_cli_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, time; t = time.perf_counter();"
        "from hpcxlt.cli import main; rc = main(['plan', {config!r}, '--json']);"
        "heavy = [m for m in ('torch', 'deepspeed', 'transformers', 'datasets', 'submitit', 'mpi4py', 'pandas')"
        " if m in sys.modules];"
        "print('HEAVY', heavy, 'SECONDS', time.perf_counter() - t, file=sys.stderr); sys.exit(rc)"
    ).format(config=str(CONFIGS / "phang2020.yaml"))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    assert "HEAVY []" in proc.stderr
    assert elapsed < 2.0, f"hpcxlt plan took {elapsed:.2f} s"
    summary = json.loads(proc.stdout)
    assert summary["counts"]["eval"]["cells"] == 6699
    assert summary["gpu_hours_total"] > 0


def test_plan_cli_bad_config_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(CONFIGS / "demo.yaml").read_text().replace("seeds: [1, 2]", "seeds: []"))
    proc = subprocess.run([sys.executable, "-m", "hpcxlt", "plan", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{bad}: seeds: must list at least one seed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_budgets_spread_as_evenly_as_the_data_allows():
    from hpcxlt.grid.budget import allocate

    assert allocate(8000, {"sw": 2755, "te": 5563}) == {"sw": 2755, "te": 5245}  # sw gives all it has
    assert allocate(8000, {"fi": 6855, "ko": 1625, "ru": 6490, "ar": 14805}) == {
        "ar": 2125,
        "fi": 2125,
        "ko": 1625,
        "ru": 2125,
    }
    assert allocate(7, {"b": 10, "a": 10}) == {"a": 4, "b": 3}  # the odd one to the first in sorted order
    assert allocate(100, {"a": 3, "b": 4}) == {"a": 3, "b": 4}  # more budget than data: all of it
    assert allocate(0, {"a": 3}) == {"a": 0}


def test_plan_shows_the_matched_arms_realize_equal_example_counts(tmp_path, capsys):
    """The demo's en_lowres and its control en_highres: 300 NER sentences each, from the data's own row counts."""
    import json

    from hpcxlt.cli import main
    from hpcxlt.demo.synth import SynthSettings, write_benchmark

    write_benchmark(
        tmp_path / "synth", SynthSettings(train_size=120, eval_size=8), tasks=("masakhaner2", "wikiann_highres")
    )
    args = [str(CONFIGS / "demo.yaml"), "-o", f"data.root={tmp_path / 'synth'}"]
    assert main(["plan", *args, "--json"]) == 0
    budgets = json.loads(capsys.readouterr().out)["examples"]
    lowres, highres = budgets["arms"]["en_lowres"], budgets["arms"]["en_highres"]
    assert lowres["tasks"]["masakhaner2"]["per_language"] == {"ha": 100, "sw": 100, "yo": 100}
    assert highres["tasks"]["wikiann_highres"]["per_language"] == {"de": 100, "es": 100, "fr": 100}
    assert lowres["realized_total"] == highres["realized_total"] == 300 and lowres["control"] == "en_highres"
    assert main(["plan", *args]) == 0
    assert "en_lowres vs its control en_highres: 300 vs 300 examples, equal" in capsys.readouterr().out
    assert main(["plan", *args, "-o", "data.max_train_examples=90"]) == 0  # less data than the budget, on both sides
    assert "en_lowres vs its control en_highres: 270 vs 270 examples, equal" in capsys.readouterr().out
    # unequal budgets: the plan says the control is not matched
    assert main(["plan", *args, "-o", "arms.3.examples.wikiann_highres=600"]) == 0
    assert "300 vs 360 examples, NOT equal" in capsys.readouterr().out


def test_plan_json_stores_each_eval_job_once_and_still_reads_the_earlier_format(tmp_path):
    from hpcxlt.aggregate.score_book import planned_eval_blocks
    from hpcxlt.grid.plan import Plan

    grid = plan(load_experiment(CONFIGS / "phang2020.yaml", ["eval.languages_per_job=4"]))
    data = json.loads(json.dumps(grid.to_dict()))
    assert data["format"] == 2 and not [c for c in data["cells"] if c["stage"] == "eval"]
    assert len(data["eval_jobs"]) == len(grid.stage_jobs("eval"))
    assert Plan.from_dict(data) == grid
    earlier = {
        "cells": [c.to_dict() for c in grid.cells],
        "jobs": [{"key": j.key, "stage": j.stage, "cells": list(j.cells), "deps": list(j.deps)} for j in grid.jobs],
    }
    assert Plan.from_dict(earlier) == grid
    assert len(json.dumps(data)) * 3 < len(json.dumps(earlier))
    # what the aggregation reads of either: the same eval cells, job by job or cell by cell
    (tmp_path / "new.json").write_text(json.dumps(data))
    (tmp_path / "old.json").write_text(json.dumps(earlier))
    cells = lambda blocks: [(a, t, s, lang) for a, t, s, langs in blocks for lang in langs]  # noqa: E731
    assert (
        cells(planned_eval_blocks(tmp_path / "new.json"))
        == cells(planned_eval_blocks(tmp_path / "old.json"))
        == [(c.arm, c.target, c.seed, c.lang) for c in grid.stage_cells("eval")]
    )


def test_plan_shows_unseen_languages_per_comparison_and_target():
    out = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "plan", str(CONFIGS / "demo.yaml"), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    rows = {(r["arm"], r["kind"], r["vs"]): r for r in json.loads(out.stdout)["comparisons"]}
    # by hand from configs/demo.yaml and the registry: en_lowres trains on en (mnli, squad) and sw, yo, ha
    # (masakhaner2), its control en_highres on en and de, es, fr (wikiann_highres)
    control = rows[("en_lowres", "vs control", "en_highres")]
    assert control["seen"] == ["de", "en", "sw", "yo"]  # the target languages moved out (ha, es, fr are no target's)
    # xnli [en, de, sw, ur] -> ur; panx [en, de, sw, yo] -> none; xquad [en, de, ar] -> ar; tatoeba [de, sw, tl] -> tl
    assert control["unseen_languages"] == {"xnli": 1, "panx": 0, "xquad": 1, "tatoeba": 1}
    assert rows[("en", "vs none", "none")]["unseen_languages"] == {"xnli": 3, "panx": 3, "xquad": 2, "tatoeba": 3}
    text = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "plan", str(CONFIGS / "demo.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "has no unseen panx language: its panx row stays empty" in text


def test_a_comparison_with_no_unseen_language_is_refused(capsys):
    from hpcxlt.cli import main

    code = main(
        [
            "plan",
            str(CONFIGS / "demo.yaml"),
            "-o",
            "targets.tasks=[panx]",
            "-o",
            "targets.languages={panx: [en, de, sw, yo]}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "en_lowres vs control (en_highres) has no target language that neither arm trained on" in err
