"""The training process's C allocator (core.cpu_allocator): `python -m core.train` restarts itself with
mimalloc preloaded, once, keeping its pid and command line; the arithmetic is the allocator's no matter."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from core import cpu_allocator
from tests.run_helpers import events_by_type, write_config

REPO = Path(__file__).resolve().parent.parent
SHIPS_MIMALLOC = sys.platform.startswith("linux") and platform.machine() == "x86_64"  # requirements.txt's marker


def test_the_preload_comes_first_and_the_users_settings_stay():
    library = Path("/opt/lib/libmimalloc.so.3")
    env = cpu_allocator.preload_environment(library, {"LD_PRELOAD": "/usr/lib/other.so", "MIMALLOC_PURGE_DELAY": "10"})
    assert env["LD_PRELOAD"] == "/opt/lib/libmimalloc.so.3 /usr/lib/other.so"
    assert env["MIMALLOC_PURGE_DELAY"] == "10"  # set by the user: kept
    assert env["MIMALLOC_VERBOSE"] == "0" and env[cpu_allocator.RESTARTED] == "1"
    assert cpu_allocator.preload_environment(library, {})["LD_PRELOAD"] == str(library)


def test_a_restarted_process_never_restarts_again(monkeypatch):
    monkeypatch.setenv(cpu_allocator.RESTARTED, "1")  # e.g. the preload failed: mimalloc not loaded
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("restarted twice"))
    cpu_allocator.restart_with(cpu_allocator.MIMALLOC)
    monkeypatch.delenv(cpu_allocator.RESTARTED)
    cpu_allocator.restart_with(cpu_allocator.SYSTEM)  # the system's allocator needs no restart


@pytest.mark.skipif(not SHIPS_MIMALLOC, reason="cmeel-mimalloc ships for x86_64 Linux only")
def test_the_installed_library_is_found():
    library = cpu_allocator.mimalloc_library()
    assert library is not None and library.name.startswith(cpu_allocator.LIBRARY_NAME) and library.is_file()


def train(tmp_path: Path, model_dir: Path, dataset: Path, allocator: str) -> tuple[subprocess.CompletedProcess, dict]:
    config = write_config(tmp_path / allocator / "config.yaml", model_dir, dataset, cpu_allocator=allocator)
    done = subprocess.run(
        [sys.executable, "-m", "core.train", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done, events_by_type(tmp_path / allocator / "run")


@pytest.mark.skipif(
    not SHIPS_MIMALLOC or cpu_allocator.has_gpu_driver(), reason="mimalloc is used on x86_64 Linux without a GPU"
)
def test_training_restarts_with_mimalloc_and_learns_the_same(tiny_model_dir, dataset, tmp_path):
    runs = {
        allocator: train(tmp_path, tiny_model_dir, dataset, allocator) for allocator in cpu_allocator.CPU_ALLOCATORS
    }
    (mimalloc_start,) = runs[cpu_allocator.MIMALLOC][1]["start"]
    (system_start,) = runs[cpu_allocator.SYSTEM][1]["start"]
    assert mimalloc_start["optimisations"]["cpu_allocator"] == cpu_allocator.MIMALLOC
    assert system_start["optimisations"]["cpu_allocator"] == cpu_allocator.SYSTEM
    # glibc's heap trimming is for the system allocator only
    assert mimalloc_start["optimisations"]["release_freed_memory_layers"] == 0
    assert system_start["optimisations"]["release_freed_memory_layers"] > 0
    # the restart printed nothing twice: one line of result each
    for done, _ in runs.values():
        assert done.stdout.count("final loss") == 1
    losses = {a: [e["loss"] for e in events["step"]] for a, (_, events) in runs.items()}
    assert losses[cpu_allocator.MIMALLOC] == losses[cpu_allocator.SYSTEM] and len(losses[cpu_allocator.SYSTEM]) == 3
