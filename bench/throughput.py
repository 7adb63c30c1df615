"""Training throughput: the engine (core.train) against the plain transformers Trainer + peft pipeline.

    python -m bench.throughput [--dataset persona|long|PATH] [--model default] [--steps N]
                               [--warmup W] [--batch B] [--accum A] [--cutoff L] [--rounds R]
                               [--variants baseline,ours,ours+gc]

baseline  transformers.Trainer + peft LoRA, batches padded to their longest example, random order,
          gradient checkpointing ON (LLaMA-Factory turns it on by default, also on the CPU),
          full-vocabulary logits at every position: the pipeline most tools run.
ours      core.engine.run_training on the same TrainConfig: what `python -m core.train` runs
          (its default: no gradient checkpointing).
ours+gc   the same with gradient_checkpointing: true, the engine's low-memory setting.

All get the same model, encoded examples (core.engine.prepare_data: same order), LoRA settings,
seed, effective batch (examples per optimizer step) and number of optimizer steps, so optimizer
step k sees the same examples in every variant. Each variant trains in its own process (so peak
RSS is its own), all loaded at once and run in lockstep: optimizer step k of baseline, then of
ours, then of ours+gc, then step k+1 (the order reverses every step), each process waiting while
another steps. Noise from other work on a shared machine thus hits every variant alike, seconds
apart; only the time inside optimizer steps is counted, after a few untimed warm-up ones. Real
tokens are counted from the examples each batch was built from, the same way for all; padding
share = padded positions / positions run. Loss and memory cover every step. The variants are in
memory together (bench/README.md has their peaks); --variants picks fewer.

Datasets: `persona` = datasets_demo/persona_en.jsonl (short chats); `long` = conversations of
512-2,048 tokens (uniform), generated deterministically here; or a path to a .json/.jsonl file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from core.paths import DEMO_DIR, PROJECT_ROOT

PERSONA = DEMO_DIR / "persona_en.jsonl"
# Per dataset: timed optimizer steps, warm-up steps, per-device batch, gradient accumulation,
# cutoff_len. Warm-up steps run first and are not timed: a process's first steps are slower (memory
# touched for the first time, lazily loaded weights), whatever the pipeline. The long set uses a
# smaller effective batch and fewer steps so a run stays within minutes on 2 CPU cores.
PRESETS = {"persona": (10, 2, 2, 4, 1024), "long": (3, 1, 2, 2, 2048)}
VARIANTS = ("baseline", "ours", "ours+gc")
LONG_RANGE = (512, 2048)  # tokens per generated conversation, uniform
LONG_COUNT = 48
WORDS = (
    "order shipping return refund kettle toaster warranty replace broken lid handle cable plug "
    "colour size delivery address change cancel discount code coupon member points gift wrap receipt "
    "invoice tax price weekend store hours open close express tracking link package parcel courier "
    "customer service please thank you could would should which when where why how what because "
    "the a an is are was were will be to of in on for with at by from this that it not no yes "
    "morning evening today tomorrow week month year steel glass black white red blue green small "
    "large boils water tea coffee minutes seconds litre power cord base light switch button clean "
    "descale filter limescale vinegar rinse dry safe child lock temperature degrees keep warm"
).split()


# -------------------------------------------------------------------------------------- datasets
def _words(rng: random.Random, count: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(count))
    return text[:1].upper() + text[1:] + rng.choice([".", "?", "!"])


def long_conversations(tokenizer, count: int = LONG_COUNT, seed: int = 0) -> list[dict]:
    """Multi-turn chats whose rendered length is drawn uniformly from LONG_RANGE (same every run)."""
    from core.template import ChatEncoder

    encoder = ChatEncoder(tokenizer)
    rng = random.Random(seed)
    records = []
    for _ in range(count):
        target = rng.randint(*LONG_RANGE)
        messages: list[dict] = []
        while True:
            messages += [
                {"role": "user", "content": _words(rng, rng.randint(10, 60))},
                {"role": "assistant", "content": _words(rng, rng.randint(40, 250))},
            ]
            length = len(encoder.encode([messages])[0].input_ids)
            if length >= target:
                break
        reply = messages[-1]["content"].split(" ")
        while length > target and len(reply) > 8:  # trim the last reply to land on the target
            reply = reply[: max(8, len(reply) - max(1, (length - target) * 2 // 3))]
            messages[-1]["content"] = " ".join(reply)
            length = len(encoder.encode([messages])[0].input_ids)
        records.append({"messages": messages})
    return records


def dataset_file(name: str, model: str, folder: Path) -> Path:
    if name == "persona":
        return PERSONA
    if name == "long":
        from core.models import load_tokenizer, resolve_model

        path = folder / "long_conversations.jsonl"
        records = long_conversations(load_tokenizer(resolve_model(model)))
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        return path
    path = Path(name)
    if not path.is_file():
        sys.exit(f"error: dataset {name!r} is neither persona, long nor a file")
    return path


# ---------------------------------------------------------------------------------- measurement
def _rss_mb(field: str) -> float | None:
    """VmHWM / VmRSS of this process from /proc (Linux), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def meter_callback(channel, warmup: int):
    """A TrainerCallback that counts the tokens of every batch and times each optimizer step.

    Lockstep: before each step it waits for "go" from the parent (stdin) and after it reports the
    step on `channel`, so only this process computes while it is timed.
    """
    import torch
    from transformers import TrainerCallback

    class Meter(TrainerCallback):
        def __init__(self):
            self.collated: deque[tuple[int, int]] = deque()  # (real tokens, positions) per batch made
            self.step_tokens = [0, 0]  # of the batches the model ran in this optimizer step
            self.steps: list[dict] = []
            self.result: dict = {}

        def _counting(self, collate):
            def collate_and_count(features):
                batch = collate(features)
                self.collated.append((sum(len(f["input_ids"]) for f in features), batch["input_ids"].numel()))
                return batch

            return collate_and_count

        def _consume(self, module, args, kwargs):
            # The data loader runs a batch ahead; a batch counts when the model runs it.
            real, positions = self.collated.popleft()
            self.step_tokens[0] += real
            self.step_tokens[1] += positions

        def on_train_begin(self, args, state, control, train_dataloader=None, model=None, **kwargs):
            loader = getattr(train_dataloader, "base_dataloader", train_dataloader)  # accelerate wraps it
            loader.collate_fn = self._counting(loader.collate_fn)
            # Every forward embeds its batch once (the engine's loss calls the decoder, not the model).
            model.get_input_embeddings().register_forward_pre_hook(self._consume, with_kwargs=True)
            self.start_rss_mb = _rss_mb("VmRSS")
            try:  # restart the high-water mark: the training phase's peak, model loading excluded
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            self.tokens_seen_start = state.num_input_tokens_seen
            channel.write("ready\n")
            channel.flush()

        def on_step_begin(self, args, state, control, **kwargs):
            if sys.stdin.readline().strip() != "go":
                raise SystemExit("bench worker: the parent went away")
            self.step_tokens = [0, 0]
            self.t_wall, self.t_cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            wall, cpu = time.perf_counter() - self.t_wall, time.process_time() - self.t_cpu
            self.steps.append(
                {"wall_s": wall, "cpu_s": cpu, "real_tokens": self.step_tokens[0], "positions": self.step_tokens[1]}
            )
            channel.write(f"step {wall:.3f}\n")
            channel.flush()

        def on_train_end(self, args, state, control, **kwargs):
            timed = self.steps[warmup:]
            self.result = {
                **{key: sum(s[key] for s in timed) for key in ("wall_s", "cpu_s", "real_tokens", "positions")},
                "steps": self.steps,
                "all_real_tokens": sum(s["real_tokens"] for s in self.steps),
                "trainer_tokens": state.num_input_tokens_seen - self.tokens_seen_start,
                "losses": [h["loss"] for h in state.log_history if "loss" in h],
                "start_rss_mb": self.start_rss_mb,
                "train_peak_rss_mb": _rss_mb("VmHWM"),
                "peak_vram_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
            }

    return Meter()


def bench_config(args, dataset: Path, output_dir: Path):
    from core.config import TrainConfig

    return TrainConfig(
        model_name_or_path=args.model,
        dataset=str(dataset),
        cutoff_len=args.cutoff,
        per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=args.accum,
        max_steps=args.warmup + args.steps,
        output_dir=str(output_dir),
        save_steps=10**6,
        logging_steps=1,
    )


def run_ours(config, meter) -> None:
    """The engine exactly as `python -m core.train` runs it, plus the meter."""
    from core.engine import run_training

    run_training(config, callbacks=[meter])


def run_baseline(config, meter) -> None:
    """transformers Trainer + peft LoRA, pad-to-longest, random order, gradient checkpointing on."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed

    from core.engine import as_features, prepare_data
    from core.models import best_device, load_tokenizer, resolve_model
    from core.template import IGNORE_INDEX

    device = best_device()
    source = resolve_model(config.model_name_or_path)
    tokenizer = load_tokenizer(source)
    data = prepare_data(config, tokenizer)  # the same examples in the same order as ours
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype).to(device)
    model.gradient_checkpointing_enable()
    model.enable_input_require_grads()
    set_seed(config.seed)
    model = get_peft_model(
        model,
        LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )
    args = TrainingArguments(
        output_dir=str(Path(config.output_dir) / "checkpoints"),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=dtype == torch.bfloat16,
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=as_features(data.train),
        callbacks=[meter],
        data_collator=DataCollatorForSeq2Seq(
            tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX, return_tensors="pt"
        ),
    )
    trainer.train()


def worker(variant: str, args) -> None:
    """One variant's training in this process, stepping when the parent says "go" (stdin).

    The protocol goes over the original stdout; anything else printed goes to stderr.
    """
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{variant.replace('+', '-')}-"))
    config = bench_config(args, Path(args.dataset_file), folder / "run")
    config.gradient_checkpointing = variant == "ours+gc"
    meter = meter_callback(channel, args.warmup)
    (run_baseline if variant == "baseline" else run_ours)(config, meter)
    result = {**meter.result, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB
    channel.write("result " + json.dumps(result) + "\n")
    channel.flush()


# ------------------------------------------------------------------------------------ reporting
def _median(runs: list[dict], key) -> float | None:
    values = [key(r) for r in runs]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(args, dataset: Path, runs: dict[str, list[dict]], stats: dict) -> None:
    import torch

    def tps(r):
        return r["real_tokens"] / r["wall_s"]

    rows = [
        ("real tokens/s (median)", tps, "{:.1f}", True),
        ("  per run", None, None, False),
        ("real tokens per CPU-second", lambda r: r["real_tokens"] / r["cpu_s"], "{:.1f}", True),
        ("padding share", lambda r: 1 - r["real_tokens"] / r["positions"], "{:.1%}", False),
        ("RSS at training start (MiB)", lambda r: r["start_rss_mb"], "{:.0f}", False),
        ("peak RSS, training phase (MiB)", lambda r: r["train_peak_rss_mb"], "{:.0f}", True),
        ("peak RSS, whole process (MiB)", lambda r: r["peak_rss_mb"], "{:.0f}", True),
        ("peak VRAM (MiB)", lambda r: r["peak_vram_mb"], "{:.0f}", True),
        ("final loss (median)", lambda r: r["losses"][-1] if r["losses"] else None, "{:.4f}", False),
        ("training seconds per run (median)", lambda r: r["wall_s"], "{:.1f}", False),
    ]
    print(
        f"\nThroughput: {args.dataset} ({dataset}), model {args.model}, device "
        f"{'cuda' if torch.cuda.is_available() else 'cpu'} ({torch.get_num_threads()} threads), "
        f"{args.rounds} lockstep run(s), optimizer steps alternating between variants"
    )
    print(
        f"  {stats['train_examples']} examples, mean {stats['mean_length']} / max {stats['max_length']} tokens; "
        f"{args.steps} timed optimizer steps (after {args.warmup} warm-up) x {args.batch * args.accum} examples "
        f"(per-device batch {args.batch} x accumulation {args.accum}), cutoff_len {args.cutoff}"
    )
    print(
        "  baseline: transformers Trainer + peft LoRA, pad-to-longest, random order, full logits,\n"
        "            gradient checkpointing ON (LLaMA-Factory's default, CPU included)"
    )
    print(
        "  ours:     core.engine.run_training (python -m core.train), same TrainConfig, "
        "no gradient checkpointing (its default)"
    )
    print("  ours+gc:  the same with gradient_checkpointing: true\n")
    names = list(runs)
    others = [n for n in names if n != "baseline"] if "baseline" in runs else []
    header = "".join(f"{n:>13}" for n in names) + "".join(f"{n + '/base':>14}" for n in others)
    print(f"  {'':35}{header}")
    for label, key, fmt, ratio in rows:
        if key is None:
            print(f"  {label:35}" + "".join(f"{' '.join(f'{tps(r):.0f}' for r in runs[n]):>13}" for n in names))
            continue
        values = {n: _median(runs[n], key) for n in names}
        if all(v is None for v in values.values()):
            continue
        line = "".join(f"{fmt.format(values[n]) if values[n] is not None else '-':>13}" for n in names)
        if ratio and values.get("baseline"):
            line += "".join(
                f"{values[n] / values['baseline']:>13.2f}x" if values[n] is not None else f"{'':>14}" for n in others
            )
        print(f"  {label:35}{line}")
    for name in others:  # step k of both saw the same examples, seconds apart: same machine weather
        ratios = [
            (o["real_tokens"] / o["wall_s"]) / (b["real_tokens"] / b["wall_s"])
            for rb, ro in zip(runs["baseline"], runs[name])
            for b, o in zip(rb["steps"][args.warmup :], ro["steps"][args.warmup :])
        ]
        print(
            f"  {name}/baseline speed, step by step: {' '.join(f'{x:.2f}' for x in ratios)} "
            f"(median {statistics.median(ratios):.2f}x)"
        )
    print("\n  loss per optimizer step, first round:")
    for name in names:
        print(f"    {name:9}" + " ".join(f"{x:.3f}" for x in runs[name][0]["losses"]))
    if others:
        gaps = [
            max(abs(a - b) for a, b in zip(rb["losses"], ro["losses"]))
            for n in others
            for rb, ro in zip(runs["baseline"], runs[n])
        ]
        print(f"    largest |baseline - other| over the steps, per run: {' '.join(f'{g:.4f}' for g in gaps)}")
    counted = {n: [r["trainer_tokens"] / r["all_real_tokens"] for r in runs[n]] for n in names}
    print(
        "  tokens counted by Trainer (what events.jsonl's tokens_per_s divides) / real tokens: "
        + ", ".join(f"{n} {' '.join(f'{x:.3f}' for x in counted[n])}" for n in names)
    )


def lockstep(args, dataset: Path, variants: list[str], folder: Path) -> dict[str, dict]:
    """Start one worker per variant, then release their optimizer steps one at a time, alternating."""
    procs, logs = {}, {}
    for variant in variants:
        logs[variant] = folder / f"{variant.replace('+', '-')}.log"
        command = [
            sys.executable,
            "-m",
            "bench.throughput",
            "--worker",
            variant,
            "--dataset",
            args.dataset,
            "--dataset-file",
            str(dataset),
            "--model",
            args.model,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--batch",
            str(args.batch),
            "--accum",
            str(args.accum),
            "--cutoff",
            str(args.cutoff),
        ]
        procs[variant] = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=logs[variant].open("w"),
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )

    def expect(variant: str, word: str) -> str:
        line = procs[variant].stdout.readline()
        if not line.startswith(word):
            for proc in procs.values():
                proc.kill()
            print(logs[variant].read_text()[-4000:], file=sys.stderr)
            sys.exit(
                f"error: the {variant} worker failed (expected {word!r}, got {line.strip()!r}); "
                f"its log: {logs[variant]}"
            )
        return line[len(word) :].strip()

    for variant in variants:  # loaded and ready, all of them
        expect(variant, "ready")
    for step in range(args.warmup + args.steps):
        order = variants if step % 2 == 0 else variants[::-1]  # nobody always goes first
        times = {}
        for variant in order:
            procs[variant].stdin.write("go\n")
            procs[variant].stdin.flush()
            times[variant] = float(expect(variant, "step"))
        label = "warm-up" if step < args.warmup else f"{step + 1 - args.warmup}/{args.steps}"
        print(f"step {label}: " + ", ".join(f"{v} {times[v]:.1f} s" for v in variants), flush=True)
    results = {}
    for variant in variants:
        results[variant] = json.loads(expect(variant, "result"))
        procs[variant].wait()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="persona", help="persona, long, or a .json/.jsonl file")
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, help="timed optimizer steps (default: 10 persona, 3 long)")
    parser.add_argument("--warmup", type=int, help="untimed optimizer steps first (default: 2 persona, 1 long)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the whole lockstep run")
    parser.add_argument("--batch", type=int, help="per-device batch (default 2)")
    parser.add_argument("--accum", type=int, help="gradient accumulation (default: 4 persona, 2 long)")
    parser.add_argument("--cutoff", type=int, help="cutoff_len (default: 1024 persona, 2048 long)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated (default {','.join(VARIANTS)})"
    )
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--dataset-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    steps, warmup, batch, accum, cutoff = PRESETS.get(args.dataset, PRESETS["persona"])
    args.steps, args.batch = args.steps or steps, args.batch or batch
    args.warmup = warmup if args.warmup is None else args.warmup
    args.accum, args.cutoff = args.accum or accum, args.cutoff or cutoff
    if args.worker:
        worker(args.worker, args)
        return 0

    folder = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    dataset = dataset_file(args.dataset, args.model, folder)
    from core.engine import prepare_data
    from core.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model(args.model))
    stats = prepare_data(bench_config(args, dataset, folder / "stats"), tokenizer).stats
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        sys.exit(f"error: --variants takes names from {', '.join(VARIANTS)}")
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant, result in lockstep(args, dataset, variants, folder).items():
            runs[variant].append(result)
    report(args, dataset, runs, stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
