"""The C allocator of a training process on Linux: mimalloc (the cmeel-mimalloc package) in place of glibc's malloc.

glibc's heap keeps the holes a step's short-lived tensors leave between longer-lived blocks: on the
long rows of bench/README.md a process holding ~2 GB for backward grew by ~4.5 GB over one forward,
with ~75 MB more of free but unusable heap after every decoder layer. mimalloc keeps blocks of each
size class together in its own pages, so freed blocks are reused by the next ones of their size. With
MIMALLOC_PURGE_DELAY=-1 it keeps the memory it freed for reuse instead of handing it back to the
system (each page handed back is faulted in and zeroed again when reused): a training process lives
for one run, and its peak is what counts.

An allocator is chosen when a process starts: `python -m core.train` (the web runner's worker too)
restarts itself once with mimalloc preloaded (LD_PRELOAD) before it imports torch; in-process callers
(tests) keep the allocator they were started with.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

MIMALLOC = "mimalloc"
SYSTEM = "system"
CPU_ALLOCATORS = (MIMALLOC, SYSTEM)
DISTRIBUTION = "cmeel-mimalloc"  # a wheel for x86_64 Linux (requirements.txt's marker); elsewhere: the system's
LIBRARY_NAME = "libmimalloc.so"
RESTARTED = "LORA_TAILOR_ALLOCATOR_RESTART"  # set on the restart: never restart twice, even if the preload failed
GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/kfd")  # NVIDIA's driver, AMD's ROCm
# mimalloc's own settings for training: keep freed memory for reuse (see above); no messages on stderr.
MIMALLOC_SETTINGS = {"MIMALLOC_PURGE_DELAY": "-1", "MIMALLOC_VERBOSE": "0"}


def mimalloc_library() -> Path | None:
    """The installed libmimalloc.so, or None where the package is not installed (or ships none)."""
    try:
        files = metadata.distribution(DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name.startswith(LIBRARY_NAME):
            path = Path(file.locate())
            if path.is_file():
                return path
    return None


def active_allocator() -> str:
    """'mimalloc' when this process has mimalloc loaded, else 'system'."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return SYSTEM
    return MIMALLOC if LIBRARY_NAME in maps else SYSTEM


def preload_environment(library: Path, environ: dict[str, str]) -> dict[str, str]:
    """`environ` with `library` first in LD_PRELOAD, mimalloc's settings (unless already set) and the
    restart marker."""
    preload = " ".join(p for p in (str(library), environ.get("LD_PRELOAD", "")) if p)
    return {**MIMALLOC_SETTINGS, **environ, "LD_PRELOAD": preload, RESTARTED: "1"}


def has_gpu_driver() -> bool:
    """Whether an NVIDIA or AMD GPU driver is loaded (then training runs on the GPU), read without torch."""
    return any(Path(p).exists() for p in GPU_DRIVER_FILES)


def restart_with(allocator: str) -> None:
    """Replace this process (same pid, same command line) by one that runs with `allocator`, where
    that is mimalloc, it is installed, this is Linux without a GPU, and it is not loaded yet;
    otherwise return."""
    if allocator != MIMALLOC or not sys.platform.startswith("linux") or os.environ.get(RESTARTED):
        return
    if has_gpu_driver() or active_allocator() == MIMALLOC:
        return
    library = mimalloc_library()
    if library is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, preload_environment(library, dict(os.environ)))
