"""This machine's training speed, measured once and kept: the cost model of core.estimate.

    python -m core.calibration CONFIG.yaml

runs a few real training steps (core.engine.run_training, the trainer's own path) on a synthetic
dataset of one repeated conversation at 2-3 lengths, with CONFIG's model and settings at batch 1,
times each step, and fits `seconds = overhead_s + flops / flops_per_s` over the steps' flops
(core.estimate.micro_batch_flops) without gradient checkpointing; at the longer lengths, the steps
alternate without and with checkpointing in one run, and the extra time of those with it gives the
recompute's own speed (recompute_flops_per_s): side by side, so a change in the machine's load
hits both alike.
The result is kept in <cache>/calibration.json by machine and by the settings that change the speed
beyond what the flops count (model, quantization_bit, trained_tokens_loss, packing); one
calibration covers checkpointing on and off. It runs as its own process, like training: the web
server only starts it and reads its output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.config import TrainConfig, load_config
from core.errors import UserInputError
from core.estimate import BatchTokens, CostModel, micro_batch_flops, model_shape, recompute_flops, rough_cost
from core.paths import write_text_atomically

CACHE_FILE = "calibration.json"
CALIBRATION_TOKENS = (32, 96, 192)  # example lengths: a short chat to a long one, a step of seconds on a CPU
WARMUP_STEPS = 1  # the first step allocates and warms up kernels: not timed
TIMED_STEPS = 2
MIN_TRAINED = 8  # trained tokens in the shortest calibration example
WORDS = "the order will ship within two days and you can return it for a full refund".split()


# ------------------------------------------------------------------------------------ the cache
def cache_file() -> Path:
    from core.models import cache_dir  # imports torch: only when a calibration is read or written

    return cache_dir() / CACHE_FILE


def machine_id(device: str) -> str:
    """The processor (or GPU) and the threads torch uses: a calibration holds for that machine only."""
    import torch

    if device == "cuda":
        return f"cuda:{torch.cuda.get_device_name(0)}"
    cpu = platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{device}:{cpu} x{os.cpu_count()} threads {torch.get_num_threads()}"


def settings_key(config: TrainConfig, model_folder: str) -> str:
    # cpu_bf16 as set: on a CPU with native bf16 it changes the speed; elsewhere both settings
    # measure float32 alike
    return f"{model_folder}|bits={config.quantization_bit}|cpu_bf16={config.cpu_bf16}|{_loss_and_packing(config)}"


def legacy_key(config: TrainConfig, model_folder: str, checkpointing: bool) -> str:
    """The key of a calibration written before checkpointing was measured: one per checkpointing setting."""
    return f"{model_folder}|bits={config.quantization_bit}|checkpointing={checkpointing}|{_loss_and_packing(config)}"


def _loss_and_packing(config: TrainConfig) -> str:
    return f"trained_tokens_loss={config.trained_tokens_loss}|packing={config.packing}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cost(entry: dict[str, Any], source: str) -> CostModel:
    # a calibration written before checkpointing was measured has no recompute_flops_per_s: None
    return CostModel(entry["overhead_s"], entry["flops_per_s"], source, entry.get("recompute_flops_per_s"))


def cost_for(config: TrainConfig, model_folder: str, device: str) -> CostModel:
    """The calibrated cost of these settings on this machine; else a calibration of them written
    before checkpointing was measured, with the same checkpointing setting; else this machine's
    median over its other calibrations ('scaled'); else the rough default."""
    entries = _read(cache_file()).get(machine_id(device), {})
    entry = entries.get(settings_key(config, model_folder))
    if entry is None:  # a calibration of the same checkpointing fitted its line over those flops
        entry = entries.get(legacy_key(config, model_folder, config.gradient_checkpointing))
    if entry is not None:
        return _cost(entry, "calibrated")
    if entries:
        recompute = [e["recompute_flops_per_s"] for e in entries.values() if e.get("recompute_flops_per_s")]
        return CostModel(
            statistics.median(e["overhead_s"] for e in entries.values()),
            statistics.median(e["flops_per_s"] for e in entries.values()),
            "scaled",
            statistics.median(recompute) if recompute else None,
        )
    return rough_cost(device)


def save_cost(
    config: TrainConfig, model_folder: str, device: str, cost: CostModel, points: list, checkpointed: list
) -> list[str]:
    """Add this calibration to the cache file, written whole to a temporary file and renamed, in
    place of any calibration of these settings written before checkpointing was measured; the
    measured_at of those it replaced."""
    path = cache_file()
    data = _read(path)
    entries = data.setdefault(machine_id(device), {})
    legacy = [entries.pop(legacy_key(config, model_folder, on), None) for on in (False, True)]
    entries[settings_key(config, model_folder)] = {
        "overhead_s": cost.overhead_s,
        "flops_per_s": cost.flops_per_s,
        "recompute_flops_per_s": cost.recompute_flops_per_s,
        "points": points,  # (flops, seconds) of each timed step without checkpointing
        "checkpointed_points": checkpointed,  # (flops, recompute flops, seconds) of each with it
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(data, indent=1))
    return [str(entry.get("measured_at", "?")) for entry in legacy if entry is not None]


# -------------------------------------------------------------------------------------- the fit
def fit_cost(points: list[tuple[float, float]]) -> CostModel:
    """Least squares of seconds = overhead_s + flops / flops_per_s over (flops, seconds) points;
    an overhead the noise pushes below zero is taken as zero (the line through the origin)."""
    if len({f for f, _ in points}) < 2:
        raise UserInputError("A calibration needs steps of at least two sizes.")
    mean_f = statistics.fmean(f for f, _ in points)
    mean_s = statistics.fmean(s for _, s in points)
    slope = sum((f - mean_f) * (s - mean_s) for f, s in points) / sum((f - mean_f) ** 2 for f, _ in points)
    overhead = mean_s - slope * mean_f
    if overhead < 0 or slope <= 0:
        overhead, slope = 0.0, sum(f * s for f, s in points) / sum(f * f for f, _ in points)
    return CostModel(overhead_s=overhead, flops_per_s=1 / slope, source="calibrated")


def fit_recompute(plain: list[tuple[float, float]], checkpointed: list[tuple[float, float, float]]) -> float | None:
    """recompute_flops_per_s from (flops, seconds) steps without checkpointing and (flops, recompute
    flops, seconds) steps with it: at each length timed both ways (the same flops but the recompute),
    the median step's extra seconds with checkpointing, fitted through the origin against the
    recompute flops. Paired by length, since the two ran side by side: a change in the machine's
    load between lengths does not enter. None when those steps were no slower (noise)."""
    extra = []
    for flops, recompute in sorted({(f, r) for f, r, _ in checkpointed if r > 0}):
        without = [s for f, s in plain if math.isclose(f, flops - recompute, rel_tol=1e-9)]
        if without:
            with_it = [s for f, r, s in checkpointed if (f, r) == (flops, recompute)]
            extra.append((recompute, statistics.median(with_it) - statistics.median(without)))
    seconds_per_flop = sum(r * d for r, d in extra) / sum(r * r for r, _ in extra) if extra else 0.0
    return 1 / seconds_per_flop if seconds_per_flop > 0 else None


# ---------------------------------------------------------------------------------- measuring
def _conversation(words: int) -> list[dict[str, str]]:
    """A short question and an answer of `words` words (at least a token each): mostly trained tokens."""
    answer = " ".join(WORDS[i % len(WORDS)] for i in range(words))
    return [{"role": "user", "content": "When will my order ship?"}, {"role": "assistant", "content": answer}]


def _step_timer(alternate: bool):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Seconds of each optimizer step: forward, backward and the optimizer, as the trainer runs
        them. `alternate` (on a model built with gradient checkpointing): checkpointing off on even
        steps and on on odd ones, so both run side by side in one process under the same load."""

        def __init__(self):
            self.seconds: list[float] = []
            self.checkpointed: list[bool] = []  # whether each step ran with checkpointing
            self.began = 0.0

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            on = bool(alternate and state.global_step % 2)
            if alternate:  # the flag transformers' checkpointed layers read at each call
                for module in model.modules():
                    if hasattr(module, "gradient_checkpointing"):
                        module.gradient_checkpointing = on
            self.checkpointed.append(on)
            self.began = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.began)

    return StepTimer()


def calibration_lengths(first_trained: int = 0) -> list[int]:
    """The example lengths to time: CALIBRATION_TOKENS, each with at least MIN_TRAINED tokens after
    the prompt's `first_trained` ones. Not cut to the config's cutoff_len: the calibration is kept
    for any cutoff and batch (settings_key), so its line must span the steps' tokens of those too
    (a batch of 2 at cutoff 64 is a step of ~128 tokens: cut to 64, that was extrapolated)."""
    shortest = first_trained + MIN_TRAINED
    lengths = sorted({max(n, shortest) for n in CALIBRATION_TOKENS})
    return lengths if len(lengths) > 1 else [shortest, shortest + max(CALIBRATION_TOKENS) // 2]


def checkpointed_lengths(lengths: list[int]) -> list[int]:
    """The lengths timed with checkpointing as well: all but the shortest, where the recompute is
    largest against the noise (the shortest only when there is one)."""
    return lengths[1:] or lengths


def _timed_steps(
    config: TrainConfig, conversation: list[dict[str, str]], length: int, alternate: bool
) -> list[tuple[bool, float]]:
    """(with checkpointing, seconds) of each timed step of `config` on `conversation` cut to `length`
    tokens, at batch 1; `alternate`: TIMED_STEPS with and TIMED_STEPS without checkpointing, in turn."""
    from core.engine import run_training

    kinds = 2 if alternate else 1
    warmup, steps = WARMUP_STEPS * kinds, (WARMUP_STEPS + TIMED_STEPS) * kinds
    with tempfile.TemporaryDirectory(prefix="lora-tailor-calibration-") as tmp:
        data = Path(tmp) / "data.jsonl"
        data.write_text((json.dumps({"messages": conversation}) + "\n") * steps, encoding="utf-8")
        run = dataclasses.replace(
            config,
            dataset=str(data),
            dataset_format="auto",
            output_dir=str(Path(tmp) / "run"),
            cutoff_len=length,
            per_device_train_batch_size=1,
            gradient_accumulation_steps=1,
            num_train_epochs=1.0,
            max_steps=steps,
            val_size=0.0,
            probes="none",
            augment="none",
            logging_steps=1,
            save_steps=steps + 1,
            resume=False,
            gradient_checkpointing=alternate,
        )
        Path(run.output_dir).mkdir()
        timer = _step_timer(alternate)
        run_training(run, callbacks=(timer,))
    return list(zip(timer.checkpointed, timer.seconds))[warmup:]


def measure(config: TrainConfig, log=print) -> tuple[list[tuple[float, float]], list[tuple[float, float, float]]]:
    """(flops, seconds) of each timed step without gradient checkpointing at each calibration length,
    and (flops, recompute flops, seconds) of each with it at checkpointed_lengths: one synthetic
    conversation, longer than the length and cut to it (cutoff_len), trained on at batch 1."""
    from core.models import load_tokenizer, resolve_model
    from core.template import ChatEncoder

    source = resolve_model(config.model_name_or_path)
    encoder = ChatEncoder(load_tokenizer(source), config.system_prompt, config.train_on_prompt)
    shape = model_shape(source.path)
    plain, checkpointed = [], []
    longest = _conversation(max(CALIBRATION_TOKENS))  # longer than any length: each is cut from it
    mask = encoder.encode([longest])[0].trained
    lengths = calibration_lengths(int(mask.argmax()))
    for length in lengths:
        trained = int(mask[:length].sum())
        tokens = BatchTokens(length, length * (length + 1) / 2, trained, length, trained, True)
        timed = _timed_steps(config, longest, length, alternate=length in checkpointed_lengths(lengths))
        for on in (False, True):
            seconds = [s for checkpointed_step, s in timed if checkpointed_step == on]
            if not seconds:
                continue
            run = dataclasses.replace(config, gradient_checkpointing=on)
            flops, recompute = micro_batch_flops(shape, run, tokens), recompute_flops(shape, run, tokens)
            if on:
                checkpointed += [(flops, recompute, s) for s in seconds]
            else:
                plain += [(flops, s) for s in seconds]
            with_it = " with gradient checkpointing" if on else ""
            log(f"calibration: {length} tokens a step{with_it}, {statistics.median(seconds):.2f} s a step")
    return plain, checkpointed


def calibrate(config: TrainConfig, log=print) -> CostModel:
    """Measure, fit and keep the cost model of `config`'s settings on this machine, with and without
    gradient checkpointing."""
    from core.models import best_device, resolve_model

    device = best_device()
    plain, checkpointed = measure(config, log=log)
    line = fit_cost(plain)
    cost = dataclasses.replace(line, recompute_flops_per_s=fit_recompute(plain, checkpointed))
    replaced = save_cost(config, resolve_model(config.model_name_or_path).path, device, cost, plain, checkpointed)
    for measured_at in replaced:
        log(f"calibration: replaced the calibration of {measured_at}, made before checkpointing was measured")
    if cost.recompute_flops_per_s is None:
        log("calibration: the steps with gradient checkpointing were no slower: its recompute counts as the rest")
    recompute = f"{(cost.recompute_flops_per_s or cost.flops_per_s) / 1e9:.1f}"
    log(
        f"calibrated: {cost.overhead_s:.3f} s a step + {cost.flops_per_s / 1e9:.1f} GFLOP/s, "
        f"checkpointing's recompute {recompute} GFLOP/s, on {machine_id(device)}"
    )
    return cost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a training config YAML: its model and settings are measured")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        calibrate(config, log=lambda line: print(line, flush=True))
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
