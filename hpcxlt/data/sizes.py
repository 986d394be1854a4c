"""Training rows per (task, language) without loading `datasets`: what `hpcxlt plan` needs to show an arm's budget.

    train_rows(cfg, pairs, prepared=None) -> ({(task, lang): rows or None}, where the counts came from)

From the manifest that `hpcxlt prepare` writes (row counts of validated splits), when the config reads
a prepared folder (`data.source: local` with `root` holding manifest.json) or `prepared` names one;
otherwise, for local data, by reading the files (plain Python: fine for demo-sized data, slow for
large ones, where `prepare` is the way). Hub data without a prepared folder: unknown (None).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hpcxlt.config.schema import ExperimentConfig
from hpcxlt.data.local import MANIFEST, data_root, local_file, read_local_rows
from hpcxlt.io import read_json
from hpcxlt.tasks.registry import get_task


def train_rows(
    cfg: ExperimentConfig,
    pairs: Iterable[tuple[str, str]],
    prepared: str | Path | None = None,
) -> tuple[dict[tuple[str, str], int | None], str]:
    """Rows of each (task, lang) train split, capped by data.max_train_examples as training caps them."""

    pairs = list(pairs)
    folder = Path(prepared) if prepared else (data_root(cfg.data) if cfg.data.source == "local" else None)
    cap = cfg.data.max_train_examples
    out: dict[tuple[str, str], int | None] = {}
    manifest = read_json(folder / MANIFEST) if folder is not None and (folder / MANIFEST).is_file() else {}
    if folder is not None and "entries" in manifest:  # prepare's manifest (a synthetic benchmark's has other keys)
        entries = manifest["entries"]
        for task, lang in pairs:
            rows = entries.get(f"{task}/{lang}/train", {}).get("rows")
            out[(task, lang)] = None if rows is None else min(rows, cap) if cap else rows
        return out, f"{folder / MANIFEST}"
    if cfg.data.source != "local" or prepared:
        return {
            pair: None for pair in pairs
        }, "unknown (hub data: run `hpcxlt prepare CONFIG --out DIR`, then `plan --data DIR`)"
    for task, lang in pairs:
        spec = get_task(task)
        try:
            rows = len(read_local_rows(local_file(spec, lang, "train", cfg.data), spec, lang))
        except (OSError, ValueError):
            out[(task, lang)] = None
            continue
        out[(task, lang)] = min(rows, cap) if cap else rows
    return out, f"the files under {data_root(cfg.data)}"
