"""glibc maps a 2 MiB block on its own once `map_large_blocks` has run, and serves it from the heap before.

The oracle is glibc's own accounting (mallinfo2(3): `hblks`, the number of blocks mapped with mmap), read
in a fresh process so this one's allocator is left alone. Freeing a mapped 16 MiB block first raises
glibc's dynamic threshold to 16 MiB, which is what a training step does with its layer-sized tensors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import ctypes, sys
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.free(libc.malloc(16 << 20))  # a mapped block freed: glibc's threshold rises to 16 MiB
applied = None
if sys.argv[1] == "apply":
    from hpcxlt.train.host_memory import map_large_blocks
    applied = map_large_blocks()
before = libc.mallinfo2().hblks
block = libc.malloc(2 << 20)
print(applied, libc.mallinfo2().hblks - before)
libc.free(block)
"""


def probe(mode: str, env: dict[str, str] | None = None) -> str:
    full = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    full.update({"PYTHONPATH": str(REPO), **(env or {})})
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=full, check=True, timeout=60
    )
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_two_mib_block_is_mapped_on_its_own_after_the_call():
    assert probe("keep") == "None 0"  # from the heap: glibc's raised threshold
    assert probe("apply") == "True 1"  # mapped: unmapped again when freed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_users_environment_setting_is_left_alone():
    # 32 MiB from the environment, either way glibc reads it: the 2 MiB block stays on the heap and the call
    # changes nothing
    assert probe("apply", {"MALLOC_MMAP_THRESHOLD_": str(32 << 20)}) == "False 0"
    assert probe("apply", {"GLIBC_TUNABLES": f"glibc.malloc.mmap_threshold={32 << 20}"}) == "False 0"
