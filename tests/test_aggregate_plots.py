"""The PNG figures: drawn from the tables, readable sizes, languages ordered low-resource first."""

from __future__ import annotations

import pytest

from hpcxlt.aggregate.plots import _ordered, delta_heatmap, language_deltas
from hpcxlt.aggregate.tables import deltas
from tests.aggregate_fixture import make_run, score_book

ARMS = [
    {"name": "none"},
    {"name": "en", "tasks": ["mnli"]},
    {"name": "en_lr", "tasks": ["mnli", "sib200"], "compare_to": "en"},
]


@pytest.fixture
def book(tmp_path):
    store = make_run(
        tmp_path / "run",
        arms=ARMS,
        targets={"xnli": ["en", "sw", "de"], "panx": ["yo", "en"]},
        seeds=[1, 2],
        score=lambda arm, t, seed, lang, split: 60.0 + len(arm) + seed * (lang == "sw"),
    )
    return score_book(store)


def _png_size(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = imread(path).shape[:2]
    return width, height


def test_heatmap_has_one_cell_per_arm_and_target(book, tmp_path):
    path = delta_heatmap(deltas(book, "test"), tmp_path / "heat.png")
    width, height = _png_size(path)
    assert 300 < width < 2000 and 200 < height < 1500


def test_heatmap_needs_a_baseline(tmp_path):
    store = make_run(tmp_path / "nobase", arms=ARMS[1:2], targets={"xnli": ["en"]}, seeds=[1], score=lambda *a: 70.0)
    assert delta_heatmap(deltas(score_book(store), "test"), tmp_path / "heat.png") is None


def test_language_plot_has_a_panel_per_target(book, tmp_path):
    path = language_deltas(book, "test", "en_lr", tmp_path / "lang.png")
    width, height = _png_size(path)
    assert height > width * 0.8  # two stacked panels
    assert language_deltas(book, "test", "none", tmp_path / "self.png") is None


def test_languages_are_ordered_low_resource_first():
    ordered = _ordered(["en", "sw", "de", "yo"])
    groups = [group for _, group in ordered]
    assert groups == ["low", "low", "high", "high"]
    assert ordered[-1] == ("en", "high")  # Joshi class 5 comes last


def test_no_plots_removes_the_figures_of_an_earlier_aggregation(tmp_path):
    from hpcxlt.aggregate.aggregate_run import Options, aggregate
    from tests.aggregate_fixture import make_run

    store = make_run(
        tmp_path / "run",
        arms=[{"name": "none"}, {"name": "en", "tasks": ["mnli"]}],
        targets={"xnli": ["en", "de"]},
        seeds=[1, 2],
        score=lambda arm, *_: 60.0 + (arm == "en"),
    )
    aggregate(store.root, Options(plots=True))
    drawn = sorted(p.name for p in store.tables_dir.glob("*.png"))
    assert drawn == ["deltas_heatmap.png", "language_deltas_en.png"]
    aggregate(store.root, Options(plots=False))
    assert list(store.tables_dir.glob("*.png")) == []
