"""`python -m core.train CONFIG.yaml [key=value ...]`: the command line around core.engine.

The config is read and checked before torch is imported, so a wrong key or value is reported in
well under a second; only a valid config loads the engine. With a config of its own, the CLI
prepares the run folder itself (core.runs.prepare_run); given a run folder's own config.yaml
unchanged (how the web runner launches it), the folder was prepared by the launcher. Either way
the trainer holds the folder's lock (core.lock) from before it writes anything until it exits, so a
second trainer on the same folder is refused at once, with the pid of the one training it.

With num_processes > 1 this process stays the launcher (it holds the lock, prepares the folder) and
relaunches core.train once per rank through accelerate (core.distributed); each rank then trains
under that lock, and only rank 0 writes the log and the events.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from pathlib import Path

from core import distributed
from core.config import FIELDS, GROUPS, HEADLESS_ONLY, SPECS, TrainConfig, fields_in_group, load_config, parse_overrides
from core.cpu_allocator import restart_with
from core.errors import UserInputError
from core.events import RunFolder
from core.lock import RunLock
from core.runs import check_run_folder, path_errors, prepare_run, run_folder_of
from core.stop import StopSignals

log = logging.getLogger("lora_tailor.train")

USAGE = (
    "usage: python -m core.train CONFIG.yaml [key=value ...]\n"
    "Trains a LoRA adapter as described by CONFIG.yaml; key=value pairs override its keys."
)


def help_text() -> str:
    """The usage line and every config key with its help, from the field registry."""
    lines = [USAGE, ""]
    for group in GROUPS:
        names = fields_in_group(group) + (sorted(HEADLESS_ONLY) if group == GROUPS[-1] else [])
        for name in names:
            spec = SPECS[name]
            allowed = f" [{'|'.join(spec.choices)}]" if spec.choices else ""
            lines.append(f"  {name}{allowed} (default {FIELDS[name].default!r})\n      {spec.help}")
    return "\n".join(lines)


def _setup_logging(run: RunFolder) -> logging.Handler:
    handler = logging.FileHandler(run.log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Keep library chatter (weight-loading bars, deprecation notes) out of the user's terminal.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    hf_logging.disable_progress_bar()
    return handler


def main(argv: list[str] | None = None, restart_allocator: bool = False) -> int:
    """The command line; `restart_allocator` (as `python -m core.train` runs it): restart this
    process with the config's cpu_allocator first (core.cpu_allocator)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(help_text() if argv else USAGE)
        return 0 if argv else 2
    if distributed.launched_rank():
        return _rank_main(argv)
    # Installed before config.yaml is written, so a SIGTERM or Ctrl-C from then on, even while torch
    # and the model still load, ends the run with a checkpoint and a `stopped` event. The lock is
    # released when the block ends, however it ends.
    with StopSignals() as stop_signals, contextlib.ExitStack() as held:
        try:
            overrides = parse_overrides(argv[1:])
            notes: list[str] = []  # what a LLaMA-Factory file's keys became (core.lf_compat)
            with path_errors("Config file", argv[0]):
                config = load_config(argv[0], overrides, notes=notes)
            if restart_allocator:  # before anything is printed, locked or written: all again after it
                restart_with(config.cpu_allocator)
            for note in notes:
                print(note, file=sys.stderr)
            folder = run_folder_of(config)
            # A run folder's own config.yaml, unchanged, is how a launcher (the web runner) starts a
            # worker: it prepared the folder, and a STOP it writes from now on must not be cleared here.
            launched = not overrides and Path(argv[0]).resolve() == folder.config.resolve()
            distributed.check_run(config, folder)  # before anything is locked or written
            with path_errors("Run folder", folder.path):
                held.enter_context(RunLock(folder.path))  # before prepare_run writes config.yaml
            run = check_run_folder(config) if launched else prepare_run(config)
        except UserInputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if config.num_processes > 1:
            return distributed.launch(config, run, stop_signals)
        handler = _setup_logging(run)
        try:
            return _train_and_report(config, run, stop_signals)
        finally:  # an in-process caller (tests) must not keep logging into this run's train.log
            logging.getLogger().removeHandler(handler)
            handler.close()


def _rank_main(argv: list[str]) -> int:
    """One rank of a multi-process run: its launcher checked and prepared the folder and holds its
    lock; rank 0 logs to train.log (every rank's stderr reaches the launcher's)."""
    with StopSignals() as stop_signals:
        try:
            config = load_config(argv[0])
            run = distributed.run_folder_for_rank(run_folder_of(config).path)
            distributed.check_rank_folder(run)
        except UserInputError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        handler = _setup_logging(run) if distributed.is_main() else None
        try:
            return _train_and_report(config, run, stop_signals)
        finally:
            if handler is not None:
                logging.getLogger().removeHandler(handler)
                handler.close()


def _train_and_report(config: TrainConfig, run: RunFolder, stop_signals: StopSignals) -> int:
    try:
        from core.engine import run_training  # torch and transformers load only for a valid config

        main = distributed.is_main()  # one progress bar and one set of notes, not one per rank
        final = run_training(
            config, show_progress=main and sys.stderr.isatty(), print_advice=main, stop_signals=stop_signals
        )
    except KeyboardInterrupt:  # a second Ctrl-C: abort without saving
        run.append_event("error", message="interrupted (Ctrl-C twice): nothing saved after the last checkpoint")
        print("error: interrupted", file=sys.stderr)
        return 130
    except UserInputError as err:
        run.append_event("error", message=str(err))
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - any crash must still end the run with an error event
        log.error("training failed:\n%s", traceback.format_exc())
        message = f"{type(err).__name__}: {err}"
        run.append_event("error", message=message)
        print(f"error: training failed: {message}\n(full traceback in {run.log})", file=sys.stderr)
        return 1
    if not distributed.is_main():
        return 0
    print(
        f"{final['type']}: step {final['step']}/{final['total_steps']}, final loss {final['final_loss']}, "
        f"{final['tokens_per_s']} tokens/s; adapter in {final['adapter']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(restart_allocator=True))
