"""From result records to tables and plots: `hpcxlt aggregate RUN_DIR`.

records.py (read + check one record) and columns.py (a rank's files, column-wise) -> gather.py (the
gather over the ranks of mpi_world.py, the only mpi4py import; duplicates.py: one record per cell) ->
score_book.py (records against the plan; per-seed scores via hpcxlt.evaluate.scoring) -> seed_stats.py
(means over seeds, descriptive differences) and significance.py (the paired test) -> tables.py and
tested_tables.py -> render.py (md, csv, tex, json) / plots.py (png); aggregate_run.py ties them
together. Heavy imports (pyarrow, scipy, matplotlib, mpi4py) happen inside functions.
"""
