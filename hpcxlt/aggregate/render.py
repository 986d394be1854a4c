"""Tables as text: terminal, markdown, CSV (tidy), LaTeX, and the one JSON object of a report.

Display cells are formatted here and only here: 'mean ± std (n)', '(n/planned)*' for a figure
computed from fewer cells than planned (--partial), '—' for a figure that is not computed because
cells are missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tabulate import tabulate

from hpcxlt.aggregate.seed_stats import PairedTest, SeedStat
from hpcxlt.aggregate.tables import PValue, Table
from hpcxlt.io import write_text_atomic

LEGEND = (
    "Cells: mean ± sample std over seeds, (n) = seeds (pairs for Δ per pair), (n/planned) when fewer than "
    "planned; * = partial: computed from fewer cells than the figure is defined over (--partial); "
    "— = not computed: cells are missing; n/a = the experiment has no task for it."
)
MISSING_SHOWN = 20
"""Missing cells and problems listed in the terminal; files list them all."""

_LATEX = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "Δ": r"$\Delta$",
        "—": "--",
        "±": r"$\pm$",
        "−": "--",
    }
)


def _counted(stat: SeedStat | PairedTest) -> str:
    if stat.n < stat.n_planned:
        return f" ({stat.n}/{stat.n_planned})" + ("*" if stat.partial else "")
    return f" ({stat.n})" + ("*" if stat.partial else "")


def fmt_cell(cell: Any, *, pm: str = "±", dash: str = "—") -> str:
    """One display cell as text."""
    if cell is None:
        return ""
    if isinstance(cell, PValue):
        if cell.value is None:
            return dash
        return "<0.001" if cell.value < 0.001 else f"{cell.value:.3f}"
    if isinstance(cell, (SeedStat, PairedTest)):
        if cell.mean is None:
            return dash + (f" ({cell.n}/{cell.n_planned})" if cell.n else "")
        sign = "+" if isinstance(cell, PairedTest) else ""
        text = f"{cell.mean:{sign}.2f}"
        if cell.std is not None:
            text += f" {pm} {cell.std:.2f}"
        return text + _counted(cell)
    return str(cell)


def display_rows(table: Table, **style: str) -> list[list[str]]:
    return [[fmt_cell(cell, **style) for cell in row] for row in table.display]


def terminal(table: Table) -> str:

    lines = [table.title + ("  [PARTIAL]" if table.partial else ""), "=" * len(table.title)]
    if table.display:
        lines.append(
            tabulate(display_rows(table), headers=list(table.header), tablefmt="simple", disable_numparse=True)
        )
    else:
        lines.append("(empty)")
    lines += [f"  note: {note}" for note in table.notes]
    return "\n".join(lines)


def markdown(table: Table) -> str:
    import pandas as pd  # heavy: pandas

    lines = [f"## {table.title}" + (" (partial)" if table.partial else ""), ""]
    if table.display:
        frame = pd.DataFrame(display_rows(table), columns=list(table.header))
        lines.append(frame.to_markdown(index=False, disable_numparse=True))
    else:
        lines.append("(empty)")
    if table.notes:
        lines.append("")
        lines += [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def latex(table: Table) -> str:
    import pandas as pd  # heavy: pandas

    header = [h.translate(_LATEX) for h in table.header]
    rows = [[fmt_cell(cell, pm="±", dash="—").translate(_LATEX) for cell in row] for row in table.display]
    frame = pd.DataFrame(rows, columns=header)
    caption = table.title.translate(_LATEX) + (" (partial)" if table.partial else "")
    body = (
        frame.to_latex(
            index=False, escape=False, caption=caption, label=f"tab:{table.name}", column_format="l" * len(header)
        )
        if rows
        else f"% {caption}: empty\n"
    )
    notes = "".join(f"% {note}\n" for note in table.notes)
    return body + notes


def csv_text(table: Table) -> str:
    import pandas as pd  # heavy: pandas

    if not table.rows:
        return ""
    frame = pd.json_normalize(list(table.rows), sep="_")
    return frame.to_csv(index=False)


def write_table_files(table: Table, out: Path) -> list[Path]:
    """<name>.md, <name>.csv and <name>.tex under `out`."""
    return [
        write_text_atomic(out / f"{table.name}.md", markdown(table)),
        write_text_atomic(out / f"{table.name}.csv", csv_text(table)),
        write_text_atomic(out / f"{table.name}.tex", latex(table)),
    ]


def gaps_markdown(report: dict[str, Any]) -> str:
    """Missing cells, bad records and unplanned records as markdown lists."""
    lines: list[str] = []
    for title, items, fmt in (
        ("Missing cells", report["missing"], lambda m: f"{m['key']} ({m['split']}): state {m['state']}, {m['reason']}"),
        (
            "Bad records (skipped)",
            report["problems"],
            lambda p: f"{p['path']}{'' if p['line'] is None else ':' + str(p['line'])}: {p['message']}",
        ),
        ("Unplanned records (not used)", report["unplanned"], lambda u: f"{u['key']} ({u['split']}): {u['path']}"),
        ("Duplicate records (ignored)", report["duplicates"], str),
    ):
        if items:
            lines += ["", f"## {title} ({len(items)})", ""] + [f"- {fmt(item)}" for item in items]
    return "\n".join(lines) + ("\n" if lines else "")


def report_markdown(tables: Iterable[Table], report: dict[str, Any]) -> str:
    head = [f"# Aggregate of {report['run_dir']} ({report['split']})", "", LEGEND, ""]
    head += [f"- {note}" for note in report["notes"]]
    return "\n".join(head) + "\n\n" + "\n".join(markdown(t) for t in tables) + gaps_markdown(report)


def terminal_gaps(report: dict[str, Any]) -> str:
    lines: list[str] = []
    for title, items, fmt in (
        ("missing cells", report["missing"], lambda m: f"{m['key']} ({m['split']}): {m['state']}, {m['reason']}"),
        (
            "bad records, skipped",
            report["problems"],
            lambda p: f"{p['path']}{'' if p['line'] is None else ':' + str(p['line'])}: {p['message']}",
        ),
        ("unplanned records, not used", report["unplanned"], lambda u: f"{u['key']} ({u['split']}): {u['path']}"),
    ):
        if not items:
            continue
        lines.append(f"{len(items)} {title}:")
        lines += [f"  {fmt(item)}" for item in items[:MISSING_SHOWN]]
        if len(items) > MISSING_SHOWN:
            lines.append(f"  ... and {len(items) - MISSING_SHOWN} more (see tables.md / tables.json)")
    return "\n".join(lines)
