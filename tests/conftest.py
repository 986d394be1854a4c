"""Suite-wide guards.

In CI (env CI set) the real Slurm cluster, MPI and multi-process DeepSpeed must run: a test marked
`slurm`, `mpi` or `deepspeed` that skips there is a hole, so it turns the run red.
"""

from __future__ import annotations

import os

import pytest

REAL_COMPONENT_MARKERS = ("slurm", "mpi", "deepspeed")
_skipped_real: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and any(item.get_closest_marker(m) for m in REAL_COMPONENT_MARKERS):
        _skipped_real.append(
            f"{item.nodeid}: {report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr}"
        )


def pytest_sessionfinish(session, exitstatus):
    if _skipped_real:
        print("\nCI must run every Slurm/MPI/DeepSpeed test, but these skipped:")
        for line in _skipped_real:
            print(f"  {line}")
        session.exitstatus = 1
