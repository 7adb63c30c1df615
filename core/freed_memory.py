"""On the CPU, give the heap's free memory back to the system while a step's peak grows (glibc's malloc).

A training step's activations (megabytes each) come from glibc's heap, whose holes, left by the
step's many short-lived tensors of other sizes, stay part of the process: on long rows it grows
to about twice what autograd holds (bench/README.md). malloc_trim(0) hands every whole free page
inside the heap back (madvise). Trimming after every decoder layer keeps the peak near what is
live, but the next layers fault the trimmed pages in again, which costs step time; trimming only
when the process's peak RSS has grown by TRIM_PEAK_STEP_BYTES since the last trim bounds the peak
the same way while it is being set, and stops once it is (figures in bench/README.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TRIM_PEAK_STEP_BYTES = 64 << 20


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim; None where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        trim = libc.malloc_trim
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def trim_heap_after_layers(model: torch.nn.Module, peak_step_bytes: int = TRIM_PEAK_STEP_BYTES) -> int:
    """After the forward of every decoder layer (a module whose class name ends in DecoderLayer) run
    with autograd, trim the heap if the process's peak RSS has grown by peak_step_bytes since the last
    trim; returns how many layers can trim (0 where the C library is not glibc)."""
    import torch  # here: core.config reads this module's step and imports no torch

    trim = _malloc_trim()
    if trim is None:
        return 0
    last_peak = [0]

    def after_layer(_module, _args, _output) -> None:
        if not torch.is_grad_enabled():  # nothing kept for backward: no holes worth a trim
            return
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        if peak >= last_peak[0] + peak_step_bytes:
            trim(0)
            last_peak[0] = peak

    layers = [module for module in model.modules() if type(module).__name__.endswith("DecoderLayer")]
    for layer in layers:
        layer.register_forward_hook(after_layer)
    return len(layers)
