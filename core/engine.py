"""Supervised fine-tuning with LoRA / QLoRA / LoRA+, from a TrainConfig to a PEFT adapter.

One readable path, top to bottom:
  probes_for_run  the dataset's conversations -> those trained on + fact probes held out (core.probes)
  augment_for_run new phrasings of the user turns, none close to a probe (core.augment)
  prepare_data    conversations -> encoded examples (core.template), truncated, split, with stats
  training_plan   epochs ('auto') and learning rate (scaled from its reference batch), core.advisor
  build_model     base model (maybe 4/8-bit) + LoRA adapters; only the adapters train
  build_optimizer AdamW param groups: LoRA+ (peft) and the optional layer-wise lr scaling; fused
  run_training    transformers.Trainer with callbacks: events.jsonl and STOP (EventsCallback), the
                  health guard (core.health: bad steps skipped, rollback, out-of-memory back-off),
                  probe scoring with the best-recall adapter kept (ProbeCallback)

`python -m core.train` (core/train.py) is the command line around it; the web UI runs that as its
own OS process, so the server never holds the model being trained. The run folder is prepared by
whoever launches the run (core.runs.prepare_run): this module only trains.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import re
import shutil
import sys
import time
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
from accelerate.utils import DistributedType  # noqa: E402
from transformers import Trainer, TrainerCallback  # noqa: E402

from core import distributed
from core.advisor import advise, template_injects_system, training_plan
from core.augment import augment_conversations, config_spec, make_generator, write_jsonl_atomically
from core.config import TrainConfig
from core.cpu_allocator import SYSTEM, active_allocator
from core.data import Dataset, eval_count
from core.dataset_info import load_run_dataset
from core.errors import UserInputError
from core.events import RunFolder
from core.freed_memory import trim_heap_after_layers
from core.fused_mlp import fuse_swiglu
from core.health import (
    MAX_ROLLBACKS,
    ROLLBACK_LR_FACTOR,
    HealthGuard,
    is_out_of_memory,
    reset_lora,
    trainable_parameters,
    weights_are_finite,
)
from core.lf_compat import check_template
from core.lora_addmm import add_lora_with_addmm, float32_residual_stream
from core.lora_dropout import fuse_lora_dropout
from core.models import best_device, cpu_bf16_applies, load_model, load_tokenizer, resolve_model
from core.packing import PackingCollator, TrainedTokensTrainer, use_packed_attention
from core.probes import RUN_PROBES_FILE, Probe, probes_for_run, save_probes, score_probes
from core.shared_lora_input import share_lora_input
from core.stop import StopSignals
from core.template import IGNORE_INDEX, ChatEncoder, Encoded, truncate

log = logging.getLogger("lora_tailor.train")

AUGMENTED_FILE = "augmented.jsonl"
STOP_REASONS = ("STOP file", "SIGTERM", "SIGINT")  # a stop's reason, as the ranks agree on it by index
ANSWER_CHARS = 200  # of each probe answer kept in a probe event  # a run's training conversations after augmentation
LAYERWISE_MIN_SCALE = 0.1  # the bottom layer's lr share under layerwise_lr: cosine
LAYER_INDEX = re.compile(r"\.layers\.(\d+)\.")  # "model.layers.7.self_attn.q_proj.lora_A.default.weight"


# ----------------------------------------------------------------------------------------- data
@dataclass
class PreparedData:
    train: list[Encoded]
    eval: list[Encoded]
    stats: dict[str, Any] = field(default_factory=dict)


def encode_dataset(
    config: TrainConfig, tokenizer, dataset: Dataset | None = None
) -> tuple[list[Encoded], dict[str, Any]]:
    """Render and tokenize the dataset (by default: config.dataset's file), then cut to cutoff_len.

    An example whose trained tokens all fall beyond the cutoff would teach nothing (and divide the
    loss by zero), so it is dropped and counted instead of silently trained on.
    """
    dataset = dataset or load_run_dataset(config)
    conversations = dataset.conversations
    encoder = ChatEncoder(tokenizer, config.system_prompt, config.train_on_prompt)
    examples, truncated, dropped = [], 0, 0
    for full in encoder.encode(conversations):
        cut = truncate(full, config.cutoff_len)
        if len(cut.input_ids) < len(full.input_ids):
            truncated += 1
        if not cut.trained.any():
            dropped += 1
            continue
        examples.append(cut)
    stats = {
        "dataset": config.dataset,
        "format": dataset.format,
        "examples": len(conversations),
        "truncated": truncated,
        "dropped": dropped,
    }
    return examples, stats


def prepare_data(config: TrainConfig, tokenizer, dataset: Dataset | None = None) -> PreparedData:
    examples, stats = encode_dataset(config, tokenizer, dataset)
    if not examples:
        raise UserInputError(
            f"No example of {config.dataset} has a trained token within cutoff_len="
            f"{config.cutoff_len}: raise cutoff_len."
        )
    order = list(range(len(examples)))
    random.Random(config.seed).shuffle(order)
    n_eval = eval_count(len(examples), config.val_size)
    data = PreparedData(
        train=[examples[i] for i in order[n_eval:]], eval=[examples[i] for i in order[:n_eval]], stats=stats
    )
    lengths = [len(e.input_ids) for e in data.train]
    stats.update(
        train_examples=len(data.train),
        eval_examples=len(data.eval),
        train_tokens=sum(lengths),
        trained_tokens=int(sum(e.trained.sum() for e in data.train)),
        max_length=max(lengths),
        mean_length=round(sum(lengths) / len(lengths), 1),
    )
    return data


def as_features(examples: list[Encoded]) -> list[dict[str, list[int]]]:
    return [
        {"input_ids": e.input_ids.tolist(), "labels": e.labels().tolist(), "attention_mask": [1] * len(e.input_ids)}
        for e in examples
    ]


def padding_collator(tokenizer):
    """Pads each batch to its longest example; padded labels are IGNORE_INDEX."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE_INDEX, return_tensors="pt")


# ---------------------------------------------------------------------------------------- model
def build_model(config: TrainConfig, device: str):
    """Base model (frozen, maybe quantized) with LoRA adapters on `lora_target`."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    source = resolve_model(config.model_name_or_path)
    tokenizer = load_tokenizer(source)
    model = load_model(
        source,
        config.quantization_bit,
        device,
        sharded=distributed.strategy(config) == "fsdp",
        cpu_bf16=config.cpu_bf16,
    )
    if config.quantization_bit != "none":
        # Casts norms to float32 and enables input grads, so gradients flow through frozen 4/8-bit layers.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    target = (
        "all-linear"
        if config.lora_target.strip() == "all"
        else [t.strip() for t in config.lora_target.split(",") if t.strip()]
    )
    set_seed(config.seed)  # LoRA A init is random: same seed, same adapter start
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target,
        task_type="CAUSAL_LM",
    )
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
            model,
            torch.optim.AdamW,
            lr=config.learning_rate,
            loraplus_lr_ratio=config.loraplus_lr_ratio,
            loraplus_weight_decay=config.weight_decay,
        ).param_groups
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
            split += [
                {**group, "params": params, "lr": group["lr"] * scale} for scale, params in sorted(by_scale.items())
            ]
        groups = split
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=fused_adamw_applies(model, config))


def fused_adamw_applies(model, config: TrainConfig) -> bool:
    """Whether AdamW runs as torch's fused kernel: all the LoRA tensors in one call, where its CPU
    default loops over them in Python, a cost every step that shows at batch 1 (bench/README.md,
    "Fused AdamW"). The kernel exists for these devices' tensors only."""
    devices = {p.device.type for p in model.parameters() if p.requires_grad}
    return config.fused_adamw and devices <= {"cpu", "cuda", "mps"}


def augment_for_run(config: TrainConfig, run: RunFolder, conversations: list, probes: list[Probe]) -> list:
    """The training conversations with new phrasings (core.augment), none close to a probe question.
    Written to <run>/augmented.jsonl (whole or not at all) and summed up in an `augment` event."""
    generator = make_generator(config_spec(config))
    augmented, report = augment_conversations(
        conversations, generator, config.augment_per_turn, [p.question for p in probes], config.seed
    )
    write_jsonl_atomically(augmented, run.path / AUGMENTED_FILE)
    run.append_event(
        "augment",
        generator=report.generator,
        source_conversations=report.source_conversations,
        output_conversations=report.output_conversations,
        removed_copies=report.removed_copies,
        removed_near_duplicates=report.removed_near_duplicates,
        removed_leakage=report.removed_leakage,
        errors=report.errors[:20],
    )
    log.info("augment: %s", report.summary())
    if report.errors:  # partial: training goes on with what was generated, and says so
        run.append_event(
            "warning", message=f"augment: {len(report.errors)} user turn(s) got no new phrasings ({report.errors[0]})"
        )
    return augmented


# -------------------------------------------------------------------------------------- outputs
def save_tokenizer_with_system_prompt(tokenizer, system_prompt: str, folder: Path) -> None:
    """Save the tokenizer with a chat template that starts every conversation without a system turn
    with `system_prompt`, so `AutoTokenizer.from_pretrained(adapter)` renders chats the way the
    adapter was trained (core.template.with_system_prompt does the same in training and chat)."""
    template = tokenizer.chat_template
    if system_prompt.strip() and isinstance(template, str):
        quoted = json.dumps(system_prompt)  # a JSON string is a valid Jinja string literal
        # One top-level `set` (inside an `if` block it would not reach the template below).
        tokenizer.chat_template = (
            f"{{%- set messages = ([{{'role': 'system', 'content': {quoted}}}] + messages) if (not messages or "
            f"messages[0]['role'] != 'system') else messages -%}}" + template
        )
    try:
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.chat_template = template


def keep_best_adapter(probing: ProbeCallback, run: RunFolder, final_step: int) -> dict[str, Any]:
    """Make the best-recall adapter the run's adapter when it beats the final one; what the final
    event says about it."""
    if probing.best is None:
        return {}
    recall, step = probing.best
    kept = probing.config.probe_best_adapter and step != final_step and probing.best_adapter.is_dir()
    if kept:
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy2(probing.best_adapter / name, run.adapter / name)
    shutil.rmtree(probing.best_adapter, ignore_errors=True)
    return {
        "probe_recall": recall,
        "adapter_step": step if kept else final_step,
        "early_stopped": probing.early_stopped,
        "probe_cost_s": round(probing.cost_s, 1),
    }


# ------------------------------------------------------------------------------------- training
def training_arguments(config: TrainConfig, run: RunFolder, device: str, has_eval: bool):
    from transformers import TrainingArguments

    # cpu_bf16: Trainer's bf16 autocast over the bf16 base weights (core.models.cpu_bf16_applies)
    bf16 = (device == "cuda" and torch.cuda.is_bf16_supported()) or cpu_bf16_applies(
        device, config.cpu_bf16, config.quantization_bit
    )
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
        # Several processes (DDP): every LoRA weight takes part in every forward, so DDP need not
        # search the graph for unused ones (that search also breaks with gradient checkpointing).
        ddp_find_unused_parameters=False,
        logging_nan_inf_filter=False,  # a non-finite loss is logged as such (null), not hidden
        disable_tqdm=True,  # the events callback draws its own bar with the loss in it
        remove_unused_columns=False,
        prediction_loss_only=True,  # eval needs eval_loss only: no [tokens, vocab] logits gathered
        dataloader_num_workers=0,
        # Real tokens, for tokens_per_s: packed rows hold no padding (and no attention_mask to count).
        include_num_input_tokens_seen="all" if config.packing else "non_padding",
    )


class ProbeCallback(TrainerCallback):
    """Scores the fact probes: the base model before training, the adapter every probe_steps and at
    the end. Keeps the best-recall adapter (probe_best_adapter) and stops when recall has not risen
    for probe_patience scorings. Each scoring is a `probe` event (recall, per-probe hits)."""

    def __init__(self, run: RunFolder, config: TrainConfig, probes: list[Probe], tokenizer):
        self.run, self.config, self.probes, self.tokenizer = run, config, probes, tokenizer
        self.encoder = ChatEncoder(tokenizer, config.system_prompt)  # what chat and the CLI probe use
        self.best: tuple[float, int] | None = None  # (recall, step) of the best adapter so far
        self.since_best = 0  # scorings without a new best
        self.scored_step: int | None = None
        self.early_stopped = False
        self.base_scored = False
        self.cost_s = 0.0

    @property
    def best_adapter(self) -> Path:
        return self.run.path / "best_adapter"

    def _score(self, model, step: int, base: bool = False) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        try:
            if base:
                with model.disable_adapter():
                    report = score_probes(model, self.tokenizer, self.encoder, self.probes)
            else:
                report = score_probes(model, self.tokenizer, self.encoder, self.probes)
        finally:
            model.train(was_training)
        self.cost_s += report.elapsed_s
        log.info(
            "probes at step %d (%s): recall %.3f in %.1f s",
            step,
            "base" if base else "tuned",
            report.recall,
            report.elapsed_s,
        )
        # the answers travel with the event, cut short, so the page can list the misses as they come
        return self.run.append_event(
            "probe",
            step=step,
            model="base" if base else "tuned",
            **report.to_event(),
            answers=[answer[:ANSWER_CHARS] for answer in report.answers],
        )

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0 and not self.base_scored:  # (a rollback to the start comes here again)
            self._score(model, 0, base=True)
            self.base_scored = True

    def _tuned(self, model, state, control) -> None:
        event = self._score(model, state.global_step)
        self.scored_step = state.global_step
        improved = self.best is None or event["recall"] > self.best[0]
        self.since_best = 0 if improved else self.since_best + 1
        if self.best is None or event["recall"] >= self.best[0]:  # a tie: the later adapter, trained longer
            self.best = (event["recall"], state.global_step)
            if self.config.probe_best_adapter:
                if distributed.is_main():
                    model.save_pretrained(self.best_adapter)
        if self.config.probe_patience and self.since_best >= self.config.probe_patience:
            self.early_stopped = control.should_training_stop = True
            self.run.append_event(
                "warning",
                message=f"early stop at step {state.global_step}: probe recall "
                f"has not risen for {self.since_best} scorings (best "
                f"{self.best[0]:.1%} at step {self.best[1]})",
            )

    def on_step_end(self, args, state, control, model=None, **kwargs):
        steps = self.config.probe_steps
        if steps and state.global_step % steps == 0 and state.global_step < state.max_steps:
            self._tuned(model, state, control)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.scored_step != state.global_step:
            self._tuned(model, state, control)


class EventsCallback(TrainerCallback):
    """Turns Trainer callbacks into events.jsonl lines, and STOP / SIGTERM into a clean stop."""

    def __init__(
        self,
        run: RunFolder,
        config: TrainConfig,
        stats: dict,
        show_progress: bool,
        stop_signals: StopSignals | None = None,
    ):
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
        self.run.append_event(
            "start",
            total_steps=state.max_steps,
            resumed_from_step=state.global_step,
            num_train_epochs=self.config.num_train_epochs,
            effective_batch_size=self.config.effective_batch_size,
            num_processes=self.config.num_processes,
            distributed=distributed.strategy(self.config),
            **self.stats,
        )
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
        # Every rank stops at the step where the first of them saw a reason (one all-reduce a step).
        agreed = distributed.agreed_stop_code(STOP_REASONS.index(self.stop_reason) + 1 if self.stop_reason else 0)
        if agreed and self.stop_reason is None:
            self.stop_reason = STOP_REASONS[agreed - 1]
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
            self.run.append_event(
                "eval", step=state.global_step, epoch=round(state.epoch or 0, 4), eval_loss=round(logs["eval_loss"], 5)
            )
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
        event = {
            "step": state.global_step,
            "epoch": round(state.epoch or 0, 4),
            "loss": round(logs["loss"], 5),
            "lr": lr,
            "grad_norm": round(float(logs.get("grad_norm", 0.0)), 5),
            "tokens_per_s": round(tokens / max(now - self.last_time, 1e-9), 1),
            "elapsed_s": round(now - self.started, 2),
            "total_steps": state.max_steps,
        }
        self.last_time, self.last_tokens = now, state.num_input_tokens_seen
        self.run.append_event("step", **event)
        log.info(
            "step %d/%d loss %.4f lr %.3g tokens/s %.0f",
            state.global_step,
            state.max_steps,
            logs["loss"],
            lr,
            event["tokens_per_s"],
        )
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


def run_training(
    config: TrainConfig,
    show_progress: bool = False,
    print_advice: bool = False,
    callbacks: tuple = (),
    stop_signals: StopSignals | None = None,
) -> dict[str, Any]:
    """Train and return the final event (done or stopped). Errors are raised to the caller.

    `callbacks`: extra TrainerCallbacks (bench.throughput meters a run with one). `stop_signals`:
    handlers the caller installed already (the CLI does, before torch is imported)."""
    if stop_signals is not None:
        return _run_training(config, show_progress, print_advice, stop_signals, callbacks)
    with StopSignals() as own_signals:
        return _run_training(config, show_progress, print_advice, own_signals, callbacks)


class EngineTrainer(TrainedTokensTrainer):
    """The Trainer the engine runs: the trained-tokens loss when switched on (core.packing), the
    model's own loss otherwise, and every micro-batch's loss handed to the health guard."""

    def __init__(self, *args, guard: HealthGuard, trained_tokens_loss: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.guard, self.trained_tokens_loss = guard, trained_tokens_loss
        self._flos_per_token: float | None = None
        # Trainer walks the whole model every step to clip gradients, zero them and count FLOPs: on
        # a peft model that is ~2,500 modules a walk (bench/README.md). Alone (no wrapper that
        # replaces the parameters) the trainable ones are listed once and the walks go over them.
        self.alone = self.accelerator.distributed_type == DistributedType.NO
        self._mode: bool | None = None  # the mode _set_mode last put the model in
        if self.alone:
            self.model.zero_grad = self._zero_trainable_grads
            self.model.train = self._set_mode  # model.eval() calls it too

    def _set_mode(self, mode: bool = True):
        # Trainer calls model.train() every step: a walk over every module, for a model that is in
        # training mode already but after an evaluation or a probe (which call model.eval() or
        # model.train(False), so come through here as well).
        if mode != self._mode:
            type(self.model).train(self.model, mode)
            self._mode = mode
        return self.model

    def _zero_trainable_grads(self, set_to_none: bool = True) -> None:
        for param in trainable_parameters(self.model):
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

    def _clip_grad_norm(self, model):
        if not self.alone:
            return super()._clip_grad_norm(model)
        return self.accelerator.clip_grad_norm_(trainable_parameters(self.model), self.args.max_grad_norm)

    def floating_point_ops(self, inputs) -> float:
        # 6 x tokens x parameters (transformers' estimate): the parameter count is fixed, the model
        # counts it anew each step
        tokens = inputs["input_ids"].numel() if "input_ids" in inputs else 0
        if self._flos_per_token is None and tokens:
            self._flos_per_token = super().floating_point_ops(inputs) / tokens
        return (self._flos_per_token or 0.0) * tokens

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.trained_tokens_loss:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # The mean over the ranks (a no-op alone): every rank's guard judges the same loss, so all
        # skip or keep the same steps (their gradients are already the same, all-reduced).
        self.guard.record(self.accelerator.reduce(loss, reduction="mean"))
        return loss


def _train_with_recovery(
    config: TrainConfig,
    run: RunFolder,
    model,
    tokenizer,
    data: PreparedData,
    device: str,
    resume_from: Path | None,
    callbacks: list,
    guard: HealthGuard,
):
    """trainer.train(), again after a divergence (from the last healthy checkpoint, lr lowered) or
    an out-of-memory error (per-device batch halved, accumulation doubled: the same effective batch,
    from the last checkpoint). Returns the last trainer and its result."""
    from transformers import PrinterCallback

    lr_scale, rollbacks = 1.0, 0
    while True:
        trainer = EngineTrainer(
            model=model,
            guard=guard,
            trained_tokens_loss=config.trained_tokens_loss,
            args=training_arguments(config, run, device, has_eval=bool(data.eval)),
            train_dataset=as_features(data.train),
            eval_dataset=as_features(data.eval) if data.eval else None,
            data_collator=PackingCollator() if config.packing else padding_collator(tokenizer),
            optimizers=(build_optimizer(model, config), None),
            callbacks=callbacks,
        )
        trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; the events callback reports
        guard.start_attempt(lr_scale)
        try:
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is retried; anything else re-raised
            # Several ranks cannot retry: the others are waiting in a collective for this one.
            if not is_out_of_memory(err) or config.per_device_train_batch_size == 1 or distributed.world_size() > 1:
                raise
            config = dataclasses.replace(
                config,
                per_device_train_batch_size=config.per_device_train_batch_size // 2,
                gradient_accumulation_steps=config.gradient_accumulation_steps * 2,
            )
            resume_from = _restart_point(model, run.latest_checkpoint())
            run.append_event(
                "warning",
                message=(
                    f"out of memory at step {trainer.state.global_step + 1}: per_device_train_batch_size "
                    f"{config.per_device_train_batch_size}, gradient_accumulation_steps "
                    f"{config.gradient_accumulation_steps} (the same effective batch), continuing from "
                    f"{resume_from.name if resume_from else 'the start'}"
                ),
            )
            _free_memory(device)
            continue
        if guard.diverged_at is None:
            return trainer, result
        if rollbacks == MAX_ROLLBACKS:
            raise UserInputError(
                f"diverged at step {guard.diverged_at}: lower learning_rate (tried "
                f"{config.learning_rate:g} and {rollbacks} rollback(s) down to "
                f"{config.learning_rate * lr_scale:g})"
            )
        rollbacks += 1
        lr_scale *= ROLLBACK_LR_FACTOR
        resume_from = _restart_point(model, guard.good_checkpoint())
        run.append_event(
            "warning",
            message=(
                f"diverged at step {guard.diverged_at}: back to "
                f"{resume_from.name if resume_from else 'the start'} with learning_rate "
                f"{config.learning_rate * lr_scale:g} (rollback {rollbacks} of {MAX_ROLLBACKS})"
            ),
        )


def _restart_point(model, checkpoint: Path | None) -> Path | None:
    """Where the next attempt starts: a checkpoint (Trainer loads its weights), else the beginning
    with the LoRA weights reset."""
    if checkpoint is None:
        reset_lora(model)
    return checkpoint


def _free_memory(device: str) -> None:
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _run_training(
    config: TrainConfig, show_progress: bool, print_advice: bool, stop_signals: StopSignals, callbacks: tuple = ()
) -> dict[str, Any]:
    run = distributed.run_folder_for_rank(config.output_dir)  # written by rank 0 only
    device = best_device()
    distributed.start_process_group(device)
    resume_from = run.latest_checkpoint() if config.resume else None
    if config.resume and resume_from is None:
        run.append_event(
            "warning", message=f"resume: true but no complete checkpoint in {run.checkpoints}; starting from scratch"
        )
    model, tokenizer = build_model(config, device)
    template_note = check_template(config.template, tokenizer)  # a LLaMA-Factory `template` that disagrees stops here
    if template_note and print_advice:
        print(template_note, file=sys.stderr)
    dataset = load_run_dataset(config)
    conversations, probes = probes_for_run(config.probes, dataset.conversations, config.seed)
    if probes:
        if distributed.is_main():
            save_probes(probes, run.path / RUN_PROBES_FILE)  # `python -m core.probes RUN` scores with these
    if config.augment != "none":
        # made once (by rank 0, which writes augmented.jsonl): every rank trains on the same phrasings
        conversations = distributed.from_main(lambda: augment_for_run(config, run, conversations, probes))
    data = prepare_data(config, tokenizer, dataclasses.replace(dataset, conversations=conversations))
    stats = {
        **data.stats,
        "device": device,
        "quantization_bit": config.quantization_bit,
        "template": template_note,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    log.info("data: %s", stats)
    if data.stats["truncated"] or data.stats["dropped"]:
        message = (
            f"{data.stats['truncated']} example(s) truncated at cutoff_len={config.cutoff_len}; "
            f"{data.stats['dropped']} dropped (no trained token left)"
        )
        run.append_event("warning", message=message)
        log.warning(message)

    # The advisor's notes go into the start event (the web UI shows them) and, from the CLI, to stderr.
    notes = advise(config, len(data.train), template_injects_system(ChatEncoder(tokenizer)))
    stats["advice"] = [str(note) for note in notes]
    for note in notes:
        log.info("advisor: %s", note)
        if print_advice:
            print(note, file=sys.stderr)
    # The trainer gets the resolved plan; config.yaml keeps what the user wrote ("auto", the lr at its
    # reference batch), and the start event records both.
    plan = training_plan(config, len(data.train))
    stats["plan"] = plan
    stats["probes"] = len(probes)
    config = dataclasses.replace(
        config, num_train_epochs=plan["num_train_epochs"], learning_rate=plan["learning_rate"], lr_reference_batch=0
    )

    # Each optimisation has its switch, and the start event records what was applied, so a
    # regression can be narrowed to one of them by turning it off.
    allocator = active_allocator()
    stats["optimisations"] = {
        # per-example causal sdpa on packed rows (core.packing)
        "packed_attention": bool(config.packing and use_packed_attention(model)),
        # the loss projects onto the vocabulary only the positions that predict a trained token
        "trained_tokens_loss": config.trained_tokens_loss,
        # CPU: LoRA dropout kept as a bool mask inside lora_A (core.lora_dropout); the count of layers
        "fused_lora_dropout_layers": fuse_lora_dropout(model) if config.fused_lora_dropout else 0,
        # q/k/v and gate/up: one lora_A product and dropout draw a group (core.shared_lora_input)
        "shared_lora_input_layers": share_lora_input(model) if config.shared_lora_input else 0,
        # the LoRA update added to the base output in one addmm (core.lora_addmm)
        "lora_addmm_layers": add_lora_with_addmm(model) if config.lora_addmm else 0,
        # the MLP's silu(gate) * up keeps gate and up only (core.fused_mlp); the count of MLPs
        "fused_swiglu_layers": fuse_swiglu(model) if config.fused_swiglu else 0,
        # AdamW as one fused kernel call a step (build_optimizer)
        "fused_adamw": fused_adamw_applies(model, config),
        # the C allocator this process runs with: mimalloc where core.train restarted with it (core.cpu_allocator)
        "cpu_allocator": allocator,
        # CPU, glibc: the heap's free pages returned after a decoder layer while the peak RSS grows (core.freed_memory)
        "release_freed_memory_layers": (
            trim_heap_after_layers(model)
            if config.release_freed_memory and device == "cpu" and allocator == SYSTEM
            else 0
        ),
        # CPU with AMX / AVX512-BF16: bf16 base weights and autocast; float32 LoRA weights (core.models)
        # and, hooked here, a float32 residual stream (core.lora_addmm)
        "cpu_bf16": cpu_bf16_applies(device, config.cpu_bf16, config.quantization_bit)
        and float32_residual_stream(model),
    }
    events = EventsCallback(run, config, stats, show_progress, stop_signals)
    probing = [ProbeCallback(run, config, probes, tokenizer)] if probes else []
    guard = HealthGuard(run)
    trainer, result = _train_with_recovery(
        config, run, model, tokenizer, data, device, resume_from, [events, guard, *probing, *callbacks], guard
    )
    if not weights_are_finite(model):  # never saved as the adapter; the guard should have caught it
        raise UserInputError(
            f"training produced non-finite weights by step {trainer.state.global_step}: "
            f"lower learning_rate (was {config.learning_rate:g})"
        )

    # Gathered on every rank (FSDP and ZeRO-3 hold shards; otherwise the model's own state dict),
    # written by rank 0.
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if distributed.is_main():
        model.save_pretrained(run.adapter, state_dict=state_dict)
        save_tokenizer_with_system_prompt(tokenizer, config.system_prompt, run.adapter)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    final = {
        "step": trainer.state.global_step,
        "total_steps": trainer.state.max_steps,
        "final_loss": losses[-1] if losses else None,
        "final_eval_loss": evals[-1] if evals else None,
        "train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 2),
        "tokens_per_s": round(
            (trainer.state.num_input_tokens_seen - events.first_tokens) / max(time.monotonic() - events.started, 1e-9),
            1,
        ),
        "adapter": str(run.adapter),
    }
    if probing and distributed.is_main():
        final.update(keep_best_adapter(probing[0], run, trainer.state.global_step))
    if events.stop_reason:
        return run.append_event("stopped", reason=events.stop_reason, **final)
    return run.append_event("done", **final)
