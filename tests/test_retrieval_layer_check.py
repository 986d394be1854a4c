"""eval.retrieval_layer is held against the model's own config.json before anything is submitted: found by
rehearsing configs/lowres.yaml (layer 14, XTREME's for XLM-R Large) with the 2-layer tiny model, where every
Tatoeba evaluation failed after the whole training grid had run."""

from __future__ import annotations

import json

from tests.launch_assets import assets, experiment, run_cli, write_config  # noqa: F401


def _config(tmp_path, assets, layer: int):
    data = experiment(assets, name="retrieval-layer")
    data["eval"]["retrieval_layer"] = layer
    return write_config(tmp_path, data)


def test_a_retrieval_layer_the_model_lacks_is_refused_before_anything_is_written(tmp_path, assets, capsys):
    # the oracle: the model's own config.json (hidden states 0..L, L its layer count)
    layers = json.loads((assets / "tiny" / "config.json").read_text())["num_hidden_layers"]
    run_dir = tmp_path / "run"
    code, _ = run_cli("submit", str(_config(tmp_path, assets, 14)), "--run-dir", str(run_dir), "--local")
    assert code == 2 and not run_dir.exists()
    err = capsys.readouterr().err
    assert f"eval.retrieval_layer 14: {assets / 'tiny'} has hidden states 0..{layers}" in err
    assert f"allowed: {-(layers + 1)}..{layers}" in err
    for layer in (layers, -(layers + 1)):  # the ends of the range pass the check
        code, out = run_cli(
            "submit", str(_config(tmp_path, assets, layer)), "--run-dir", str(run_dir), "--local", "--dry-run"
        )
        assert code == 0, capsys.readouterr().err
    code, _ = run_cli(
        "submit", str(_config(tmp_path, assets, layers + 1)), "--run-dir", str(run_dir), "--local", "--dry-run"
    )
    assert code == 2 and f"eval.retrieval_layer {layers + 1}:" in capsys.readouterr().err


def test_without_a_retrieval_target_the_layer_is_not_checked(tmp_path, assets):
    data = experiment(assets, name="no-retrieval", targets={"tasks": ["xnli"], "languages": {"xnli": ["en", "de"]}})
    data["eval"]["retrieval_layer"] = 14
    code, _ = run_cli(
        "submit", str(write_config(tmp_path, data)), "--run-dir", str(tmp_path / "run"), "--local", "--dry-run"
    )
    assert code == 0
