"""LoRA dropout fused into lora_A on the CPU: one bool mask kept for backward instead of two float copies.

peft computes `lora_B(lora_A(dropout(x)))`. On the CPU, torch's dropout multiplies x by a float32
mask drawn with bernoulli_ and keeps that mask for backward, and lora_A then keeps the dropped
copy of x: two float tensors the size of x per LoRA layer. For q/k/v (and gate/up), which read the
same x, that is six: most of what a token keeps per decoder layer, and a sizeable share of a
step's CPU time in bernoulli_ (figures in bench/README.md).

DroppedInputLinear computes the same function, `linear(x * keep / (1 - p), A)` with keep drawn with
probability 1 - p, but keeps x itself (which the layer's other LoRA branches share) and the
one-byte keep mask, and rebuilds the dropped input in backward. fuse_lora_dropout installs it
on CPU models only; without autograd (or moved off the CPU) it runs torch's dropout, then linear.
"""

from __future__ import annotations

import torch


def keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """bool, x's shape: each input kept with probability 1 - p (the fused layer's draw, and the tests')."""
    return torch.rand_like(x) >= p


class _DroppedInputLinearFn(torch.autograd.Function):
    """y = (x * keep * scale) @ weight.T; saves x, keep (bool) and weight, not the dropped copy.

    Under CPU autocast (cpu_bf16) the product runs in the autocast dtype, as F.linear would, and so
    does backward (which runs outside the autocast context); each gradient returns in its input's dtype.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
        keep = keep_mask(x, p)
        scale = 1.0 / (1.0 - p)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        ctx.save_for_backward(x, keep, weight)
        ctx.scale, ctx.dtype = scale, dtype
        with torch.autocast("cpu", enabled=False):  # the dropped copy is freed after the product
            return torch.nn.functional.linear((x * keep * scale).to(dtype), weight.to(dtype))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, keep, weight = ctx.saved_tensors
        grad_out = grad_out.to(ctx.dtype)
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_out @ weight.to(ctx.dtype)).mul_(keep).mul_(ctx.scale).to(x.dtype)
        if ctx.needs_input_grad[1]:
            dropped = (x * keep).mul_(ctx.scale).to(ctx.dtype)
            grad_weight = (grad_out.reshape(-1, grad_out.shape[-1]).T @ dropped.reshape(-1, x.shape[-1])).to(
                weight.dtype
            )
        return grad_x, grad_weight, None


class DroppedInputLinear(torch.nn.Linear):
    """A LoRA A matrix (no bias) that applies dropout to its input itself (see the module docstring)."""

    def __init__(self, weight: torch.nn.Parameter, p: float):
        super().__init__(weight.shape[1], weight.shape[0], bias=False, device="meta")
        self.weight = weight  # the same Parameter: state-dict keys, optimizer and checkpoints unchanged
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.p > 0 and x.is_cpu and torch.is_grad_enabled():
            return _DroppedInputLinearFn.apply(x, self.weight, self.p)
        # Nothing to keep for backward (or not on the CPU): peft's own dropout-then-linear.
        return torch.nn.functional.linear(torch.nn.functional.dropout(x, self.p, self.training), self.weight)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input dropout p={self.p}"


def fuse_lora_dropout(model) -> int:
    """In every plain-LoRA linear layer whose dropout has p > 0 and whose weights are on the CPU, move
    the dropout into lora_A (DroppedInputLinear) and make peft's dropout step an identity.
    Returns the number of layers changed.
    """
    fused = 0
    for module in model.modules():
        dropouts, lora_a = getattr(module, "lora_dropout", None), getattr(module, "lora_A", None)
        if not isinstance(dropouts, torch.nn.ModuleDict) or not isinstance(lora_a, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            a = lora_a[name] if name in lora_a else None
            plain = (
                type(dropout) is torch.nn.Dropout
                and dropout.p > 0
                and type(a) is torch.nn.Linear
                and a.bias is None
                and a.weight.is_cpu
                and name not in getattr(module, "lora_variant", {})
            )
            if plain:
                lora_a[name] = DroppedInputLinear(a.weight, dropout.p)
                dropouts[name] = torch.nn.Identity()
                fused += 1
    return fused
