"""Experiment config: typed loading, validation with key paths, overrides, round trip."""

import textwrap

import pytest
import yaml

from hpcxlt.config import (
    ConfigError,
    ExperimentConfig,
    arm_train_config,
    dump_yaml,
    load_config,
    parse_config,
    target_train_config,
)

BASE = textwrap.dedent(
    """
    name: small
    arms:
      - name: none
      - name: mnli
        tasks: [mnli]
        train: {lr: 2e-5}
    targets:
      tasks: [xnli, panx]
      overrides: {panx: {epochs: 10}}
    seeds: [1, 2]
    target: {lr: 3e-5}
    """
)


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(BASE)
    return path


def test_loads_typed_frozen_config(config_file):
    cfg = load_config(config_file)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.seeds == (1, 2)
    assert cfg.target.lr == 3e-5  # '3e-5' is a string to PyYAML; the loader makes it a float
    assert cfg.arms[1].tasks == ("mnli",)
    with pytest.raises(AttributeError):
        cfg.name = "other"  # frozen


def test_per_arm_and_per_target_hyperparameters_merge_over_defaults(config_file):
    cfg = load_config(config_file)
    assert arm_train_config(cfg, cfg.arm("mnli")).lr == 2e-5
    assert arm_train_config(cfg, cfg.arm("mnli")).epochs == cfg.intermediate.epochs
    assert target_train_config(cfg, "panx").epochs == 10
    assert target_train_config(cfg, "panx").lr == 3e-5
    assert target_train_config(cfg, "xnli") == cfg.target


def test_dotted_overrides(config_file):
    cfg = load_config(config_file, ["target.lr=1e-5", "seeds=[7]", "arms.1.sampling.rule=uniform"])
    assert cfg.target.lr == 1e-5
    assert cfg.seeds == (7,)
    assert cfg.arms[1].sampling.rule == "uniform"


def test_dump_yaml_round_trips(config_file):
    cfg = load_config(config_file)
    assert parse_config(yaml.safe_load(dump_yaml(cfg))) == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("target.zero_stage=4", "target.zero_stage: must be one of 0, 1, 2, 3"),
        ("target.lr=0", "target.lr: must be > 0"),
        ("intermediate.lr=-1e-5", "intermediate.lr: must be > 0"),
        ("seeds=[]", "seeds: must list at least one seed"),
        ("seeds=[1, 1]", "seeds: lists a seed twice"),
        ("target.lrr=1", "target.lrr: unknown key (did you mean 'lr'?); allowed: lr,"),
        ("bogus=1", "bogus: unknown key; allowed: name,"),
        ("arms.1.name=Bad Name", "arms[1].name: 'Bad Name' is not a safe name"),
        ("arms.1.name=../etc", "is not a safe name"),
        ("name=run;rm", "name: 'run;rm' is not a safe name"),
        ("arms.0.tasks=[mnli]", "arms[0].tasks: the 'none' arm is the no-intermediate baseline"),
        ("arms.1.tasks=[]", "arms[1].tasks: arm 'mnli' needs at least one intermediate task"),
        ("arms.1.sampling.rule=random", "arms[1].sampling.rule: 'random' is not allowed; choose one of proportional"),
        ("arms.1.train.foo=1", "arms[1].train.foo: unknown key"),
        ("arms.1.compare_to=english", "arms[1].compare_to: 'english' is not an arm"),
        ("targets.overrides.udpos={lr: 1e-5}", "targets.overrides.udpos: 'udpos' is not one of targets.tasks"),
        ("target.precision=fp64", "target.precision: 'fp64' is not allowed"),
        ("eval.splits=[train]", "eval.splits: 'train' is not allowed"),
        ("data.source=local", "data.root: required when data.source is 'local'"),
        ("target.epochs=many", "target.epochs: expected float, got 'many'"),
        ("target.micro_batch_size=2.5", "target.micro_batch_size: expected int"),
        ("target=3", "target: expected a mapping of TrainConfig keys"),
        ("arms.9.name=x", "override 'arms.9.name': arms.9 needs an index below 2"),
        ("arms.1.examples.squad=10", "arms[1].examples.squad: 'squad' is not one of this arm's tasks"),
        ("arms.1.examples.mnli=0", "arms[1].examples.mnli: must be a whole number of training examples > 0, got 0"),
        ("arms.1.examples.mnli=1.5", "arms[1].examples.mnli:"),
        ("arms.1.control=english", "arms[1].control: 'english' is not an arm"),
        (
            "stats.correction=bonferroni",
            "stats.correction: 'bonferroni' is not allowed; choose one of holm, bh, by, none",
        ),
        ("stats.bootstrap=10", "stats.bootstrap: at least 100 draws"),
        ("target.select_by=accuracy", "target.select_by: 'accuracy' is not allowed; choose one of metric, loss, last"),
        ("target.patience=3", "target.patience: early stopping counts dev evaluations, but eval_every is 0"),
        ("target={eval_every: 10, patience: 3, select_by: last}", "target.patience: early stopping needs a selection"),
        ("target.min_delta=-1", "target.min_delta: must be >= 0"),
    ],
)
def test_bad_values_name_file_key_and_allowed(config_file, override, message, tmp_path):
    # a bad value set on the command line is blamed on the -o that set it
    with pytest.raises(ConfigError) as err:
        load_config(config_file, [override])
    text = str(err.value)
    key, _, value = override.partition("=")
    # blamed on the -o that set the bad value; on the file where the message is about another key (data.source
    # local needs the file's data.root) or about the override's own path (an index past the list)
    about_the_key = override not in ("data.source=local", "arms.9.name=x")
    assert text.startswith(f"-o {override}: " if about_the_key else f"{config_file}: ") and message in text
    if not about_the_key:
        return
    # the same value written in the file is blamed on the file
    import yaml

    from hpcxlt.config.load import _set_dotted

    data = yaml.safe_load(config_file.read_text())
    _set_dotted(data, key, yaml.safe_load(value))
    in_file = tmp_path / "in-file.yaml"
    in_file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_config(in_file)
    assert str(err.value).startswith(f"{in_file}: ") and message in str(err.value)


def test_missing_required_key(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\narms: [{name: none}]\n")
    with pytest.raises(ConfigError, match="targets: required key is missing"):
        load_config(path)


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_init_config_writes_every_key_with_its_meaning_and_the_result_plans(tmp_path):
    """The template comes from the schema: every field of every section is a key with its docstring beside it,
    and the file loads and plans as written."""
    import dataclasses
    import subprocess
    import sys

    from hpcxlt.config import schema
    from hpcxlt.config.template import field_docs
    from hpcxlt.grid.experiment import load_experiment
    from tests.paths import ROOT

    out = tmp_path / "exp.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "init-config", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    for cls in (schema.ExperimentConfig, schema.DataConfig, schema.TrainConfig, schema.StatsConfig):
        for f in dataclasses.fields(cls):
            assert f"{f.name}:" in text, f"{cls.__name__}.{f.name} missing from the template"
            assert field_docs(cls)[f.name] in text
    cfg = load_experiment(out)
    assert cfg.name == "my-experiment" and [a.name for a in cfg.arms] == ["none", "en", "en_lowres"]
    plan = subprocess.run(
        [sys.executable, "-m", "hpcxlt", "plan", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert plan.returncode == 0, plan.stderr
