"""The pre-flight estimate (core.estimate) against what `python -m core.train` then measures.

    python -m bench.estimate [--dataset PATH] [--steps N] [--rounds R] [--no-calibrate]

Calibrates this machine for the first configuration's settings (`python -m core.calibration`, as
the Train tab's button does; --no-calibrate keeps the cached one), then for each configuration asks
core.estimate.preflight for its time per step and peak memory, and runs `python -m core.train` for
N steps in its own process: the measured time per step is the mean of its steps after the first
(from the step events' elapsed_s), the measured peak is that process's peak RSS (os.wait4). With
--rounds R every configuration runs R times, all of them in turn, and the table shows the medians.
Each row says where its time comes from: "calibrated" (the calibration's line for these settings),
"derived" (a gradient-checkpointing row: that line plus the recompute at the speed the same
calibration measured with checkpointing on), or "scaled"/"rough" (settings not calibrated here).
The machine's load average is printed before and after: the timings hold for that load. The
estimate is for the data's mean micro-batch; the few timed steps can hold longer or shorter
examples, so the table also gives the tokens of those steps (step events' tokens_per_s) and the
ratio with the estimate's per-token part scaled to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.calibration import cost_for
from core.config import TrainConfig, config_to_yaml
from core.data import load_dataset
from core.estimate import GIB, Estimate, preflight
from core.models import best_device, resolve_model
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
    (
        "batch 2, cutoff 64, grad ckpt",
        {"per_device_train_batch_size": 2, "cutoff_len": 64, "gradient_checkpointing": True},
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


def time_source(config: TrainConfig) -> str:
    """Where the estimate's time of `config` comes from (see the module's docstring)."""
    cost = cost_for(config, resolve_model(config.model_name_or_path).path, best_device())
    measured_recompute = cost.source == "calibrated" and cost.recompute_flops_per_s is not None
    return "derived" if config.gradient_checkpointing and measured_recompute else cost.source


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def at_run_tokens(config: TrainConfig, est: Estimate, tokens_a_step: float) -> float:
    """The estimate's time per step for the steps the run timed: its per-token part scaled from the
    data's mean tokens a step to those steps' (a few steps of batch 1 can be far from the mean)."""
    cost = cost_for(config, resolve_model(config.model_name_or_path).path, best_device())
    fixed = cost.overhead_s * config.gradient_accumulation_steps * est.processes
    mean_tokens = est.tokens.positions * config.gradient_accumulation_steps
    return fixed + (est.step_s - fixed) * tokens_a_step / mean_tokens


def run_measured(config: TrainConfig, folder: Path) -> tuple[float, int, float]:
    """(seconds a step after the first, peak RSS bytes, tokens a step after the first) of
    `python -m core.train` on `config`; the tokens from each step event's tokens_per_s."""
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
    timed = steps[-1]["step"] - steps[0]["step"]
    seconds = (steps[-1]["elapsed_s"] - steps[0]["elapsed_s"]) / timed
    tokens = sum(b["tokens_per_s"] * (b["elapsed_s"] - a["elapsed_s"]) for a, b in zip(steps, steps[1:])) / timed
    return seconds, usage.ru_maxrss * 1024, tokens  # Linux reports ru_maxrss in kilobytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.estimate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--steps", type=int, default=4, help="training steps a configuration (the first is not timed)")
    parser.add_argument("--no-calibrate", action="store_true", help="use the cached calibration")
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs of every configuration, in turn: the median is shown"
    )
    args = parser.parse_args(argv)
    base = base_config(args.dataset, args.steps)
    conversations = load_dataset(str(args.dataset)).conversations
    configs = [(name, dataclasses.replace(base, **changes)) for name, changes in CONFIGS]
    measured: dict[str, list[tuple[float, int, float]]] = {name: [] for name, _ in configs}
    began = time.perf_counter()
    print(f"before: {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        if not args.no_calibrate:
            (Path(tmp) / "calibrate.yaml").write_text(config_to_yaml(configs[0][1]), encoding="utf-8")
            subprocess.run(
                [sys.executable, "-m", "core.calibration", str(Path(tmp) / "calibrate.yaml")],
                cwd=PROJECT_ROOT,
                check=True,
            )
            print(f"calibrated in {time.perf_counter() - began:.0f} s, {load()}", flush=True)
        estimates = {name: preflight(config, conversations) for name, config in configs}
        for round_ in range(args.rounds):  # each round runs every configuration: a load change hits all alike
            for i, (name, config) in enumerate(configs):
                folder = Path(tmp) / f"round{round_}-config{i}"
                folder.mkdir()
                seconds, rss, tokens = run_measured(config, folder)
                measured[name].append((seconds, rss, tokens))
                est = estimates[name]
                print(
                    f"{name}: predicted {est.step_s:.2f} s, {est.memory.total / GIB:.2f} GB; "
                    f"measured {seconds:.2f} s, {rss / GIB:.2f} GB, {tokens:.0f} tokens a step ({load()})",
                    flush=True,
                )
    rows = []
    for name, config in configs:
        seconds, rss, tokens = (statistics.median(run[i] for run in measured[name]) for i in range(3))
        est = estimates[name]
        at_run = at_run_tokens(config, est, tokens)
        mean_tokens = est.tokens.positions * config.gradient_accumulation_steps
        rows.append(
            (name, time_source(config), est.step_s, seconds, mean_tokens, tokens, at_run, est.memory.total, rss)
        )
    print(f"after: {load()}, {time.perf_counter() - began:.0f} s in all")
    print()
    print(
        "| configuration | time from | s/step predicted | measured | ratio | tokens a step: data mean | timed steps "
        "| ratio at the timed steps' tokens | peak predicted | peak RSS measured | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, source, predicted_s, measured_s, mean_tokens, tokens, at_run, predicted_b, measured_b in rows:
        print(
            f"| {name} | {source} | {predicted_s:.2f} | {measured_s:.2f} | {predicted_s / measured_s:.2f} "
            f"| {mean_tokens:.0f} | {tokens:.0f} | {at_run / measured_s:.2f} "
            f"| {predicted_b / GIB:.2f} GB | {measured_b / GIB:.2f} GB | {predicted_b / measured_b:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
