"""A LLaMA-Factory output folder opened as one of our runs: its loss curve, chat and export.

LLaMA-Factory's output_dir holds the adapter at its top (adapter_config.json,
adapter_model.safetensors, the tokenizer), trainer_log.jsonl (one line per logging step:
{"current_steps", "total_steps", "loss" or "eval_loss", "lr", "epoch", "elapsed_time": "0:01:23", ...}),
trainer_state.json, all_results.json at the end, checkpoint-N/ folders, and, when its web UI
started the run, training_args.yaml.

Opening one makes a run folder of ours under the runs folder (core.events' layout), so every tab
reads it through the same RunFolder/RunState code as a run trained here:
  config.yaml      the TrainConfig keys training_args.yaml shares with us, and the base model
                   (adapter_config.json's base_model_name_or_path, else training_args.yaml's
                   model_name_or_path)
  events.jsonl     start, one step or eval event per trainer_log.jsonl line, done once the final
                   adapter and results are written (until then the run reads as interrupted: no
                   process of ours is training it)
  adapter/         links to the adapter and tokenizer files at the folder's top (not its
                   checkpoints or logs), so nothing large is copied
  opened_from.txt  the folder's path: opening it again refreshes the run (a run still training)
The LLaMA-Factory folder itself is only read; deleting the run removes only our folder and links.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from core.config import FIELDS
from core.errors import UserInputError
from core.events import RunFolder
from core.paths import path_errors, shown_path, write_text_atomically

TRAINER_LOG = "trainer_log.jsonl"
TRAINING_ARGS = "training_args.yaml"
RESULTS = ("all_results.json", "train_results.json")
SOURCE_FILE = "opened_from.txt"
# Top-level files that are LLaMA-Factory's training records, not part of the adapter; and PEFT's
# README.md, which an export replaces with its own model card.
RECORDS = frozenset(
    {TRAINER_LOG, TRAINING_ARGS, "trainer_state.json", "training_args.bin", "running_log.txt", "README.md"}
)
ELAPSED = re.compile(r"(?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)")  # str(timedelta): "1 day, 2:03:04"


def is_lf_output(folder: Path) -> bool:
    """A LLaMA-Factory output_dir: its training log, or an adapter at its top, and none of our files."""
    ours = (folder / "config.yaml").is_file() or (folder / "events.jsonl").is_file()
    return not ours and ((folder / TRAINER_LOG).is_file() or (folder / "adapter_config.json").is_file())


def _elapsed_s(value: Any) -> float | None:
    match = ELAPSED.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _finite(value: Any) -> Any:
    """A diverged loss (NaN) is written as null, as core.events writes it: strict JSON readers refuse NaN."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json_file(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _log_lines(folder: Path) -> list[dict[str, Any]]:
    """trainer_log.jsonl's objects; a damaged line (a crash mid-write) is skipped, as in core.events."""
    path = folder / TRAINER_LOG
    if not path.is_file():
        return []
    lines = []
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(line, dict) and isinstance(line.get("current_steps"), int):
            lines.append(line)
    return lines


def lf_events(folder: Path) -> list[dict[str, Any]]:
    """Our events for a LLaMA-Factory folder: start, step / eval per log line, done when it finished.

    The log has no clock times, only each line's elapsed time: the start is put at the log file's
    last change minus the last elapsed time, each event at start + its elapsed time.
    """
    lines = _log_lines(folder)
    elapsed = [_elapsed_s(line.get("elapsed_time")) for line in lines]
    log = folder / TRAINER_LOG
    changed = log.stat().st_mtime if log.is_file() else (folder / "adapter_config.json").stat().st_mtime
    started = changed - next((e for e in reversed(elapsed) if e is not None), 0.0)
    total = next((line["total_steps"] for line in reversed(lines) if line.get("total_steps")), None)
    events: list[dict[str, Any]] = [{"type": "start", "time": round(started, 3), "total_steps": total}]
    for line, seconds in zip(lines, elapsed):
        common = {
            "time": round(started + (seconds or 0.0), 3),
            "step": line["current_steps"],
            "epoch": line.get("epoch"),
        }
        if line.get("loss") is not None:
            events.append(
                {
                    "type": "step",
                    **common,
                    "loss": line["loss"],
                    "lr": line.get("lr"),
                    "total_steps": line.get("total_steps"),
                    "elapsed_s": seconds or 0.0,
                }
            )
        if line.get("eval_loss") is not None:
            events.append({"type": "eval", **common, "eval_loss": line["eval_loss"]})
    results = next((_json_file(folder / name) for name in RESULTS if (folder / name).is_file()), None)
    finished = results is not None and any(folder.glob("adapter_model.*"))
    if finished:
        steps = [e for e in events if e["type"] == "step"]
        events.append(
            {
                "type": "done",
                "time": round(changed, 3),
                "step": steps[-1]["step"] if steps else None,
                "total_steps": total,
                "final_loss": steps[-1]["loss"] if steps else results.get("train_loss"),
                "final_eval_loss": results.get("eval_loss"),
            }
        )
    return events


def lf_config(folder: Path, run_dir: Path) -> dict[str, Any]:
    """config.yaml for the run: the keys training_args.yaml shares with TrainConfig (same names, same
    meaning), the base model, and the run folder as output_dir."""
    args: dict[str, Any] = {}
    if (folder / TRAINING_ARGS).is_file():
        try:
            loaded = yaml.safe_load((folder / TRAINING_ARGS).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise UserInputError(f"{shown_path(folder / TRAINING_ARGS)} is not valid YAML: {err}") from None
        args = loaded if isinstance(loaded, dict) else {}
    config = {key: value for key, value in args.items() if key in FIELDS and value is not None}
    base = _json_file(folder / "adapter_config.json").get("base_model_name_or_path") or args.get("model_name_or_path")
    if not isinstance(base, str) or not base.strip():
        raise UserInputError(
            f"{shown_path(folder)}: no base model named (adapter_config.json's base_model_name_or_path "
            f"or {TRAINING_ARGS}'s model_name_or_path): chat and export need it"
        )
    config["model_name_or_path"] = base
    config["output_dir"] = str(run_dir)
    return config


def _link_adapter(folder: Path, adapter: Path) -> None:
    """adapter/ as links to the adapter and tokenizer files at the folder's top (a copy where the file
    system has no symlinks), built beside and swapped in whole."""
    building = Path(tempfile.mkdtemp(prefix=".adapter.", dir=adapter.parent))
    try:
        for file in sorted(folder.iterdir()):
            if file.is_file() and file.name not in RECORDS and file.name not in RESULTS and file.suffix != ".png":
                try:
                    os.symlink(file.resolve(), building / file.name)
                except OSError:
                    shutil.copy2(file, building / file.name)
        if adapter.exists():
            shutil.rmtree(adapter)  # links only: rmtree unlinks them, it never follows them
        os.replace(building, adapter)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _run_name(runs_dir: Path, folder: Path) -> str:
    """The folder's name as a run name; the run already opened from it, else the first free name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip(".-_")[:90] or "llamafactory"
    for number in range(1, 1000):
        name = base if number == 1 else f"{base}-{number}"
        existing = runs_dir / name
        if not existing.exists():
            return name
        source = existing / SOURCE_FILE
        if source.is_file() and source.read_text(encoding="utf-8").strip() == str(folder):
            return name
    raise UserInputError(f"Too many runs named {base!r} in {shown_path(runs_dir)}")


def open_lf_output(runs_dir: str | Path, folder: str | Path) -> RunFolder:
    """Open (or refresh) a LLaMA-Factory output folder as a run under runs_dir; return that run."""
    runs_dir = Path(runs_dir)
    with path_errors("Folder", folder):
        folder = Path(str(folder).strip()).expanduser().resolve()
        if not folder.is_dir():
            raise UserInputError(f"Folder not found: {shown_path(folder)}")
        if folder.is_relative_to(runs_dir.resolve()):
            raise UserInputError(f"{shown_path(folder)} is inside the runs folder already: it is listed as it is.")
        if not is_lf_output(folder):
            raise UserInputError(
                f"{shown_path(folder)} is not a LLaMA-Factory output folder: expected {TRAINER_LOG} or "
                f"adapter_config.json at its top (and no config.yaml / events.jsonl of ours)"
            )
        runs_dir.mkdir(parents=True, exist_ok=True)
        run = RunFolder(runs_dir / _run_name(runs_dir, folder))
        config = lf_config(folder, run.path)
        events = lf_events(folder)
        run.path.mkdir(exist_ok=True)
        (run.path / SOURCE_FILE).write_text(str(folder) + "\n", encoding="utf-8")
        if (folder / "adapter_config.json").is_file():
            _link_adapter(folder, run.adapter)
        lines = (json.dumps({k: _finite(v) for k, v in e.items()}, ensure_ascii=False) + "\n" for e in events)
        write_text_atomically(run.events, "".join(lines))
        header = f"# Opened from the LLaMA-Factory output folder {folder}\n"
        write_text_atomically(run.config, header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return run
