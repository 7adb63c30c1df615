"""Training time against LLaMA-Factory, the tool people would use instead, side by side in one script.

    python -m bench.lf_peer [--shape short|long|both] [--rounds 2] [--variants ours,lf]

Both train the same data file, model files (core.models.resolve_model("default"), an HF folder),
LoRA (rank 8, alpha 16, dropout 0.05, all linear layers), batch, learning rate, schedule, seed and
epochs, each as its own command in its own process:
  ours      `python -m core.train cfg.yaml` with the project's defaults (on a CPU with AMX or
            AVX512-BF16 that includes cpu_bf16: bf16 base products, float32 LoRA and residual stream)
  ours-fp32 the same with cpu_bf16: false (float32 throughout, as LLaMA-Factory's CPU default)
  ours-system    the same with cpu_allocator: system (glibc's malloc, its heap trimmed: release_freed_memory)
  lf        `llamafactory-cli train cfg.yaml` in bench/.lf-venv (bench/lf_venv.py) with its own
            defaults (float32 on the CPU, gradient checkpointing on, batches padded to the longest)
  lf-bf16   the same with `bf16: true` (LLaMA-Factory's switch for bf16 mixed precision)
Training time is each tool's own `train_runtime` (Trainer's clock, model loading excluded): from
LLaMA-Factory's all_results.json and from our `done` event. Tokens/s divides the same count for
both (the examples' tokens as our encoder counts them, times the epochs) by that time. Peak
memory is the process's maximum RSS (os.wait4), model loading included for both. Runs alternate
(ours, lf, lf, ours, ...) over the rounds so that other work on a shared machine hits both alike;
the table gives medians and the per-round ratios.

Shapes: short = 54 chats sampled from datasets_demo/persona_en.jsonl (the persona FAQ case, ~60
tokens a chat), batch 4 x accumulation 1, 2 epochs; long = chats of 512-2,048 tokens
(bench.throughput.long_conversations), batch 2 x accumulation 1, 1 epoch. The training switches
were tuned on those two. The held-out shapes came after, to check them on what they were not tuned
on: short-zh = 64 chats of persona_zh.jsonl (Chinese), batch 8, 2 epochs; short-b1 = 24 other
persona_en chats, batch 1, 1 epoch; long-b1 = 6 other long chats, batch 1, 1 epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.lf_venv import register_dataset
from bench.throughput import long_conversations
from core.paths import DEMO_DIR, PROJECT_ROOT


@dataclass(frozen=True)
class Shape:
    chats: int
    batch: int
    accum: int
    epochs: float
    cutoff_len: int
    source: str  # a datasets_demo file's name, or "long" (bench.throughput.long_conversations)
    seed: int  # which chats: the sample's, or the long chats' generator's


SHAPES = {
    "short": Shape(54, 4, 1, 2.0, 1024, "persona_en.jsonl", 5),
    "long": Shape(8, 2, 1, 1.0, 2048, "long", 0),
    # held out: not looked at while the training switches were chosen
    "short-zh": Shape(64, 8, 1, 2.0, 1024, "persona_zh.jsonl", 7),
    "short-b1": Shape(24, 1, 1, 1.0, 1024, "persona_en.jsonl", 11),
    "long-b1": Shape(6, 1, 1, 1.0, 2048, "long", 3),
}
TUNED_ON = ("short", "long")
VARIANTS = ("ours", "ours-fp32", "ours-system", "lf", "lf-bf16")
# The same hyperparameters for both tools, in LLaMA-Factory's key names (ours uses the same names).
COMMON = {
    "learning_rate": 2e-4,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1,
    "lora_rank": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "seed": 42,
    "max_grad_norm": 1.0,
    "weight_decay": 0.0,
    "logging_steps": 1,
}


def shape_data(name: str, folder: Path) -> Path:
    """The shape's chats as an OpenAI-style JSONL file (the same file for both tools)."""
    from core.models import load_tokenizer, resolve_model

    shape = SHAPES[name]
    if shape.source == "long":
        records = long_conversations(load_tokenizer(resolve_model("default")), count=shape.chats, seed=shape.seed)
    else:
        lines = (DEMO_DIR / shape.source).read_text(encoding="utf-8").splitlines()
        records = random.Random(shape.seed).sample([json.loads(line) for line in lines if line.strip()], shape.chats)
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


OUR_SWITCHES = {"ours": {}, "ours-fp32": {"cpu_bf16": False}, "ours-system": {"cpu_allocator": "system"}}


def our_config(shape: Shape, data: Path, model: str, out: Path, switches: dict) -> dict:
    """Our YAML for a shape: the common hyperparameters, the project's defaults but for `switches`."""
    return {
        **COMMON,
        "model_name_or_path": model,
        "dataset": str(data),
        "cutoff_len": shape.cutoff_len,
        "per_device_train_batch_size": shape.batch,
        "gradient_accumulation_steps": shape.accum,
        "num_train_epochs": shape.epochs,
        "lr_reference_batch": 0,  # the learning rate as written, like LLaMA-Factory
        "save_steps": 10**6,
        "output_dir": str(out),
        **switches,
    }


def lf_config(shape: Shape, data: Path, model_path: str, out: Path, bf16: bool) -> dict:
    register_dataset(data)
    return {
        **COMMON,
        "model_name_or_path": model_path,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_target": "all",
        "dataset": data.stem,
        "dataset_dir": str(data.parent),
        "template": "smollm2",
        "cutoff_len": shape.cutoff_len,
        "overwrite_cache": True,
        "per_device_train_batch_size": shape.batch,
        "gradient_accumulation_steps": shape.accum,
        "num_train_epochs": shape.epochs,
        "output_dir": str(out),
        "overwrite_output_dir": True,
        "save_strategy": "no",
        "report_to": "none",
        "plot_loss": False,
        "bf16": bf16,
    }


def timed_process(command: list[str], log: Path, env: dict[str, str]) -> tuple[int, float]:
    """Run a command; (exit status, its peak RSS in MiB, from the kernel's rusage of that child)."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024  # KiB on Linux


def run_variant(variant: str, shape: Shape, data: Path, args, folder: Path) -> dict:
    from core.models import resolve_model

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{variant}-run"
    cfg = folder / f"{variant}.yaml"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DISABLE_VERSION_CHECK": "1", "PYTHONWARNINGS": "ignore"}
    if variant.startswith("ours"):
        config = our_config(shape, data, args.model, out, OUR_SWITCHES[variant])
        command = [sys.executable, "-m", "core.train", str(cfg)]
    else:
        from bench.lf_venv import lf_python

        config = lf_config(shape, data, resolve_model(args.model).path, out, bf16=variant == "lf-bf16")
        command = [str(lf_python()), "-m", "llamafactory.cli", "train", str(cfg)]
    cfg.write_text(yaml.safe_dump(config))
    log = folder / f"{variant}.log"
    code, peak_mb = timed_process(command, log, env)
    if code != 0:
        sys.exit(f"error: {variant} failed (exit {code}); the end of {log}:\n{log.read_text()[-3000:]}")
    if variant.startswith("ours"):
        events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
        done = next(e for e in events if e["type"] == "done")
        start = next(e for e in events if e["type"] == "start")
        losses = [e["loss"] for e in events if e["type"] == "step"]
        runtime, extra = done["train_runtime_s"], start.get("optimisations", {})
    else:
        runtime = json.loads((out / "all_results.json").read_text())["train_runtime"]
        history = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
        losses = [h["loss"] for h in history if "loss" in h]
        extra = {}
    return {"train_s": runtime, "peak_rss_mb": peak_mb, "losses": losses, "optimisations": extra}


def epoch_means(losses: list[float], epochs: float) -> list[float]:
    """Mean loss per epoch: order-independent, so two tools' curves compare despite different shuffles."""
    per = max(1, round(len(losses) / epochs))
    return [statistics.fmean(losses[i : i + per]) for i in range(0, len(losses), per)]


def report(name: str, shape: Shape, data: Path, tokens: int, runs: dict[str, list[dict]], epochs: float) -> None:
    names = list(runs)
    base = "lf" if "lf" in runs else names[-1]
    print(
        f"\n{name}: {data.name}, {shape.chats} chats, {round(tokens / epochs)} tokens an epoch, "
        f"batch {shape.batch} x accumulation {shape.accum}, {epochs:g} epoch(s), cutoff_len "
        f"{shape.cutoff_len}; {len(runs[names[0]])} round(s), medians"
    )
    rows = [
        ("training time (s)", lambda r: r["train_s"], "{:.1f}"),
        ("tokens/s", lambda r: tokens / r["train_s"], "{:.1f}"),
        ("peak RSS (MiB)", lambda r: r["peak_rss_mb"], "{:.0f}"),
        ("final loss", lambda r: r["losses"][-1], "{:.4f}"),
        ("last epoch's mean loss", lambda r: epoch_means(r["losses"], epochs)[-1], "{:.4f}"),
    ]
    others = [n for n in names if n != base]
    print(f"  {'':26}" + "".join(f"{n:>11}" for n in names) + "".join(f"{n + '/' + base:>14}" for n in others))
    for label, key, fmt in rows:
        values = {n: statistics.median(key(r) for r in runs[n]) for n in names}
        line = "".join(f"{fmt.format(values[n]):>11}" for n in names)
        line += "".join(f"{values[n] / values[base]:>13.2f}x" for n in others)
        print(f"  {label:26}{line}")
    for n in others:  # speed ratio round by round: the runs of one round were minutes apart
        ratios = [b["train_s"] / o["train_s"] for o, b in zip(runs[n], runs[base])]
        print(f"  {base} time / {n} time per round: {' '.join(f'{x:.2f}' for x in ratios)}")
    for n in names:
        print(f"  epoch mean losses {n:10}" + " ".join(f"{x:.4f}" for x in epoch_means(runs[n][0]["losses"], epochs)))
        print(f"  losses, round 1, {n:10}" + " ".join(f"{x:.3f}" for x in runs[n][0]["losses"]))
    for n in names:
        if runs[n][0]["optimisations"]:
            print(f"  {n} optimisations (start event): {runs[n][0]['optimisations']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lf_peer", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shape",
        default="both",
        choices=(*SHAPES, "both", "held-out"),
        help="both: short and long; held-out: the rest",
    )
    parser.add_argument("--rounds", type=int, default=2, help="each variant runs this many times, alternating")
    parser.add_argument("--variants", default="ours,lf", help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--model", default="default")
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        sys.exit(f"error: --variants takes names from {', '.join(VARIANTS)}")
    from core.config import TrainConfig
    from core.engine import prepare_data
    from core.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(args.model))
    held_out = [name for name in SHAPES if name not in TUNED_ON]
    for name in {"both": TUNED_ON, "held-out": held_out}.get(args.shape, (args.shape,)):
        shape = SHAPES[name]
        folder = Path(tempfile.mkdtemp(prefix=f"bench-lf-{name}-"))
        data = shape_data(name, folder)
        config = TrainConfig(dataset=str(data), cutoff_len=shape.cutoff_len)
        tokens = int(prepare_data(config, tokenizer).stats["train_tokens"] * shape.epochs)
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for round_index in range(args.rounds):
            order = variants if round_index % 2 == 0 else variants[::-1]  # nobody always goes first
            for variant in order:
                result = run_variant(variant, shape, data, args, folder / f"round{round_index}")
                runs[variant].append(result)
                print(
                    f"{name} round {round_index + 1}: {variant} {result['train_s']:.1f} s, "
                    f"peak {result['peak_rss_mb']:.0f} MiB, final loss {result['losses'][-1]:.4f}",
                    flush=True,
                )
        report(name, shape, data, tokens, runs, shape.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
