"""The run folder: where a training process and its watchers (CLI, web UI) meet.

<run>/config.yaml    the resolved TrainConfig
<run>/events.jsonl   one strict-JSON object per line (NaN and infinity written as null): start, step,
                     eval, warning, then done|stopped|error
<run>/train.log      human-readable log (and the worker's stdout/stderr)
<run>/checkpoints/   resumable Trainer checkpoints (checkpoint-<step>/)
<run>/adapter/       the final PEFT adapter + tokenizer and chat template
<run>/STOP           created by whoever wants the run to stop after the current step
<run>/train.lock     held by the process training the run (core.lock)
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

TERMINAL_EVENTS = ("done", "stopped", "error")


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    events = property(lambda self: self.path / "events.jsonl")
    log = property(lambda self: self.path / "train.log")
    checkpoints = property(lambda self: self.path / "checkpoints")
    adapter = property(lambda self: self.path / "adapter")
    stop_file = property(lambda self: self.path / "STOP")

    def append_event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        """Append one event; one write() per line so a reader never sees half of a line it trusts.

        A diverged loss is NaN: Python's json would write the bare token NaN, which strict parsers
        (a browser's JSON.parse, jq) reject, so non-finite numbers are written as null. The event
        returned is the one written.
        """
        event = _finite({"type": event_type, "time": round(time.time(), 3), **fields})
        line = json.dumps(event, ensure_ascii=False, allow_nan=False) + "\n"
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.events, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return event

    def read_events(self, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Events after byte `offset`, and the offset to pass next time (incremental polling).

        A last line without its newline is still being written: it is left for the next call.
        """
        if not self.events.is_file():
            return [], offset
        with open(self.events, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        events = []
        for line in complete.decode("utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line damaged by a crash mid-write is skipped, not fatal to the reader
        return events, offset + len(complete)

    def all_events(self) -> list[dict[str, Any]]:
        return self.read_events(0)[0]

    def prepare(self, config_yaml: str) -> None:
        """Make the folder ready for a worker: write config.yaml, clear a STOP left by an earlier
        attempt. Whoever launches a run calls this once (the web runner, or the CLI when it is given
        a config of its own); the worker then only trains, so a STOP written after the launch is
        never cleared by the worker."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.config.write_text(config_yaml, encoding="utf-8")
        self.stop_file.unlink(missing_ok=True)

    def request_stop(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.stop_file.touch()

    def stop_requested(self) -> bool:
        return self.stop_file.exists()

    def complete_checkpoints(self) -> list[Path]:
        """Checkpoints written completely, oldest first. Trainer writes trainer_state.json last, and
        a kill during that write leaves it empty or cut short, so it must also parse."""
        if not self.checkpoints.is_dir():
            return []
        complete = [
            p
            for p in self.checkpoints.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and _is_json_file(p / "trainer_state.json")
        ]
        return sorted(complete, key=checkpoint_step)

    def latest_checkpoint(self) -> Path | None:
        complete = self.complete_checkpoints()
        return complete[-1] if complete else None

    def log_tail(self, lines: int = 20) -> str:
        if not self.log.is_file():
            return ""
        with open(self.log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinite float (in nested dicts and lists too) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _is_json_file(path: Path) -> bool:
    try:
        json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return True


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint-<step> folder was saved at."""
    return int(path.name.split("-")[-1])


def last_event(events: list[dict[str, Any]], *types: str) -> dict[str, Any] | None:
    """The newest event of one of `types` (any type when none is given), or None."""
    return next((e for e in reversed(events) if not types or e.get("type") in types), None)
