"""`hpcxlt report RUN`: one self-contained HTML page that answers the research question, with provenance.

    write_report(store, out) -> the page: the question and the design, the headline answer (the tested
    comparisons, zero-shot rows first), every table and plot, per-language detail folded, what is
    missing, and provenance (hpcxlt's version and commit, package versions, config and site as run,
    dates, hours used)

Self-contained: the plots are inline (data: URIs), the style is inline, nothing is fetched; a small inline
script counts the images that rendered and the resources the page fetched (`data-images-rendered`,
`data-resources-fetched` on <body>), which the test reads back from a headless Chromium. It reads what `hpcxlt aggregate` wrote (tables/tables.json, the tables' CSV files and
PNG plots): it computes nothing of its own.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hpcxlt import version as hpcxlt_version
from hpcxlt.io import read_json, write_text_atomic
from hpcxlt.launch.manage.cost_used import cost_used
from hpcxlt.launch.record import read_launch
from hpcxlt.store import RunStore

QUESTION = (
    "Does adding multilingual intermediate tasks from low-resource languages to English intermediate-task "
    "training improve zero-shot cross-lingual transfer of XLM-R on XTREME-R, compared with English-only "
    "intermediate tasks (Phang et al. 2020)?"
)
PACKAGES = ("torch", "deepspeed", "transformers", "datasets", "submitit", "mpi4py", "numpy", "scipy")
# table order on the page; the rest follow in the order aggregate wrote them
HEADLINE = ("significance", "significance_resource")
FOLDED = ("languages", "significance_languages")


class ReportError(RuntimeError):
    """The run has nothing to report yet (no aggregated tables)."""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _csv_table(path: Path, *, zero_shot_first: bool = False) -> str:
    if not path.is_file():
        return "<p><em>not written</em></p>"
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return "<p><em>empty</em></p>"
    header, body = rows[0], rows[1:]
    if zero_shot_first and "languages" in header:
        column = header.index("languages")
        body.sort(key=lambda row: 0 if row[column] == "unseen" else 1)  # stable: the table's order otherwise
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    lines = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>"


def _plots(folder: Path) -> str:
    out = []
    for png in sorted(folder.glob("*.png")):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        out.append(
            f'<figure><img alt="{_esc(png.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(png.name)}</figcaption></figure>"
        )
    return "\n".join(out) or "<p><em>no plots (aggregate --no-plots?)</em></p>"


def _versions() -> dict[str, str]:

    out = {"hpcxlt": hpcxlt_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _design(store: RunStore) -> str:
    cfg = store.load_config()
    plan = store.load_plan()
    arms = "".join(
        f"<li><b>{_esc(a.name)}</b>: {_esc(', '.join(a.tasks) or 'no intermediate task')}"
        + (f"; compared with {_esc(a.compare_to)}" if a.compare_to else "")
        + (f"; matched control {_esc(a.control)}" if a.control else "")
        + "</li>"
        for a in cfg.arms
    )
    return (
        f"<p>Experiment <b>{_esc(cfg.name)}</b>: {_esc(cfg.description)}</p><ul>{arms}</ul>"
        f"<p>Targets: {_esc(', '.join(cfg.targets.tasks))}; seeds: {_esc(', '.join(map(str, cfg.seeds)))}; "
        f"{len(plan.cells)} cells in {len(plan.jobs)} jobs.</p>"
    )


def write_report(store: RunStore, out: Path) -> Path:
    if not store.tables_json.is_file():
        raise ReportError(
            f"{store.tables_json} does not exist: `hpcxlt aggregate {store.root}` writes the tables first"
        )

    data = read_json(store.tables_json)
    tables_dir = store.tables_json.parent
    launch = read_launch(store) or {}
    cost = cost_used(store, store.load_plan(), store.load_config(), None)
    sections = []
    for name in HEADLINE:
        title = data["tables"].get(name, {}).get("title", name)
        notes = "".join(f"<li>{_esc(n)}</li>" for n in data["tables"].get(name, {}).get("notes", []))
        sections.append(
            f"<h3>{_esc(title)}</h3>{_csv_table(tables_dir / f'{name}.csv', zero_shot_first=True)}"
            f"<ul class=notes>{notes}</ul>"
        )
    others = []
    for name, table in data["tables"].items():
        if name in HEADLINE:
            continue
        block = f"<h3>{_esc(table.get('title', name))}</h3>{_csv_table(tables_dir / f'{name}.csv')}" + "".join(
            f"<p class=note>{_esc(n)}</p>" for n in table.get("notes", [])
        )
        others.append(
            f"<details><summary>{_esc(table.get('title', name))}</summary>{block}</details>"
            if name in FOLDED
            else block
        )
    missing = data.get("missing") or []
    history = launch.get("history") or []
    dates = {
        "submitted first": history[0]["time"] if history else None,
        "submitted last": history[-1]["time"] if history else None,
        "tables written": store.tables_json.stat().st_mtime,
    }
    provenance = {
        "versions": _versions(),
        "dates": {k: (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v)) if v else "-") for k, v in dates.items()},
        "executor": launch.get("executor"),
        "hours used (wall, per stage)": {stage: c["used_hours"] for stage, c in cost.items()},
        "records": data.get("records"),
    }
    site = json.dumps((launch.get("site") or {}).get("data"), indent=2) if launch.get("site") else "local executor"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hpcxlt report: {_esc(data.get("experiment"))}</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 1em auto; padding: 0 1em; color: #222 }}
table {{ border-collapse: collapse; margin: 0.5em 0; font-size: 0.85em }}
th, td {{ border: 1px solid #bbb; padding: 2px 6px; text-align: left }}
th {{ background: #eee }} figure {{ display: inline-block; margin: 0.5em }} img {{ max-width: 560px }}
pre {{ background: #f6f6f6; padding: 0.5em; overflow-x: auto; font-size: 0.8em }} .note, .notes {{ color: #555; font-size: 0.85em }}
</style></head>
<body data-images-rendered="0" data-resources-fetched="unknown">
<h1>hpcxlt report: {_esc(data.get("experiment"))}</h1>
<h2>The question</h2><p>{_esc(QUESTION)}</p>
<h2>The design</h2>{_design(store)}
<h2>The answer: tested comparisons (zero-shot rows first)</h2>
<p>Split {_esc(data.get("split"))}{"; computed with --partial" if data.get("partial_mode") else ""}.
A row is tested only over target languages neither arm trained on; rows marked seen are shown apart. See
docs/statistics.md for the method.</p>
{"".join(sections)}
<h2>Tables</h2>{"".join(others)}
<h2>Plots</h2>{_plots(tables_dir)}
<h2>What is missing</h2>
<p>{len(missing)} planned cell(s) without a usable record.</p>{"".join(f"<p class=note>{_esc(n)}</p>" for n in data.get("notes", []))}
<h2>Provenance</h2><pre>{_esc(json.dumps(provenance, indent=2, default=str))}</pre>
<details><summary>config as run (config.yaml)</summary><pre>{_esc(store.config_path.read_text(encoding="utf-8"))}</pre></details>
<details><summary>site as run</summary><pre>{_esc(site)}</pre></details>
<script>
window.addEventListener("load", function () {{
  var shown = Array.prototype.filter.call(document.images, function (i) {{ return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute("data-images-rendered", String(shown.length));
  // every resource the page fetched (data: URIs are none): a self-contained page fetches nothing
  var fetched = performance.getEntriesByType("resource").map(function (e) {{ return e.name; }});
  document.body.setAttribute("data-resources-fetched", String(fetched.length));
}});
</script>
</body></html>
"""
    return write_text_atomic(out, page)


__all__ = ["ReportError", "write_report"]
