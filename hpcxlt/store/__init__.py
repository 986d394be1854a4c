"""The run directory: layout and experiment (`run_dir`), per-cell state and submission records
(`cell_state`), the lock for commands that submit (`lock`)."""

from hpcxlt.store.cell_state import STATES
from hpcxlt.store.errors import RunDirError
from hpcxlt.store.lock import LOCK_FILE, RunLock
from hpcxlt.store.run_dir import RunStore

__all__ = ["LOCK_FILE", "STATES", "RunDirError", "RunLock", "RunStore"]
