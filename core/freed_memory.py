"""On the CPU, give a freed activation's memory back to the system at once (glibc's malloc).

glibc serves a request below its mmap threshold from the heap and, each time a mapped block is
freed, raises that threshold to the block's size (up to 32 MiB). A training step's activations
(megabytes each) then come from the heap, whose holes, left by the step's many short-lived
tensors of other sizes, are kept: the process grows to about twice what autograd holds
(bench/README.md). A fixed threshold (M_MMAP_THRESHOLD, which also stops the raising) maps each
large block on its own and unmaps it when freed, so the peak RSS is what is live; the price is
that every new block's pages are faulted in and zeroed again (slower steps on long rows).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20  # smaller blocks stay on the heap: mapping each costs page faults


def map_large_blocks(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold for this process; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only: musl's mallopt does nothing
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold_bytes) == 1
