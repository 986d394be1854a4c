"""How a CPU training process asks glibc for memory: blocks of 1 MiB and more mapped on their own.

Why: glibc's malloc serves a block from its heap unless the block is larger than the mmap threshold, and
that threshold rises (up to 32 MiB) each time a mapped block is freed. After the first training step
almost every tensor of a transformer layer (XLM-R Large: 8 MiB in bf16, 16 MiB in fp32) comes from the
heap, and the heap keeps what is freed in holes that later, differently sized tensors do not fit: the
resident set grows past the model states. A fixed 1 MiB threshold (`mallopt(M_MMAP_THRESHOLD)`, which
also turns the rising off; see mallopt(3)) maps every such tensor on its own and unmaps it when freed.
Measured (bench/large_cpu.py, XLM-R Large, ZeRO-3 bf16, 2 processes): 7.50 -> 6.70 GiB per process, the
step no slower; 64 KiB cut the peak as well but made each step 25% slower (docs/benchmarks.md).

Only CPU training calls it: on a GPU node the model states are in GPU memory. A threshold in the
environment (MALLOC_MMAP_THRESHOLD_, or glibc.malloc.mmap_threshold in GLIBC_TUNABLES; glibc reads both at
start) is the user's choice and is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 1 << 20
"""Blocks from this size up are mapped on their own (mallopt(3): M_MMAP_THRESHOLD)."""
M_MMAP_THRESHOLD = -3
"""The parameter's number in glibc's malloc.h."""
ENV = "MALLOC_MMAP_THRESHOLD_"
TUNABLE = "glibc.malloc.mmap_threshold"


def map_large_blocks(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Set glibc's mmap threshold to `threshold` bytes for this process; True when it was set (glibc, and
    no threshold in the environment), False otherwise (e.g. musl, macOS)."""
    if ENV in os.environ or TUNABLE in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))
    if not applied:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) was refused; the heap may hold freed memory", threshold)
    return applied
