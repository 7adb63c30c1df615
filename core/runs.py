"""Every run under a runs folder: its status and what may be done with it, listing, preparing and
deleting one. The one place that knows what a run's state means: every tab and the runner ask here.

A run folder (core.events) says what happened; `worker.pid` (written by the web runner) and
`train.lock` (held by every trainer, core.lock) say whether a process is still writing it. They let
any watcher tell a live run from one whose worker died or whose server was restarted
("interrupted"), and let a restarted server re-attach to a worker still training.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.config import TrainConfig, config_to_yaml, read_yaml_mapping
from core.dataset_info import dataset_problem
from core.errors import UserInputError
from core.estimate import eta_s
from core.events import TERMINAL_EVENTS, RunFolder, last_event
from core.lock import PROC, LockHeld, lock_holder, pid_alive
from core.paths import HUB_ID, path_errors, shown_path

PID_FILE = "worker.pid"
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # one path component, no traversal
# Folders the runs folder keeps for itself, not runs: the web UI's uploaded datasets (webui.tabs.data.UPLOADS).
RESERVED_NAMES = frozenset({"uploads"})


# --------------------------------------------------------------------------- paths the user typed
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
        if not pid_alive(pid):
            return None
        if PROC.is_dir() and b"core.train" not in (PROC / str(pid) / "cmdline").read_bytes():
            return None
    except (OSError, ValueError):
        return None
    return pid


# ------------------------------------------------------------------------------------ run status
class RunStatus(StrEnum):
    NEW = "new"  # a folder with a config and no event yet
    STARTING = "starting"  # its worker lives and loads the model: no event yet
    RUNNING = "running"  # started, no final event yet, worker alive
    DONE = "done"
    STOPPED = "stopped"
    ERROR = "error"
    INTERRUPTED = "interrupted"  # started, no final event, and no worker any more (killed, machine restarted)

    @property
    def active(self) -> bool:
        """A worker is (or should be) writing this run."""
        return self in (RunStatus.STARTING, RunStatus.RUNNING)

    @property
    def ended(self) -> bool:
        """Nothing writes this run any more."""
        return self in (RunStatus.DONE, RunStatus.STOPPED, RunStatus.ERROR, RunStatus.INTERRUPTED)


RESUMABLE = (RunStatus.STOPPED, RunStatus.ERROR, RunStatus.INTERRUPTED)


def logged_status(events: list[dict[str, Any]]) -> RunStatus:
    """What the events alone say: the final event's type, RUNNING after a start, NEW with no events.

    A resumed run appends a new `start` after its earlier `stopped`: the newest of the two wins.
    """
    event = last_event(events, *TERMINAL_EVENTS, "start")
    if event is None:
        return RunStatus.RUNNING if events else RunStatus.NEW
    return RunStatus.RUNNING if event["type"] == "start" else RunStatus(event["type"])


def run_status(run: RunFolder, events: list[dict[str, Any]]) -> RunStatus:
    """logged_status() corrected by whether a trainer still lives: the web runner's worker, or any
    trainer holding the folder's lock (a CLI run into the runs folder)."""
    status = logged_status(events)
    alive = live_worker_pid(run) is not None or lock_holder(run.path) is not None
    if status == RunStatus.NEW and alive:
        return RunStatus.STARTING
    if status == RunStatus.RUNNING and not alive:
        return RunStatus.INTERRUPTED
    return status


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: float
    tokens_per_s: float
    elapsed_s: float
    eta_s: float | None  # None until a step of this attempt has been timed


def progress_of(events: list[dict[str, Any]]) -> Progress | None:
    """Where the newest attempt stands, from its last step event; None before the first step."""
    last = last_event(events, "step")
    if last is None:
        return None
    start = last_event(events, "start") or {}
    total = last.get("total_steps") or start.get("total_steps") or last["step"]
    return Progress(
        step=last["step"],
        total_steps=total,
        epoch=last.get("epoch", 0.0),
        tokens_per_s=last.get("tokens_per_s", 0.0),
        elapsed_s=last.get("elapsed_s", 0.0),
        eta_s=eta_s(events),
    )


# ------------------------------------------------------------------------------------- run state
@dataclass
class RunState:
    """One run as every tab and the runner see it: status, numbers, and what may be done with it."""

    name: str
    path: Path
    status: RunStatus
    started: float | None  # unix time of the first event (or of config.yaml)
    step: int | None
    total_steps: int | None
    final_loss: float | None
    final_eval_loss: float | None
    config: dict[str, Any] = field(default_factory=dict)
    message: str = ""  # the error message of a failed run

    @property
    def run(self) -> RunFolder:
        return RunFolder(self.path)

    @property
    def has_adapter(self) -> bool:
        return (self.run.adapter / "adapter_config.json").is_file()

    @property
    def can_resume(self) -> bool:
        return self.status in RESUMABLE and self.run.latest_checkpoint() is not None

    @property
    def can_chat(self) -> bool:
        """An adapter that nothing writes any more (a stopped or failed run's is still usable)."""
        return self.has_adapter and self.status.ended

    @property
    def can_export(self) -> bool:
        # Export reads the same finished adapter that chat loads: one rule for both.
        return self.can_chat


def run_state(path: str | Path, events: list[dict[str, Any]] | None = None) -> RunState:
    run = RunFolder(path)
    events = run.all_events() if events is None else events
    try:
        config = read_yaml_mapping(run.config) if run.config.is_file() else {}
    except UserInputError:
        config = {}
    final = last_event(events, *TERMINAL_EVENTS) or {}
    last_step, last_eval = last_event(events, "step") or {}, last_event(events, "eval") or {}
    started = events[0]["time"] if events else (run.config.stat().st_mtime if run.config.is_file() else None)
    total = (
        final.get("total_steps")
        or last_step.get("total_steps")
        or (last_event(events, "start") or {}).get("total_steps")
    )
    return RunState(
        name=run.path.name,
        path=run.path,
        status=run_status(run, events),
        started=started,
        step=last_step.get("step"),
        total_steps=total,
        final_loss=final.get("final_loss", last_step.get("loss")),
        final_eval_loss=final.get("final_eval_loss", last_eval.get("eval_loss")),
        config=config,
        message=final.get("message", "") if final.get("type") == "error" else "",
    )


def _reserved(name: str) -> bool:
    return name.lower() in RESERVED_NAMES  # lower(): one folder on a case-insensitive file system


def list_runs(runs_dir: str | Path) -> list[RunState]:
    """Every folder of runs_dir that holds a config.yaml, newest first; never a reserved folder."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    runs = [run_state(p) for p in runs_dir.iterdir() if not _reserved(p.name) and (p / "config.yaml").is_file()]
    return sorted(runs, key=lambda r: r.started or 0.0, reverse=True)


def run_path(runs_dir: str | Path, name: str) -> Path:
    """runs_dir/name, refusing names that are not one plain path component, and the reserved ones."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise UserInputError(
            f"Run name {shown_path(repr(name))} is not allowed: use letters, digits, '.', '_' "
            f"or '-' (at most 100, starting with a letter or digit)."
        )
    if _reserved(name):
        raise UserInputError(
            f"Run name {name!r} is not allowed: the runs folder keeps its "
            f"{name.lower()!r} folder for itself. Choose another name."
        )
    return Path(runs_dir) / name


def delete_run(runs_dir: str | Path, name: str) -> None:
    """Remove a run folder; refuse while a trainer writes it."""
    path = run_path(runs_dir, name)
    if not (path / "config.yaml").is_file():
        raise UserInputError(f"No run named {name!r} in {runs_dir}")
    if live_worker_pid(RunFolder(path)) is not None or lock_holder(path) is not None:
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
    return [
        {"step": step, "loss": loss, "series": series}
        for (series, step), loss in sorted(points.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


# ----------------------------------------------------------------------------- preparing a run
def run_folder_of(config: TrainConfig) -> RunFolder:
    """The folder config.output_dir names, absolute."""
    with path_errors("Run folder", config.output_dir):
        return RunFolder(Path(config.output_dir).resolve())


def check_run_folder(config: TrainConfig) -> RunFolder:
    """The run folder `config` may train in: refused while another trainer writes it, and when it
    already holds a run that `config` does not resume (that would mix two runs' events)."""
    run = run_folder_of(config)
    with path_errors("Run folder", run.path):
        # The web runner writes its worker's pid, and a trainer checks the folder it has locked itself.
        if live_worker_pid(run) not in (None, os.getpid()):
            raise UserInputError(
                f"Run folder {run.path} is being trained by another process right now: wait for it, or stop it first."
            )
        holder = lock_holder(run.path)
        if holder is not None and holder.pid != os.getpid():
            raise LockHeld(run.path, holder)
        if run.events.is_file() and run.events.stat().st_size and not config.resume:
            raise UserInputError(
                f"Run folder {run.path} already holds a run: choose another output_dir (run "
                f"name), or continue that run with resume=true."
            )
    return run


def _local(value: str, workdir: Path) -> Path:
    return workdir / Path(value.strip()).expanduser()  # an absolute value stays as it is


def _model_problem(value: str, workdir: Path) -> str | None:
    """The rules of core.models.resolve_model that need no torch: 'default' and a hub id pass (only
    loading can tell whether the hub has one), a local path must be there."""
    name = value.strip()
    if name == "default":
        return None
    path = _local(name, workdir)
    with path_errors("Model", value):
        if path.suffix == ".gguf":
            return None if path.is_file() else f"GGUF file not found: {shown_path(path)}"
        if path.is_dir():
            return (
                None
                if (path / "config.json").is_file()
                else f"{shown_path(path)} is a folder but has no config.json: not a Hugging Face model folder"
            )
    return None if HUB_ID.fullmatch(name) else f"Model folder not found: {shown_path(path)}"


def check_inputs(config: TrainConfig, workdir: Path | None = None) -> None:
    """The dataset and the model a worker will read, checked before one starts: a clear message
    now instead of a worker that fails once torch has loaded. Relative paths are taken from
    `workdir`, the directory the worker runs in (this process's own by default)."""
    workdir = workdir or Path.cwd()
    problems = [p for p in (dataset_problem(config, workdir), _model_problem(config.model_name_or_path, workdir)) if p]
    if len(problems) == 1:
        raise UserInputError(problems[0])
    if problems:
        raise UserInputError("Cannot start the run:", problems)


def prepare_run(config: TrainConfig, workdir: Path | None = None) -> RunFolder:
    """Check the inputs and the folder, and write what a worker needs: the one place that sets a
    run folder up."""
    check_inputs(config, workdir)
    run = check_run_folder(config)
    with path_errors("Run folder", run.path):
        run.prepare(config_to_yaml(config))
    return run
