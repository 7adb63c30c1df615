"""The pre-flight estimate (core.estimate) against what `python -m core.train` then measures.

    python -m bench.estimate [--dataset PATH] [--steps N] [--no-calibrate]

Calibrates this machine for the first configuration's settings (`python -m core.calibration`, as
the Train tab's button does; --no-calibrate keeps the cached one), then for each configuration asks
core.estimate.preflight for its time per step and peak memory, and runs `python -m core.train` for
N steps in its own process: the measured time per step is the mean of its steps after the first
(from the step events' elapsed_s), the measured peak is that process's peak RSS (os.wait4).
Configurations whose settings were not calibrated get this machine's speed scaled ("scaled").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from core.config import TrainConfig, config_to_yaml
from core.data import load_dataset
from core.estimate import GIB, preflight
from core.paths import PROJECT_ROOT

DEFAULT_DATASET = PROJECT_ROOT / "datasets_demo" / "persona_en.jsonl"
# (name, changes to the base config): batch, cutoff and checkpointing variants of the default model,
# small enough that a few steps each take minutes even on a busy shared 2-core machine
CONFIGS = [
    ("batch 1, cutoff 64", {"per_device_train_batch_size": 1, "cutoff_len": 64}),
    ("batch 2, cutoff 64", {"per_device_train_batch_size": 2, "cutoff_len": 64}),
    (
        "batch 1, cutoff 128, grad ckpt",
        {"per_device_train_batch_size": 1, "cutoff_len": 128, "gradient_checkpointing": True},
    ),
]


def base_config(dataset: Path, steps: int) -> TrainConfig:
    return TrainConfig(
        model_name_or_path="default",
        dataset=str(dataset),
        gradient_accumulation_steps=1,
        max_steps=steps,
        logging_steps=1,
        save_steps=steps + 1,
        lora_rank=8,
        lora_target="all",
    )


def run_measured(config: TrainConfig, folder: Path) -> tuple[float, int]:
    """(seconds a step after the first, peak RSS bytes) of `python -m core.train` on `config`."""
    config = dataclasses.replace(config, output_dir=str(folder / "run"))
    path = folder / "config.yaml"
    path.write_text(config_to_yaml(config), encoding="utf-8")
    with open(folder / "stdout.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "core.train", str(path)], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"core.train failed: see {folder / 'stdout.log'}")
    lines = (folder / "run" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    steps = [event for event in map(json.loads, lines) if event["type"] == "step"]
    seconds = (steps[-1]["elapsed_s"] - steps[0]["elapsed_s"]) / (steps[-1]["step"] - steps[0]["step"])
    return seconds, usage.ru_maxrss * 1024  # Linux reports kilobytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.estimate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--steps", type=int, default=4, help="training steps a configuration (the first is not timed)")
    parser.add_argument("--no-calibrate", action="store_true", help="use the cached calibration")
    args = parser.parse_args(argv)
    base = base_config(args.dataset, args.steps)
    conversations = load_dataset(str(args.dataset)).conversations
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        if not args.no_calibrate:
            first = dataclasses.replace(base, **CONFIGS[0][1])
            (Path(tmp) / "calibrate.yaml").write_text(config_to_yaml(first), encoding="utf-8")
            subprocess.run(
                [sys.executable, "-m", "core.calibration", str(Path(tmp) / "calibrate.yaml")],
                cwd=PROJECT_ROOT,
                check=True,
            )
        for i, (name, changes) in enumerate(CONFIGS):
            config = dataclasses.replace(base, **changes)
            est = preflight(config, conversations)
            folder = Path(tmp) / f"config{i}"
            folder.mkdir()
            seconds, rss = run_measured(config, folder)
            rows.append((name, est.cost_source, est.step_s, seconds, est.memory.total, rss))
            print(
                f"{name}: predicted {est.step_s:.2f} s, {est.memory.total / GIB:.2f} GB; measured {seconds:.2f} s, {rss / GIB:.2f} GB",
                flush=True,
            )
    print()
    print(
        "| configuration | speed | s/step predicted | measured | ratio | peak predicted | peak RSS measured | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, source, predicted_s, measured_s, predicted_b, measured_b in rows:
        print(
            f"| {name} | {source} | {predicted_s:.2f} | {measured_s:.2f} | {predicted_s / measured_s:.2f} "
            f"| {predicted_b / GIB:.2f} GB | {measured_b / GIB:.2f} GB | {predicted_b / measured_b:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
