"""Exact length analyses in background threads, for a page that must stay responsive meanwhile.

The web page starts one with `start(options)` and polls `status(key)` until it is done. A job is
keyed by its options and the dataset file's state, so a second browser (or a re-selection of the
same dataset) attaches to the same count instead of starting another; `cancel(key)` stops one
nobody waits for (the previous dataset of a page). The Rust tokenizer, which does most of the work,
releases the GIL, so the server's other requests are served while a count runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserInputError
from core.lengths import LengthReport, analyze_file

KEPT_JOBS = 8  # finished jobs kept for re-attaching; older ones are forgotten


class Cancelled(Exception):
    """Raised inside a job's progress callback to stop its count."""


@dataclass
class JobStatus:
    done: int = 0  # conversations counted so far
    total: int = 0  # conversations to count (0 until the dataset is read)
    report: LengthReport | None = None
    error: str = ""  # a UserInputError's message, or the exception's type and message
    finished: bool = False
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)


_jobs: dict[str, JobStatus] = {}
_lock = threading.Lock()


def job_key(options: dict[str, Any]) -> str:
    """The options (analyze_file's keyword arguments) and the dataset file's size and time, as text
    (a page keeps it in a gr.State)."""
    path = Path(str(options["path"]))
    stamp = (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None
    return repr((sorted(options.items()), stamp))


def _run(key: str, job: JobStatus, options: dict[str, Any]) -> None:
    def progress(done: int, total: int) -> None:
        if job.cancel.is_set():
            raise Cancelled
        job.done, job.total = done, total

    try:
        job.report = analyze_file(**options, progress=progress)
    except Cancelled:
        job.error = "cancelled"
    except UserInputError as err:
        job.error = str(err)
    except Exception as err:  # noqa: BLE001 - a model that cannot load: reported to the page, not raised
        job.error = f"{type(err).__name__}: {err}"
    job.finished = True
    with _lock:
        finished = [k for k, j in _jobs.items() if j.finished and k != key]
        for old in finished[: max(0, len(finished) - KEPT_JOBS)]:
            del _jobs[old]
        if job.error == "cancelled":
            _jobs.pop(key, None)


def start(options: dict[str, Any]) -> str:
    """The key of the exact analysis with these analyze_file options: running, finished, or started now."""
    key = job_key(options)
    with _lock:
        job = _jobs.get(key)
        if job is not None and not job.cancel.is_set():
            return key
        job = _jobs[key] = JobStatus()
    threading.Thread(target=_run, args=(key, job, options), name="exact-lengths", daemon=True).start()
    return key


def status(key: str) -> JobStatus | None:
    """The job's progress or result; None for a key no job has (cancelled or forgotten)."""
    with _lock:
        return _jobs.get(key)


def cancel(key: str) -> None:
    with _lock:
        job = _jobs.get(key)
    if job is not None and not job.finished:
        job.cancel.set()
