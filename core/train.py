"""Supervised fine-tuning with LoRA / QLoRA / LoRA+, from a TrainConfig to a PEFT adapter.

One readable path, top to bottom:
  prepare_data    dataset file -> encoded examples (core.template), truncated, split, with stats
  build_model     base model (maybe 4/8-bit) + LoRA adapters; only the adapters train
  build_optimizer AdamW param groups: LoRA+ (peft) and the optional layer-wise lr scaling
  run_training    transformers.Trainer + a callback that writes events.jsonl and honours STOP
  main            `python -m core.train CONFIG.yaml [key=value ...]`

Run as its own OS process by the web UI, so the server never holds the model being trained.
"""
from __future__ import annotations

import logging
import math
import random
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# bitsandbytes (imported by transformers below) logs "Failed to load CPU gemm_4bit_forward from
# kernels-community" at import when the optional `kernels` package is missing: harmless (it falls
# back to its own CPU kernel), but with no handler configured yet Python prints it to the terminal.
# A NullHandler is the standard library fix; the CLI's log file still receives later bnb messages.
logging.getLogger("bitsandbytes").addHandler(logging.NullHandler())
# peft asks models for the deprecated `is_gradient_checkpointing`; the warning is not the user's to fix.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from core.advisor import advise, template_injects_system
from core.config import TrainConfig, load_config, parse_overrides, save_config
from core.data import load_dataset
from core.errors import UserInputError
from core.events import RunFolder
from core.lora_dropout import fuse_lora_dropout
from core.models import best_device, load_model, load_tokenizer, resolve_model
from core.packing import PackingCollator, TrainedTokensTrainer, use_packed_attention
from core.template import IGNORE_INDEX, ChatEncoder, Encoded, truncate

log = logging.getLogger("lora_tailor.train")

LAYERWISE_MIN_SCALE = 0.1  # the bottom layer's lr share under layerwise_lr: cosine
LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")  # "model.layers.7.self_attn.q_proj.lora_A.default.weight"


# ----------------------------------------------------------------------------------------- data
@dataclass
class PreparedData:
    train: list[Encoded]
    eval: list[Encoded]
    stats: dict[str, Any] = field(default_factory=dict)


def encode_dataset(config: TrainConfig, tokenizer) -> tuple[list[Encoded], dict[str, Any]]:
    """Load, render and tokenize the dataset, then cut to cutoff_len.

    An example whose trained tokens all fall beyond the cutoff would teach nothing (and divide the
    loss by zero), so it is dropped and counted instead of silently trained on.
    """
    dataset = load_dataset(config.dataset, config.dataset_format)
    encoder = ChatEncoder(tokenizer, config.system_prompt, config.train_on_prompt)
    examples, truncated, dropped = [], 0, 0
    for full in encoder.encode(dataset.conversations):
        cut = truncate(full, config.cutoff_len)
        if len(cut.input_ids) < len(full.input_ids):
            truncated += 1
        if not cut.trained.any():
            dropped += 1
            continue
        examples.append(cut)
    stats = {"dataset": config.dataset, "format": dataset.format,
             "examples": len(dataset.conversations), "truncated": truncated, "dropped": dropped}
    return examples, stats


def prepare_data(config: TrainConfig, tokenizer) -> PreparedData:
    examples, stats = encode_dataset(config, tokenizer)
    if not examples:
        raise UserInputError(f"No example of {config.dataset} has a trained token within cutoff_len="
                             f"{config.cutoff_len}: raise cutoff_len.")
    order = list(range(len(examples)))
    random.Random(config.seed).shuffle(order)
    n_eval = math.ceil(len(examples) * config.val_size) if config.val_size > 0 else 0
    n_eval = min(n_eval, len(examples) - 1)  # always leave something to train on
    data = PreparedData(train=[examples[i] for i in order[n_eval:]],
                        eval=[examples[i] for i in order[:n_eval]], stats=stats)
    lengths = [len(e.input_ids) for e in data.train]
    stats.update(train_examples=len(data.train), eval_examples=len(data.eval),
                 train_tokens=sum(lengths), trained_tokens=int(sum(e.trained.sum() for e in data.train)),
                 max_length=max(lengths), mean_length=round(sum(lengths) / len(lengths), 1))
    return data


def as_features(examples: list[Encoded]) -> list[dict[str, list[int]]]:
    return [{"input_ids": e.input_ids.tolist(), "labels": e.labels().tolist(),
             "attention_mask": [1] * len(e.input_ids)} for e in examples]


def padding_collator(tokenizer):
    """Pads each batch to its longest example; padded labels are IGNORE_INDEX."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX,
                                  return_tensors="pt")


# ---------------------------------------------------------------------------------------- model
def build_model(config: TrainConfig, device: str):
    """Base model (frozen, maybe quantized) with LoRA adapters on `lora_target`."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    source = resolve_model(config.model_name_or_path)
    tokenizer = load_tokenizer(source)
    model = load_model(source, config.quantization_bit, device)
    if config.quantization_bit != "none":
        # Casts norms to float32 and enables input grads, so gradients flow through frozen 4/8-bit layers.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    target = "all-linear" if config.lora_target.strip() == "all" else [
        t.strip() for t in config.lora_target.split(",") if t.strip()]
    set_seed(config.seed)  # LoRA A init is random: same seed, same adapter start
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=target, task_type="CAUSAL_LM")
    try:
        model = get_peft_model(model, lora)
    except ValueError as err:  # peft names the missing target modules
        raise UserInputError(f"lora_target={config.lora_target!r} does not fit this model: {err}") from None
    return model, tokenizer


def layer_scale(name: str, num_layers: int) -> float:
    """Cosine ramp over depth: the bottom layer gets LAYERWISE_MIN_SCALE, the top layer 1.0."""
    match = LAYER_INDEX.search(name)
    if match is None or num_layers < 2:
        return 1.0
    depth = int(match.group(1)) / (num_layers - 1)  # 0 at the bottom, 1 at the top
    return LAYERWISE_MIN_SCALE + (1 - LAYERWISE_MIN_SCALE) * (1 - math.cos(math.pi * depth)) / 2


def build_optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable (LoRA) weights.

    LoRA+: peft's create_loraplus_optimizer sorts lora_B into groups at lr x ratio. Layer-wise lr:
    each group is then split by layer, every part scaled by layer_scale(). Both compose.
    """
    from peft.optimizers import create_loraplus_optimizer

    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.loraplus_lr_ratio > 0:
        groups = create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=config.learning_rate, loraplus_lr_ratio=config.loraplus_lr_ratio,
            loraplus_weight_decay=config.weight_decay).param_groups
        groups = [{k: v for k, v in g.items() if k in ("params", "lr", "weight_decay")} for g in groups]
    else:
        groups = [{"params": trainable, "lr": config.learning_rate, "weight_decay": config.weight_decay}]
    groups = [g for g in groups if g["params"]]
    if config.layerwise_lr == "cosine":
        names = {id(p): n for n, p in model.named_parameters()}
        num_layers = model.get_base_model().config.num_hidden_layers
        split = []
        for group in groups:
            by_scale: dict[float, list] = {}
            for param in group["params"]:
                by_scale.setdefault(layer_scale(names[id(param)], num_layers), []).append(param)
            split += [{**group, "params": params, "lr": group["lr"] * scale}
                      for scale, params in sorted(by_scale.items())]
        groups = split
    return torch.optim.AdamW(groups, lr=config.learning_rate)


# ------------------------------------------------------------------------------------- training
def training_arguments(config: TrainConfig, run: RunFolder, device: str, has_eval: bool):
    from transformers import TrainingArguments

    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # a float in [0, 1) is a share of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        bf16=bf16,
        fp16=device == "cuda" and not bf16,
        use_cpu=device == "cpu",
        report_to=[],
        disable_tqdm=True,  # the events callback draws its own bar with the loss in it
        remove_unused_columns=False,
        prediction_loss_only=True,  # eval needs eval_loss only: no [tokens, vocab] logits gathered
        dataloader_num_workers=0,
        # Real tokens, for tokens_per_s: packed rows hold no padding (and no attention_mask to count).
        include_num_input_tokens_seen="all" if config.packing else "non_padding",
    )


class EventsCallback(TrainerCallback):
    """Turns Trainer callbacks into events.jsonl lines, and STOP / SIGTERM into a clean stop."""

    def __init__(self, run: RunFolder, config: TrainConfig, stats: dict, show_progress: bool,
                 stop_signals: StopSignals | None = None):
        self.run, self.config, self.stats = run, config, stats
        self.show_progress = show_progress
        self.stop_signals = stop_signals
        self.stop_reason: str | None = None
        self.bar = None
        self.started = self.last_time = time.monotonic()
        self.first_tokens = self.last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_tokens = self.last_tokens = state.num_input_tokens_seen  # non-zero when resuming
        self.started = self.last_time = time.monotonic()
        self.run.append_event("start", total_steps=state.max_steps, resumed_from_step=state.global_step,
                              num_train_epochs=self.config.num_train_epochs,
                              effective_batch_size=self.config.effective_batch_size, **self.stats)
        if self.show_progress:
            from tqdm import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
        if self.stop_reason is None and self.stop_signals is not None and self.stop_signals.caught:
            self.stop_reason = self.stop_signals.caught
        if self.stop_reason is None and self.run.stop_requested():
            self.stop_reason = "STOP file"
        if self.stop_reason is not None and not control.should_training_stop:
            log.info("stop requested (%s): saving at step %d", self.stop_reason, state.global_step)
        if self.stop_reason is not None:
            # Save a resumable checkpoint at this very step, then leave the loop.
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, optimizer=None, **kwargs):
        logs = logs or {}
        now = time.monotonic()
        if "eval_loss" in logs:
            self.run.append_event("eval", step=state.global_step, epoch=round(state.epoch or 0, 4),
                                  eval_loss=round(logs["eval_loss"], 5))
            log.info("step %d eval_loss %.4f", state.global_step, logs["eval_loss"])
            return
        if "loss" not in logs:
            return
        tokens = state.num_input_tokens_seen - self.last_tokens
        # The lr logged by Trainer is group 0's; report the schedule applied to learning_rate, since
        # group 0 may be scaled by LoRA+ or the layer-wise ramp.
        lr = logs.get("learning_rate", 0.0)
        if optimizer is not None and optimizer.param_groups[0].get("initial_lr"):
            lr = lr / optimizer.param_groups[0]["initial_lr"] * self.config.learning_rate
        event = {"step": state.global_step, "epoch": round(state.epoch or 0, 4),
                 "loss": round(logs["loss"], 5), "lr": lr, "grad_norm": round(float(logs.get("grad_norm", 0.0)), 5),
                 "tokens_per_s": round(tokens / max(now - self.last_time, 1e-9), 1),
                 "elapsed_s": round(now - self.started, 2), "total_steps": state.max_steps}
        self.last_time, self.last_tokens = now, state.num_input_tokens_seen
        self.run.append_event("step", **event)
        log.info("step %d/%d loss %.4f lr %.3g tokens/s %.0f", state.global_step, state.max_steps,
                 logs["loss"], lr, event["tokens_per_s"])
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


class StopSignals:
    """From model loading on, SIGTERM and Ctrl-C (SIGINT) end the run after the current step, with a
    checkpoint and the adapter saved, instead of killing it mid-write; a second Ctrl-C aborts at once.
    Installed only in the main thread (Python allows signal handlers nowhere else); the previous
    handlers come back on exit, so an in-process caller (tests, a notebook) keeps its own."""

    def __init__(self):
        self.caught: str | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.caught is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.caught = name  # no logging here: the handler may interrupt a logging call

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def run_training(config: TrainConfig, show_progress: bool = False, print_advice: bool = False,
                 callbacks: tuple = ()) -> dict[str, Any]:
    """Train and return the final event (done or stopped). Errors are raised to the caller.

    `callbacks`: extra TrainerCallbacks (bench.throughput meters a run with one)."""
    with StopSignals() as stop_signals:
        return _run_training(config, show_progress, print_advice, stop_signals, callbacks)


def _run_training(config: TrainConfig, show_progress: bool, print_advice: bool,
                  stop_signals: StopSignals, callbacks: tuple = ()) -> dict[str, Any]:
    from transformers import PrinterCallback

    run = RunFolder(config.output_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    save_config(config, run.config)
    run.stop_file.unlink(missing_ok=True)  # a STOP left by the previous (stopped) attempt
    device = best_device()
    resume_from = run.latest_checkpoint() if config.resume else None
    if config.resume and resume_from is None:
        run.append_event("warning", message="resume: true but no complete checkpoint in "
                                            f"{run.checkpoints}; starting from scratch")
    model, tokenizer = build_model(config, device)
    data = prepare_data(config, tokenizer)
    stats = {**data.stats, "device": device, "quantization_bit": config.quantization_bit,
             "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    log.info("data: %s", stats)
    if data.stats["truncated"] or data.stats["dropped"]:
        message = (f"{data.stats['truncated']} example(s) truncated at cutoff_len={config.cutoff_len}; "
                   f"{data.stats['dropped']} dropped (no trained token left)")
        run.append_event("warning", message=message)
        log.warning(message)

    # The advisor's notes go into the start event (the web UI shows them) and, from the CLI, to stderr.
    notes = advise(config, len(data.train), template_injects_system(ChatEncoder(tokenizer)))
    stats["advice"] = [str(note) for note in notes]
    for note in notes:
        log.info("advisor: %s", note)
        if print_advice:
            print(note, file=sys.stderr)

    events = EventsCallback(run, config, stats, show_progress, stop_signals)
    if config.packing:
        use_packed_attention(model)  # per-example causal sdpa on packed rows (core.packing)
    fuse_lora_dropout(model)  # CPU: LoRA dropout kept as a bool mask inside lora_A (core.lora_dropout)
    # Trainer whose loss projects onto the vocabulary only the positions that predict a trained token
    trainer = TrainedTokensTrainer(
        model=model,
        args=training_arguments(config, run, device, has_eval=bool(data.eval)),
        train_dataset=as_features(data.train),
        eval_dataset=as_features(data.eval) if data.eval else None,
        data_collator=PackingCollator() if config.packing else padding_collator(tokenizer),
        optimizers=(build_optimizer(model, config), None),
        callbacks=[events, *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; the events callback reports
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)

    model.save_pretrained(run.adapter)
    tokenizer.save_pretrained(run.adapter)  # tokenizer + chat template travel with the adapter
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    final = {"step": trainer.state.global_step, "total_steps": trainer.state.max_steps,
             "final_loss": losses[-1] if losses else None, "final_eval_loss": evals[-1] if evals else None,
             "train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 2),
             "tokens_per_s": round((trainer.state.num_input_tokens_seen - events.first_tokens)
                                   / max(time.monotonic() - events.started, 1e-9), 1),
             "adapter": str(run.adapter)}
    if events.stop_reason:
        return run.append_event("stopped", reason=events.stop_reason, **final)
    return run.append_event("done", **final)


# ------------------------------------------------------------------------------------------ CLI
def _setup_logging(run: RunFolder) -> logging.Handler:
    run.path.mkdir(parents=True, exist_ok=True)
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m core.train CONFIG.yaml [key=value ...]\n"
              "Trains a LoRA adapter as described by CONFIG.yaml; key=value pairs override its keys.")
        return 0 if argv else 2
    try:
        config = load_config(argv[0], parse_overrides(argv[1:]))
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    run = RunFolder(config.output_dir)
    handler = _setup_logging(run)
    try:
        return _train_and_report(config, run)
    finally:  # an in-process caller (tests) must not keep logging into this run's train.log
        logging.getLogger().removeHandler(handler)
        handler.close()


def _train_and_report(config: TrainConfig, run: RunFolder) -> int:
    try:
        final = run_training(config, show_progress=sys.stderr.isatty(), print_advice=True)
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
    print(f"{final['type']}: step {final['step']}/{final['total_steps']}, final loss {final['final_loss']}, "
          f"{final['tokens_per_s']} tokens/s; adapter in {final['adapter']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
