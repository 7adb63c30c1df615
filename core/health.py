"""Training health: a bad step is skipped, repeated bad steps end the attempt for a rollback.

A step is bad when its loss or its gradient is not finite, or its loss spikes well above the recent
median (a learning rate that throws the weights off). Its gradients are dropped before the
optimizer runs (AdamW leaves a parameter without a gradient untouched), so a bad step changes no
weight and no optimizer moment. MAX_BAD_STEPS bad steps in a row stop the attempt: the engine then
goes back to the newest checkpoint taken while the loss was still healthy, with the learning rate
lowered (core.engine.run_training), at most MAX_ROLLBACKS times before it reports the divergence.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from pathlib import Path

import torch
from transformers import TrainerCallback

from core.events import RunFolder, checkpoint_step

MAX_BAD_STEPS = 3  # in a row; a single odd batch is skipped and forgotten
MAX_ROLLBACKS = 2
ROLLBACK_LR_FACTOR = 0.1  # each rollback trains on with a tenth of the learning rate
SPIKE_FACTOR = 4.0  # a loss this many times the recent median is a spike...
SPIKE_MIN_RISE = 1.0  # ...and at least this much above it: near-zero fact-memorising losses wobble
SPIKE_WINDOW = 16  # healthy step losses the median is taken over
SPIKE_MIN_HISTORY = 4  # no spike verdict before this many healthy steps
TRAINABLE_ATTRIBUTE = "lora_tailor_trainable"  # where trainable_parameters keeps its list


class HealthGuard(TrainerCallback):
    """Watches every optimizer step; the engine reads `diverged_at` after trainer.train()."""

    def __init__(self, run: RunFolder):
        self.run = run
        self.micro_losses: list[float] = []  # this optimizer step's micro-batch losses so far
        self.recent: deque[float] = deque(maxlen=SPIKE_WINDOW)
        self.last_healthy_step = 0  # the weights after this many steps were still healthy
        self.bad_in_row = 0
        self.skipped = 0
        self.diverged_at: int | None = None
        self.lr_scale = 1.0  # applied to the schedule once an attempt has loaded its state
        self._scaled = False

    def record(self, loss: torch.Tensor) -> None:
        self.micro_losses.append(float(loss))

    def start_attempt(self, lr_scale: float) -> None:
        self.lr_scale, self._scaled, self.diverged_at, self.bad_in_row = lr_scale, False, None, 0
        self.micro_losses, self.recent = [], deque(maxlen=SPIKE_WINDOW)

    def on_step_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        # The first step of an attempt: the checkpoint's optimizer and schedule are loaded by now.
        if self._scaled or self.lr_scale == 1.0:
            return
        self._scaled = True
        for group in optimizer.param_groups:
            group["lr"] *= self.lr_scale
        if lr_scheduler is not None and hasattr(lr_scheduler, "base_lrs"):
            lr_scheduler.base_lrs = [lr * self.lr_scale for lr in lr_scheduler.base_lrs]
            # what Trainer logs as this step's lr (torch keeps it from the previous schedule step)
            lr_scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _verdict(self, loss: float, grads: list[torch.Tensor]) -> str | None:
        if not math.isfinite(loss):
            return f"loss is {loss}"
        if grads and not torch.isfinite(torch.nn.utils.get_total_norm(grads)):
            return "gradient is not finite"
        if len(self.recent) >= SPIKE_MIN_HISTORY:
            median = statistics.median(self.recent)
            if loss > max(SPIKE_FACTOR * median, median + SPIKE_MIN_RISE):
                return f"loss {loss:.4g} spiked above the recent median {median:.4g}"
        return None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        loss, self.micro_losses = sum(self.micro_losses), []
        params = [p for p in trainable_parameters(model) if p.grad is not None]
        reason = self._verdict(loss, [p.grad for p in params])
        step = state.global_step + 1
        if reason is None:
            self.recent.append(loss)
            self.bad_in_row, self.last_healthy_step = 0, state.global_step
            return
        for param in params:
            param.grad = None  # the optimizer skips this step for every parameter
        self.bad_in_row += 1
        self.skipped += 1
        self.run.append_event("warning", message=f"step {step} skipped: {reason}")
        if self.bad_in_row >= MAX_BAD_STEPS:
            self.diverged_at = step
            control.should_training_stop = True

    def good_checkpoint(self) -> Path | None:
        """The newest complete checkpoint whose weights were still healthy, or None (start over)."""
        healthy = [p for p in self.run.complete_checkpoints() if checkpoint_step(p) <= self.last_healthy_step]
        return healthy[-1] if healthy else None


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    """The parameters that require a gradient, listed on the first call and kept on the model:
    walking a peft model's ~2,500 modules for them costs milliseconds, and training asks every
    step. The list would go stale if requires_grad changed or a wrapper replaced the parameters
    (FSDP), so the first call must come after that: the engine's Trainer asks at once only in a
    single process, the guard at the first optimizer step (Trainer has wrapped the model by then)."""
    listed = vars(model).get(TRAINABLE_ATTRIBUTE)
    if listed is None:
        listed = [p for p in model.parameters() if p.requires_grad]
        setattr(model, TRAINABLE_ATTRIBUTE, listed)
    return listed


def weights_are_finite(model) -> bool:
    return all(bool(torch.isfinite(p.detach()).all()) for p in trainable_parameters(model))


def reset_lora(model) -> None:
    """LoRA weights back to their initial values (lora_B zero, so the adapter is a no-op again)."""
    for module in model.modules():
        if hasattr(module, "reset_lora_parameters") and hasattr(module, "lora_A"):
            for name in list(module.lora_A):
                module.reset_lora_parameters(name, True)


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, (MemoryError, torch.OutOfMemoryError))
