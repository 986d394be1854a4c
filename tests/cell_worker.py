"""Run the training cells of a run directory with `train_cell`, in plan order, under any launcher.

torchrun --nproc_per_node 2 tests/cell_worker.py RUN_DIR [CELL_KEY ...]
"""

from __future__ import annotations

import logging
import sys

from hpcxlt.store import RunStore
from hpcxlt.train.preemption import EXIT_PREEMPTED, Preempted
from hpcxlt.train.run import train_cell


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s: %(message)s")
    logging.getLogger("hpcxlt").setLevel(logging.INFO)
    store = RunStore(argv[0])
    cfg, plan = store.load_config(), store.load_plan()
    wanted = set(argv[1:])
    for cell in plan.cells:
        if cell.stage in ("intermediate", "target") and (not wanted or cell.key in wanted):
            try:
                train_cell(cfg, cell, store)
            except Preempted as stop:
                print(stop, flush=True)
                return EXIT_PREEMPTED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
