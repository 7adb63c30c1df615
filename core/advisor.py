"""Hyperparameter advice: rules practitioners use, each a short note with its reason.

Shown live on the train tab and printed by the CLI before training. The thresholds are module
constants so the tests can check each rule exactly at its edge.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.config import TrainConfig

MIN_TOTAL_STEPS = 50  # fewer optimizer steps than this rarely move a LoRA adapter reliably
MAX_EPOCHS = 10
MAX_WARMUP_RATIO = 0.1
SMALL_DATASET = 1000  # examples
SMALL_DATA_MAX_BATCH = 16  # effective batch above this on small data leaves too few steps
SMALL_DATA_LR = (5e-5, 2e-4)  # the usual LoRA range on small data
HIGH_LR = 1e-3
LORAPLUS_RATIO = (8, 16)
HEALTHY_LOSS = (0.7, 1.4)  # the usual end-of-SFT band
MEMORISED_LOSS = 0.3
FLAT_LOSS_CHANGE = 0.05  # relative change between the first and last quarter of steps
MIN_STEPS_FOR_TREND = 8
OVERFIT_RISE = 0.05  # eval loss this far (relative) above its best while train loss falls


@dataclass(frozen=True)
class Note:
    level: str  # "info" | "warn"
    rule: str
    message: str

    def __str__(self) -> str:
        return f"[{self.level}] {self.message}"


# ------------------------------------------------------------------------------ before training
def training_plan(config: TrainConfig, num_examples: int) -> dict[str, int]:
    """Optimizer steps as transformers' Trainer counts them (one device)."""
    batches_per_epoch = math.ceil(num_examples / config.per_device_train_batch_size)
    steps_per_epoch = max(math.ceil(batches_per_epoch / config.gradient_accumulation_steps), 1)
    total = config.max_steps if config.max_steps > 0 else math.ceil(config.num_train_epochs * steps_per_epoch)
    return {"effective_batch_size": config.effective_batch_size, "steps_per_epoch": steps_per_epoch,
            "total_steps": total}


def lr_scaling(reference_lr: float, reference_batch: int, batch: int) -> dict[str, float]:
    """Learning rate for `batch` from a (reference_lr, reference_batch) that worked.

    linear: lr grows with the batch (Goyal et al.); sqrt: with its square root, the better-founded
    rule for Adam-family optimizers. Same batch -> same lr under both.
    """
    return {"linear": reference_lr * batch / reference_batch,
            "sqrt": reference_lr * math.sqrt(batch / reference_batch)}


def advise(config: TrainConfig, num_examples: int | None = None,
           template_injects_system: bool | None = None,
           reference: tuple[float, int] | None = None) -> list[Note]:
    """Notes on a config before training; `reference` is an (lr, effective batch) known to work."""
    notes: list[Note] = []
    batch = config.effective_batch_size
    notes.append(Note("info", "effective_batch",
                      f"Effective batch = {config.per_device_train_batch_size} per device x "
                      f"{config.gradient_accumulation_steps} accumulation = {batch} examples per step."))
    if num_examples:
        plan = training_plan(config, num_examples)
        notes.append(Note("info", "steps", f"{num_examples} examples -> {plan['steps_per_epoch']} steps per "
                                           f"epoch, {plan['total_steps']} steps in total."))
        if plan["total_steps"] < MIN_TOTAL_STEPS:
            notes.append(Note("warn", "few_steps",
                              f"Only {plan['total_steps']} optimizer steps (under {MIN_TOTAL_STEPS}): the "
                              f"adapter may barely move. Use a smaller batch or more epochs."))
        if num_examples < SMALL_DATASET and batch > SMALL_DATA_MAX_BATCH:
            notes.append(Note("warn", "batch_small_data",
                              f"Effective batch {batch} is large for {num_examples} examples: small data "
                              f"trains better with batches of 1-{SMALL_DATA_MAX_BATCH} and more steps."))
        if num_examples < SMALL_DATASET and not SMALL_DATA_LR[0] <= config.learning_rate <= SMALL_DATA_LR[1]:
            notes.append(Note("info", "lr_small_data",
                              f"learning_rate {config.learning_rate:g}: LoRA on small data usually uses "
                              f"{SMALL_DATA_LR[0]:g}-{SMALL_DATA_LR[1]:g}; tiny models (~100M) tolerate "
                              f"more. Watch the loss curve rather than the epoch count."))
    if config.learning_rate > HIGH_LR:
        notes.append(Note("warn", "lr_high", f"learning_rate {config.learning_rate:g} is above "
                                             f"{HIGH_LR:g}: expect loss spikes; lower it if the curve jumps."))
    if config.max_steps <= 0 and config.num_train_epochs > MAX_EPOCHS:
        notes.append(Note("warn", "epochs", f"{config.num_train_epochs:g} epochs (over {MAX_EPOCHS}) will "
                                            f"memorise the data: it forgets how to talk and parrots answers."))
    if config.warmup_ratio > MAX_WARMUP_RATIO and config.lr_scheduler_type != "constant_with_warmup":
        notes.append(Note("warn", "warmup", f"warmup_ratio {config.warmup_ratio:g} spends over "
                                            f"{MAX_WARMUP_RATIO:.0%} of steps warming up; a long warmup is a "
                                            f"recipe with constant_with_warmup, otherwise keep it under 10%."))
    if config.loraplus_lr_ratio > 0:
        notes.append(Note("info", "loraplus_lrs",
                          f"LoRA+: lora_A learns at {config.learning_rate:g}, lora_B at "
                          f"{config.learning_rate * config.loraplus_lr_ratio:g} "
                          f"(x{config.loraplus_lr_ratio:g})."))
        if not LORAPLUS_RATIO[0] <= config.loraplus_lr_ratio <= LORAPLUS_RATIO[1]:
            notes.append(Note("warn", "loraplus_ratio",
                              f"loraplus_lr_ratio {config.loraplus_lr_ratio:g}: people use "
                              f"{LORAPLUS_RATIO[0]}-{LORAPLUS_RATIO[1]}."))
        if config.learning_rate >= SMALL_DATA_LR[1]:
            notes.append(Note("info", "loraplus_halve_lr",
                              f"With LoRA+ on, consider halving learning_rate (to "
                              f"{config.learning_rate / 2:g}): lora_B already learns "
                              f"{config.loraplus_lr_ratio:g}x faster."))
    if reference is not None:
        ref_lr, ref_batch = reference
        if ref_batch == batch:
            notes.append(Note("info", "lr_scaling", f"Same effective batch as the reference ({batch}): keep "
                                                    f"its learning rate {ref_lr:g}."))
        else:
            scaled = lr_scaling(ref_lr, ref_batch, batch)
            notes.append(Note("info", "lr_scaling",
                              f"From {ref_lr:g} at batch {ref_batch} to batch {batch}: linear rule "
                              f"{scaled['linear']:.3g}, square-root rule {scaled['sqrt']:.3g} "
                              f"(better founded for Adam)."))
    if template_injects_system and not config.system_prompt.strip():
        notes.append(Note("warn", "template_system",
                          "The chat template injects its own default system prompt (e.g. 'You are SmolLM') "
                          "into conversations without one, which fights a persona. Set system_prompt: "
                          "training and chat then both use yours."))
    return notes


def template_injects_system(encoder) -> bool:
    """Does the template add a system turn to a conversation that has none? (SmolLM2 and Qwen do.)"""
    rendered = encoder.render([{"role": "user", "content": "\x00"}])
    return "system" in rendered.split("\x00")[0].lower()


# ------------------------------------------------------------------ during and after training
def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def loss_notes(events: list[dict[str, Any]]) -> list[Note]:
    """What the curve says so far: band, memorising, flat, overfitting."""
    losses = [e["loss"] for e in events if e.get("type") == "step" and e.get("loss") is not None]
    evals = [e["eval_loss"] for e in events if e.get("type") == "eval"]
    notes: list[Note] = []
    if len(losses) < MIN_STEPS_FOR_TREND:
        return notes
    quarter = max(len(losses) // 4, 2)
    first, last = _mean(losses[:quarter]), _mean(losses[-quarter:])
    if abs(first - last) / max(first, 1e-9) < FLAT_LOSS_CHANGE:
        notes.append(Note("warn", "flat_loss", f"The loss is not moving ({first:.3f} -> {last:.3f}): the "
                                               f"learning rate is probably too low."))
    elif last < MEMORISED_LOSS:
        notes.append(Note("warn", "memorising",
                          f"Train loss {last:.3f} is far below the usual {HEALTHY_LOSS[0]}-{HEALTHY_LOSS[1]} "
                          f"band: the model is memorising. Check held-out questions; add more varied "
                          f"phrasings rather than more epochs."))
    elif last < HEALTHY_LOSS[0]:
        notes.append(Note("info", "below_band", f"Train loss {last:.3f} is below the {HEALTHY_LOSS[0]}-"
                                                f"{HEALTHY_LOSS[1]} band: fine for narrow persona data, "
                                                f"but watch for memorising."))
    elif last <= HEALTHY_LOSS[1]:
        notes.append(Note("info", "healthy", f"Train loss {last:.3f} sits in the usual healthy band "
                                             f"{HEALTHY_LOSS[0]}-{HEALTHY_LOSS[1]}."))
    else:
        notes.append(Note("warn", "under_trained", f"Train loss {last:.3f} is above the "
                                                   f"{HEALTHY_LOSS[0]}-{HEALTHY_LOSS[1]} band: under-trained. "
                                                   f"More steps or a higher learning rate."))
    if len(evals) >= 2 and evals[-1] > min(evals) * (1 + OVERFIT_RISE) and last < first:
        notes.append(Note("warn", "overfitting", f"Eval loss rose to {evals[-1]:.3f} from its best "
                                                 f"{min(evals):.3f} while the train loss falls: overfitting. "
                                                 f"Use the earlier checkpoint, fewer epochs or more data."))
    return notes


def summary_card(events: list[dict[str, Any]]) -> str:
    """A short markdown card for the end of a run: what happened, what the curve says, what next."""
    final = next((e for e in reversed(events) if e.get("type") in ("done", "stopped", "error")), None)
    if final is None:
        return "Run in progress."
    if final["type"] == "error":
        return f"**Run failed:** {final.get('message', 'unknown error')}"
    lines = [f"**Run {final['type']}** at step {final.get('step')}/{final.get('total_steps')}: "
             f"final train loss {_fmt(final.get('final_loss'))}, eval loss {_fmt(final.get('final_eval_loss'))}, "
             f"{final.get('tokens_per_s', 0):.0f} tokens/s, {final.get('train_runtime_s', 0):.0f} s."]
    notes = loss_notes(events)
    lines += [f"- {note.message}" for note in notes]
    rules = {note.rule for note in notes}
    if "memorising" in rules or "overfitting" in rules:
        lines.append("- Next: fewer epochs or a lower learning rate, and more varied phrasings per fact.")
    elif "flat_loss" in rules or "under_trained" in rules:
        lines.append("- Next: raise the learning rate (x2) or train more steps.")
    else:
        lines.append("- Next: chat with it on questions that are not in the training file.")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
