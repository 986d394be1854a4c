"""Formatting: cells, markdown, CSV, LaTeX escaping."""

from __future__ import annotations

from hpcxlt.aggregate.render import csv_text, fmt_cell, latex, markdown, terminal
from hpcxlt.aggregate.seed_stats import PairedTest, SeedStat
from hpcxlt.aggregate.tables import PValue, Table


def _stat(mean, std, n, planned, partial=False):
    return SeedStat(mean=mean, std=std, n=n, n_planned=planned, partial=partial)


def test_cells_say_how_many_seeds_and_whether_partial():
    assert fmt_cell(_stat(81.234, 0.456, 3, 3)) == "81.23 ± 0.46 (3)"
    assert fmt_cell(_stat(81.0, None, 1, 1)) == "81.00 (1)"
    assert fmt_cell(_stat(80.0, 1.0, 2, 3, partial=True)) == "80.00 ± 1.00 (2/3)*"
    assert fmt_cell(_stat(None, None, 2, 3)) == "— (2/3)"
    assert fmt_cell(_stat(None, None, 0, 3)) == "—"
    delta = PairedTest(mean=1.5, std=0.5, n=12, n_planned=12, partial=False)
    assert fmt_cell(delta) == "+1.50 ± 0.50 (12)"
    assert (
        fmt_cell(PValue(0.0004)) == "<0.001" and fmt_cell(PValue(0.0123)) == "0.012" and fmt_cell(PValue(None)) == "—"
    )


TABLE = Table(
    name="demo",
    title="Demo_table 100%",
    header=("arm", "Δ score"),
    rows=({"arm": "en_lr", "score": {"mean": 1.5, "std": None, "n": 1}},),
    display=(("en_lr", _stat(1.5, 0.25, 2, 2)),),
    notes=("a note",),
    partial=True,
)


def test_latex_escapes_names_and_uses_math_for_symbols():
    text = latex(TABLE)
    assert r"en\_lr" in text and r"$\pm$" in text and r"$\Delta$ score" in text and r"Demo\_table 100\%" in text
    assert r"\begin{tabular}" in text and "% a note" in text


def test_csv_is_tidy_with_flattened_figures():
    lines = csv_text(TABLE).splitlines()
    assert lines[0] == "arm,score_mean,score_std,score_n" and lines[1] == "en_lr,1.5,,1"


def test_markdown_and_terminal_show_partial_tables():
    assert markdown(TABLE).startswith("## Demo_table 100% (partial)")
    assert "| en_lr | 1.50 ± 0.25 (2) |" in markdown(TABLE)
    assert "[PARTIAL]" in terminal(TABLE) and "note: a note" in terminal(TABLE)
