"""The one training process of this server: start, stop, resume, re-attach, notice a dead worker.

No gradio here: the tabs call it and the tests drive it directly. Its state lives in this object
(one per server) and in the run folder, never in a browser session, so every page that opens shows
the same job, and closing a page stops nothing.

The worker is `python -m core.train <run>/config.yaml`, started without a shell in its own process
group (so Ctrl-C in the server's terminal does not reach it) with stdout/stderr in <run>/train.log.
With num_processes > 1 the worker is the launcher of its ranks (core.distributed), which share its
process group: the SIGTERM / SIGKILL fallbacks below reach every rank.
A watcher thread per job waits for it, escalates a stop that is not honoured (STOP file, then
SIGTERM, then SIGKILL) and, when the worker exits without a final event, writes one: a crash or an
OOM kill then shows up as an `error` with the log tail instead of a run that looks busy forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.config import TrainConfig, load_config
from core.distributed import check_run, visible_devices
from core.errors import UserInputError
from core.events import RunFolder
from core.lock import lock_holder
from core.paths import PROJECT_ROOT
from core.runs import (
    RunStatus,
    clear_worker_pid,
    live_worker_pid,
    logged_status,
    path_errors,
    prepare_run,
    run_folder_of,
    run_state,
    shown_path,
    write_worker_pid,
)

STOP_GRACE_S = 120.0  # a step of a 7B model on a slow GPU, plus saving the checkpoint and adapter
KILL_GRACE_S = 30.0  # after SIGTERM, which the trainer also honours at the end of the step


def process_choices() -> list[int]:
    """The num_processes this machine can train with: 1 up to its visible GPUs, or on a machine
    without CUDA up to its CPU cores (gloo processes)."""
    return list(range(1, max(visible_devices()[1], 1) + 1))


class JobRunning(UserInputError):
    """A second start while a job runs; `run` names the running one."""

    def __init__(self, run: RunFolder):
        self.run = run
        super().__init__(
            f"A training job is already running ({run.path.name}): stop it or wait for it "
            f"to finish before starting another."
        )


class _AdoptedProcess:
    """A worker started by an earlier server process: no Popen, only its pid."""

    def __init__(self, run: RunFolder, pid: int):
        self.run, self.pid, self.returncode = run, pid, None

    def poll(self) -> int | None:
        return None if live_worker_pid(self.run) == self.pid else -1

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.2)
        self.returncode = -1  # not our child: its exit status is unknown
        return self.returncode


@dataclass
class Job:
    run: RunFolder
    process: Any  # subprocess.Popen or _AdoptedProcess
    stop_requested_at: float | None = None
    signals_sent: int = 0  # 1 after SIGTERM, 2 after SIGKILL


def _describe_exit(code: int | None) -> str:
    if code is None or code == -1:  # -1: an adopted worker, whose status is not ours to read
        return "an unknown exit status"
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class Runner:
    def __init__(self, runs_dir: str | Path, stop_grace_s: float = STOP_GRACE_S, kill_grace_s: float = KILL_GRACE_S):
        self.runs_dir = Path(runs_dir).resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.stop_grace_s, self.kill_grace_s = stop_grace_s, kill_grace_s
        self._lock = threading.Lock()
        self._job: Job | None = None
        self._last: RunFolder | None = None  # the job to show once it has ended
        self._events: dict[Path, tuple[int, list[dict[str, Any]]]] = {}
        self._adopt()

    # ------------------------------------------------------------------------------ looking
    def running(self) -> RunFolder | None:
        with self._lock:
            return self._job.run if self._job else None

    def current(self) -> RunFolder | None:
        """The running job, else the last one this server ran (what the train tab shows)."""
        with self._lock:
            if self._job is None and self._last is not None and not self._last.path.is_dir():
                self._last = None  # deleted on the runs tab
            return self._job.run if self._job else self._last

    def stop_requested(self) -> bool:
        with self._lock:
            return bool(self._job and self._job.stop_requested_at)

    def events(self, run: RunFolder) -> list[dict[str, Any]]:
        """All events of a run, read incrementally: each poll reads only the new bytes."""
        with self._lock:
            offset, events = self._events.get(run.path, (0, []))
            size = run.events.stat().st_size if run.events.is_file() else 0
            if size < offset:  # the folder was deleted and made again
                offset, events = 0, []
            new, offset = run.read_events(offset)
            events = events + new
            self._events[run.path] = (offset, events)
            return events

    def wait(self, timeout: float) -> bool:
        """Block until no job runs (True) or the timeout passes (False). For tests and scripts."""
        deadline = time.monotonic() + timeout
        while self.running() is not None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    # ---------------------------------------------------------------------------- starting
    def start(self, config: TrainConfig) -> RunFolder:
        """Write <run>/config.yaml and start the worker; refuse when a job runs.

        A fresh start needs a run folder without events (pick another run name); a config with
        resume: true continues a folder that has them. The dataset and a local model must exist,
        and no other trainer may hold the folder's lock (the worker takes it itself).
        """
        config.validate()
        with self._lock:
            if self._job is not None:
                raise JobRunning(self._job.run)
            folder = run_folder_of(config)
            if live_worker_pid(folder) is not None:
                raise JobRunning(folder)  # a worker this server does not own
            check_run(config, folder)  # processes, devices, strategy: refused here, not in the log
            run = prepare_run(config, workdir=PROJECT_ROOT)  # the worker's cwd: relative paths mean the same
            with open(run.log, "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "core.train", str(run.config)],
                    cwd=PROJECT_ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: signals from the terminal skip it
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            write_worker_pid(run, process.pid)
            job = Job(run, process)
            self._job, self._last = job, run
        threading.Thread(target=self._watch, args=(job,), name=f"watch-{run.path.name}", daemon=True).start()
        return run

    def resume(self, path: str | Path) -> RunFolder:
        """Continue a stopped (or failed) run from its newest checkpoint, with its own config."""
        run = RunFolder(path)
        with path_errors("Run folder", path):
            if not run.config.is_file():
                raise UserInputError(f"{shown_path(run.path)} is not a run folder (no config.yaml)")
        state = run_state(run.path)
        if state.status == RunStatus.DONE:
            raise UserInputError(f"Run {run.path.name} has finished: there is nothing to resume.")
        if not state.can_resume:
            raise UserInputError(f"Run {run.path.name} has no complete checkpoint to resume from.")
        return self.start(load_config(run.config, {"resume": True, "output_dir": str(run.path)}))

    # ---------------------------------------------------------------------------- stopping
    def stop(self) -> RunFolder | None:
        """Ask the running job to stop after its current step (it saves the adapter).

        The STOP file is the polite way; the watcher sends SIGTERM after stop_grace_s and SIGKILL
        after kill_grace_s more. Returns the run asked to stop, or None when nothing runs.
        """
        with self._lock:
            job = self._job
            if job is None:
                return None
            job.run.request_stop()
            if job.stop_requested_at is None:
                job.stop_requested_at = time.monotonic()
            return job.run

    def _signal(self, job: Job, sig: int) -> None:
        try:
            if isinstance(job.process, subprocess.Popen):
                os.killpg(job.process.pid, sig)  # the whole group: the worker and anything it spawned
            else:
                os.kill(job.process.pid, sig)
        except ProcessLookupError:
            pass

    # ----------------------------------------------------------------------------- watching
    def _watch(self, job: Job) -> None:
        while True:
            try:
                code = job.process.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if job.stop_requested_at is None:
                continue
            waited = time.monotonic() - job.stop_requested_at
            if job.signals_sent == 0 and waited > self.stop_grace_s:
                self._signal(job, signal.SIGTERM)
                job.signals_sent = 1
            elif job.signals_sent == 1 and waited > self.stop_grace_s + self.kill_grace_s:
                self._signal(job, signal.SIGKILL)
                job.signals_sent = 2
        self._finish(job, code)

    def _finish(self, job: Job, code: int) -> None:
        """Make sure the run folder ends with a final event, then free the slot. Not when another
        trainer holds the folder's lock (it won the folder just before our worker took it): that
        run's events are not ours to end."""
        if not logged_status(job.run.all_events()).ended and lock_holder(job.run.path) is None:
            how = _describe_exit(code)
            if job.stop_requested_at is not None:
                job.run.append_event("stopped", reason=f"worker ended by {how} before it could save", exit_code=code)
            else:
                job.run.append_event(
                    "error",
                    message=f"The training process ended ({how}) without finishing; see the last lines of train.log.",
                    exit_code=code,
                )
        clear_worker_pid(job.run)
        with self._lock:
            if self._job is job:
                self._job = None
            self._last = job.run

    def _adopt(self) -> None:
        """Re-attach to a worker left training by an earlier server process (e.g. after a restart)."""
        for path in sorted(self.runs_dir.iterdir()):
            run = RunFolder(path)
            pid = live_worker_pid(run)
            if pid is None:
                continue
            job = Job(run, _AdoptedProcess(run, pid))
            self._job, self._last = job, run
            threading.Thread(target=self._watch, args=(job,), name=f"watch-{path.name}", daemon=True).start()
            return
