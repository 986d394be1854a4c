"""PNG figures: a heatmap of arm x target deltas, and per-language deltas of one arm by resource class."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from hpcxlt.aggregate.score_book import ScoreBook
from hpcxlt.aggregate.seed_stats import PairedTest, paired
from hpcxlt.aggregate.tables import Table
from hpcxlt.io import write_bytes_atomic
from hpcxlt.tasks.languages import language, resource_group

LOW_COLOR, HIGH_COLOR = "#d95f02", "#1b9e77"


def _pyplot():
    import matplotlib  # heavy: matplotlib

    matplotlib.use("Agg")  # no display on compute nodes
    import matplotlib.pyplot as plt  # heavy: matplotlib

    return plt


def _save(fig, path: Path, *, tight_box: bool = True) -> Path:

    buffer = io.BytesIO()
    # bbox_inches="tight" draws the figure twice; figures laid out by tight_layout skip it
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight" if tight_box else None)
    _pyplot().close(fig)
    return write_bytes_atomic(path, buffer.getvalue())


def delta_heatmap(deltas: Table, path: Path, significance: Table | None = None) -> Path | None:
    """Heatmap of Δ task score (arm − none, mean over seeds) for every arm and target, * where the significance
    table finds the difference significant after correction; None without data."""
    rows = [r for r in deltas.rows if "delta" in r]
    marked = {
        (r["arm"], r["target"])
        for r in (significance.rows if significance else ())
        if r.get("comparison") == "vs none" and r.get("significant")
    }
    if not rows:
        return None
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm  # heavy: matplotlib

    arms = list(dict.fromkeys(r["arm"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    grid = [[math.nan] * len(targets) for _ in arms]
    labels = [[""] * len(targets) for _ in arms]
    for r in rows:
        i, j = arms.index(r["arm"]), targets.index(r["target"])
        delta = r["delta"]
        if delta["mean"] is None:
            labels[i][j] = "—"
            continue
        grid[i][j] = delta["mean"]
        stars = "*" if (r["arm"], r["target"]) in marked else ""
        labels[i][j] = f"{delta['mean']:+.2f}{stars}" + (" (p)" if delta["partial"] else "")
    finite = [abs(v) for row in grid for v in row if not math.isnan(v)]
    bound = max(finite + [0.5])
    fig, ax = plt.subplots(figsize=(1.1 * len(targets) + 2.5, 0.55 * len(arms) + 1.8))
    image = ax.imshow(grid, cmap="RdBu", norm=TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound), aspect="auto")
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
    ax.set_yticks(range(len(arms)), arms)
    for i in range(len(arms)):
        for j in range(len(targets)):
            dark = not math.isnan(grid[i][j]) and abs(grid[i][j]) > 0.6 * bound
            ax.text(j, i, labels[i][j], ha="center", va="center", fontsize=9, color="white" if dark else "black")
    fig.colorbar(image, ax=ax, label="Δ task score vs none (points)")
    ax.set_title(
        "Δ task score vs 'none' (mean over seeds; * significant after correction, see the significance table)",
        fontsize=9,
    )
    return _save(fig, path)


def _ordered(langs: Sequence[str]) -> list[tuple[str, str]]:

    # low-resource first, then by Joshi class and code, so the research question reads left to right
    tagged = [(lang, resource_group(lang), language(lang).joshi_class) for lang in langs]
    tagged.sort(key=lambda t: (t[1] != "low", t[2], t[0]))
    return [(lang, group) for lang, group, _ in tagged]


def language_deltas(book: ScoreBook, split: str, arm: str, path: Path, *, against: str | None = None) -> Path | None:
    """Bars of arm − `against` (default: 'none') per language and target, low-resource languages first."""
    other = against or book.baseline
    if other is None or arm == other:
        return None
    plt = _pyplot()
    from matplotlib.patches import Patch  # heavy: matplotlib

    targets = list(book.targets)
    widths = [len(book.planned[(arm, t)].langs) for t in targets]
    height = 2.2 * len(targets) + 1.0
    fig, axes = plt.subplots(
        len(targets), 1, figsize=(min(max(5.5, 0.3 * max(widths) + 1.5), 18.0), height), squeeze=False
    )
    for ax, target in zip(axes[:, 0], targets):
        langs = _ordered(book.planned[(arm, target)].langs)
        tests: list[PairedTest] = []
        for lang, _ in langs:
            a, b, n_planned = book.lang_pairs(split, arm, other, target, [lang])
            tests.append(paired(a, b, n_planned, allow_partial=book.allow_partial))
        xs = range(len(langs))
        heights = [t.mean if t.mean is not None else 0.0 for t in tests]
        errors = [t.std if t.std is not None else 0.0 for t in tests]
        colors = [LOW_COLOR if group == "low" else HIGH_COLOR for _, group in langs]
        ax.bar(xs, heights, width=0.7, yerr=errors, color=colors, capsize=2, error_kw={"elinewidth": 0.8})
        for x, test in zip(xs, tests):
            if test.mean is None:
                ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        ax.axhline(0, color="black", linewidth=0.8)
        n_low = sum(group == "low" for _, group in langs)
        if 0 < n_low < len(langs):  # where the low-resource group ends
            ax.axvline(n_low - 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(list(xs), [lang for lang, _ in langs], fontsize=8)
        ax.set_xlim(-0.6, len(langs) - 0.4)
        ax.set_ylabel("Δ points")
        ax.set_title(target, fontsize=10, loc="left")
        ax.grid(axis="y", linewidth=0.3, alpha=0.6)
    # title, then the legend on the line below it, both above the first panel (sizes in inches / height)
    fig.suptitle(
        f"{arm} − {other} per language ({split}; mean ± std over seeds)",
        fontsize=11,
        x=0.01,
        y=1 - 0.1 / height,
        ha="left",
        va="top",
    )
    fig.legend(
        handles=[
            Patch(color=LOW_COLOR, label="low-resource (Joshi 0-2)"),
            Patch(color=HIGH_COLOR, label="high-resource (Joshi 3-5)"),
        ],
        loc="upper left",
        bbox_to_anchor=(0.0, 1 - 0.38 / height),
        fontsize=8,
        ncol=2,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / height))
    return _save(fig, path, tight_box=False)
