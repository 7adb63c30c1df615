"""Every run under a runs folder: its status, date, final losses and config; deleting one.

A run folder (core.events) says what happened; `worker.pid` says whether a process is still
writing it. That file lets any watcher tell a live run from one whose worker died or whose server
was restarted ("interrupted"), and lets a restarted server re-attach to a worker still training.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import read_yaml_mapping
from core.errors import UserInputError
from core.events import TERMINAL_EVENTS, RunFolder, status_of

PID_FILE = "worker.pid"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # one path component, no traversal


# ------------------------------------------------------------------------------ the worker's pid
def write_worker_pid(run: RunFolder, pid: int) -> None:
    (run.path / PID_FILE).write_text(str(pid), encoding="utf-8")


def clear_worker_pid(run: RunFolder) -> None:
    (run.path / PID_FILE).unlink(missing_ok=True)


def live_worker_pid(run: RunFolder) -> int | None:
    """The pid of the process training this run if it still lives, else None.

    A recycled pid is not mistaken for the worker: on Linux its command line must name core.train,
    and a zombie (exited, not yet reaped) counts as dead.
    """
    try:
        pid = int((run.path / PID_FILE).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by someone else
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if b"core.train" not in (proc / "cmdline").read_bytes():
                return None
            # /proc/<pid>/stat: "pid (name) STATE ..."; the name may hold spaces, so split after ')'.
            if (proc / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                return None
        except OSError:
            return None
    return pid


# --------------------------------------------------------------------------------- run summaries
@dataclass
class RunSummary:
    name: str
    path: Path
    status: str  # done | stopped | error | running | starting | interrupted | new
    started: float | None  # unix time of the first event (or of config.yaml)
    step: int | None
    total_steps: int | None
    final_loss: float | None
    final_eval_loss: float | None
    config: dict[str, Any] = field(default_factory=dict)
    message: str = ""  # the error message of a failed run

    @property
    def has_adapter(self) -> bool:
        return (self.path / "adapter" / "adapter_config.json").is_file()


def run_status(run: RunFolder, events: list[dict[str, Any]]) -> str:
    """status_of() corrected by whether a worker still lives."""
    status = status_of(events)
    alive = live_worker_pid(run) is not None
    if status == "new" and alive:
        return "starting"  # loading the model and data: no event yet
    if status == "running" and not alive:
        return "interrupted"  # its worker was killed, or the machine restarted
    return status


def summarize(path: str | Path, events: list[dict[str, Any]] | None = None) -> RunSummary:
    run = RunFolder(path)
    events = run.all_events() if events is None else events
    try:
        config = read_yaml_mapping(run.config) if run.config.is_file() else {}
    except UserInputError:
        config = {}
    steps = [e for e in events if e["type"] == "step"]
    evals = [e for e in events if e["type"] == "eval"]
    final = next((e for e in reversed(events) if e["type"] in TERMINAL_EVENTS), None)
    start = next((e for e in reversed(events) if e["type"] == "start"), None)
    started = events[0]["time"] if events else (run.config.stat().st_mtime if run.config.is_file() else None)
    final_loss = (final or {}).get("final_loss", steps[-1]["loss"] if steps else None)
    final_eval = (final or {}).get("final_eval_loss", evals[-1]["eval_loss"] if evals else None)
    total = (final or {}).get("total_steps") or (steps[-1].get("total_steps") if steps else None) \
        or (start or {}).get("total_steps")
    return RunSummary(name=run.path.name, path=run.path, status=run_status(run, events), started=started,
                      step=steps[-1]["step"] if steps else None, total_steps=total,
                      final_loss=final_loss, final_eval_loss=final_eval, config=config,
                      message=(final or {}).get("message", "") if (final or {}).get("type") == "error" else "")


def list_runs(runs_dir: str | Path) -> list[RunSummary]:
    """Every folder of runs_dir that holds a config.yaml, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = [summarize(p) for p in runs_dir.iterdir() if (p / "config.yaml").is_file()]
    return sorted(runs, key=lambda r: r.started or 0.0, reverse=True)


def run_path(runs_dir: str | Path, name: str) -> Path:
    """runs_dir/name, refusing names that are not one plain path component."""
    if not RUN_NAME.fullmatch(name or ""):
        raise UserInputError(f"Run name {name!r} is not allowed: use letters, digits, '.', '_' or '-' "
                             f"(at most 100, starting with a letter or digit).")
    return Path(runs_dir) / name


def delete_run(runs_dir: str | Path, name: str) -> None:
    """Remove a run folder; refuse while its worker lives."""
    path = run_path(runs_dir, name)
    if not (path / "config.yaml").is_file():
        raise UserInputError(f"No run named {name!r} in {runs_dir}")
    if live_worker_pid(RunFolder(path)) is not None:
        raise UserInputError(f"Run {name!r} is training right now: stop it before deleting it.")
    shutil.rmtree(path)


# ------------------------------------------------------------------------------------ loss curve
def loss_points(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """(step, loss, series) points for a chart, series 'train' or 'eval', sorted by step.

    A resumed run may log a step twice (once before the stop, once after resuming from a checkpoint
    taken earlier): the later value wins, so the curve shows what the adapter actually went through.
    """
    points: dict[tuple[str, int], float] = {}
    for event in events:
        if event["type"] == "step" and event.get("loss") is not None:
            points[("train", event["step"])] = event["loss"]
        elif event["type"] == "eval" and event.get("eval_loss") is not None:
            points[("eval", event["step"])] = event["eval_loss"]
    return [{"step": step, "loss": loss, "series": series}
            for (series, step), loss in sorted(points.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
