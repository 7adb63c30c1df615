"""LoRA dropout fused into lora_A on the CPU: one bool mask kept for backward instead of two float copies.

peft computes `lora_B(lora_A(dropout(x)))`. On the CPU, torch's dropout multiplies x by a float32
mask drawn with bernoulli_ and keeps that mask for backward, and lora_A then keeps the dropped
copy of x: two float tensors the size of x per LoRA layer. For q/k/v (and gate/up), which read the
same x, that is six: most of what a token keeps per decoder layer, and a sizeable share of a
step's CPU time in bernoulli_ (figures in bench/README.md).

DroppedInputLinear computes the same function, `linear(x * keep / (1 - p), A)` with keep drawn with
probability 1 - p, and keeps the one-byte keep mask. For an x of more than DROPPED_COPY_MAX_ELEMENTS
it keeps x itself (which the layer's other LoRA branches share), or for an x marked with
mark_recomputable what x is rebuilt from (an RMSNorm's input, the SwiGLU's gate and up), and
rebuilds the dropped input in backward. A smaller x is cheap to hold, so its dropped copy is kept
instead: x can go, and backward rebuilds nothing (bench/README.md). fuse_lora_dropout installs it
on CPU models only; without autograd (or moved off the CPU) it runs torch's dropout, then linear.
"""

from __future__ import annotations

import threading
import types

import numpy as np
import torch

# An attribute on an input x saying x == fn(*inputs), from tensors that autograd keeps anyway (see
# mark_recomputable): the fused layer then keeps those and recomputes x in backward.
RECOMPUTE_ATTRIBUTE = "lora_tailor_recompute"
# Inputs up to this many elements (1 MiB in float32: 455 positions of the default model's hidden
# states, 170 of its MLP's) keep their dropped copy for backward; larger ones keep the mask only and
# are rebuilt (see the module docstring). Above it the copies would raise the peak memory of long rows.
DROPPED_COPY_MAX_ELEMENTS = 2**18


def mark_recomputable(tensor: torch.Tensor, fn, *inputs: torch.Tensor) -> torch.Tensor:
    """Mark `tensor` as fn(*inputs) for the fused LoRA dropout of the layer that reads it; returns it."""
    setattr(tensor, RECOMPUTE_ATTRIBUTE, (fn, inputs))
    return tensor


class _MaskBits(threading.local):
    """Each thread's PCG64 and seed tensor for keep_mask (per thread: seeding and drawing are two steps)."""

    def __init__(self):
        self.generator = np.random.PCG64(0)
        self.state = self.generator.state
        self.inc = self.state["state"]["inc"]  # odd, as PCG64's stream increment must be
        self.seed = torch.zeros((), dtype=torch.int64)

    def draw(self, count: int) -> np.ndarray:
        """`count` random uint64, from a 128-bit PCG64 state set to a seed drawn from torch's generator.
        Setting the state of one generator, not building one from the seed (SeedSequence's hashing):
        building one cost more than a layer's draw (bench/README.md)."""
        self.generator.state = {**self.state, "state": {"state": self.seed.random_().item(), "inc": self.inc}}
        return self.generator.random_raw(count)


_MASK_BITS = _MaskBits()


def keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """bool, x's shape on the CPU: each input kept with probability 1 - p, p rounded to a multiple of
    2**-16 (the fused layer's draw, and the tests').

    16 random bits an input, from numpy's PCG64: in a training step the draw is bound by the memory
    it writes, and torch.rand_like writes a float32 an input (bench/README.md). The seed is drawn
    from torch's generator, so torch.manual_seed (Trainer's seed) and the RNG state Trainer saves
    with a checkpoint decide the masks as they decide torch's own dropout.
    """
    bits = _MASK_BITS.draw((x.numel() + 3) // 4).view(np.uint16)[: x.numel()]
    return torch.from_numpy(bits >= round(p * 2**16)).view(x.shape)


def _dropped(x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
    dropped = x.where(keep, 0.0)
    return dropped if scale == 1.0 else dropped.mul_(scale)


class _DroppedInputLinearFn(torch.autograd.Function):
    """y = (x * keep * scale) @ weight.T; saves keep (bool), weight and either the dropped copy (x of
    up to DROPPED_COPY_MAX_ELEMENTS) or x (or what x is recomputed from).

    The dropped input is where(keep, x, 0): no float copy of the mask (scaling: see forward).
    Under CPU autocast (cpu_bf16) the product runs in the autocast dtype, as F.linear would, and so
    does backward (which runs outside the autocast context); each gradient returns in its input's dtype.
    Without casts (the engine's LoRA layers run the product in float32) no cast is called at all:
    each was a call of its own, ~8 a product.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, p: float) -> torch.Tensor:
        keep = keep_mask(x, p)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        ctx.dtype, ctx.x_dtype, ctx.casts = dtype, x.dtype, not x.dtype == weight.dtype == dtype
        # 1 / (1 - p) on the rank-sized product (one pass less over x); under autocast on x itself, so
        # that x * mask / (1 - p) is rounded once to the autocast dtype, as peft rounds it
        scale = 1.0 / (1.0 - p)
        ctx.input_scale, ctx.output_scale = (1.0, scale) if dtype == x.dtype else (scale, 1.0)
        with torch.autocast("cpu", enabled=False):
            dropped = _dropped(x, keep, ctx.input_scale)
            dropped = dropped.to(dtype) if ctx.casts else dropped
            ctx.kept_copy = x.numel() <= DROPPED_COPY_MAX_ELEMENTS
            if ctx.kept_copy:
                ctx.save_for_backward(keep, weight, dropped)
            else:  # the dropped copy is freed after the product
                ctx.recompute, inputs = getattr(x, RECOMPUTE_ATTRIBUTE, (None, (x,)))
                ctx.save_for_backward(keep, weight, *inputs)
            out = torch.nn.functional.linear(dropped, weight.to(dtype) if ctx.casts else weight)
            return out if ctx.output_scale == 1.0 else out.mul_(ctx.output_scale)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        keep, weight, *inputs = ctx.saved_tensors
        grad_out = (grad_out.to(ctx.dtype) if ctx.casts else grad_out) * ctx.output_scale  # rank-sized
        product_weight = weight.to(ctx.dtype) if ctx.casts else weight
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_out @ product_weight).mul_(keep)  # a new tensor: masked in place
            if ctx.input_scale != 1.0:
                grad_x.mul_(ctx.input_scale)
            if ctx.casts:
                grad_x = grad_x.to(ctx.x_dtype)
        if ctx.needs_input_grad[1]:
            if ctx.kept_copy:
                (dropped,) = inputs
            else:
                x = ctx.recompute(*inputs) if ctx.recompute else inputs[0]
                dropped = _dropped(x, keep, ctx.input_scale)
                dropped = dropped.to(ctx.dtype) if ctx.casts else dropped
            grad_weight = grad_out.reshape(-1, grad_out.shape[-1]).T @ dropped.reshape(-1, dropped.shape[-1])
            if ctx.casts:
                grad_weight = grad_weight.to(weight.dtype)
        return grad_x, grad_weight, None


def dropped_linear(x: torch.Tensor, weight: torch.Tensor, p: float, training: bool, fused: bool = True) -> torch.Tensor:
    """linear(dropout(x, p), weight): with `fused`, on the CPU and with autograd on, as _DroppedInputLinearFn
    (x and a bool mask kept); otherwise (nothing to keep for backward, or not on the CPU) torch's
    dropout, then linear, as peft does."""
    if fused and training and p > 0 and x.is_cpu and torch.is_grad_enabled():
        return _DroppedInputLinearFn.apply(x, weight, p)
    return torch.nn.functional.linear(torch.nn.functional.dropout(x, p, training), weight)


class DroppedInputLinear(torch.nn.Linear):
    """A LoRA A matrix (no bias) that applies dropout to its input itself (see the module docstring)."""

    def __init__(self, weight: torch.nn.Parameter, p: float):
        super().__init__(weight.shape[1], weight.shape[0], bias=False, device="meta")
        self.weight = weight  # the same Parameter: state-dict keys, optimizer and checkpoints unchanged
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropped_linear(x, self.weight, self.p, self.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input dropout p={self.p}"


def _recomputable_norm_forward(self, hidden: torch.Tensor) -> torch.Tensor:
    norm = type(self).forward
    return mark_recomputable(norm(self, hidden), lambda kept: norm(self, kept), hidden)


def fuse_lora_dropout(model) -> int:
    """In every plain-LoRA linear layer whose dropout has p > 0 and whose weights are on the CPU, move
    the dropout into lora_A (DroppedInputLinear) and make peft's dropout step an identity; and mark
    every RMSNorm's output (what q/k/v and gate/up read) as recomputable from its input, which
    the norm's own backward keeps anyway. Returns the number of layers changed.
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
    if fused:
        for module in model.modules():
            if type(module).__name__.endswith("RMSNorm") and "forward" not in vars(module):
                module.forward = types.MethodType(_recomputable_norm_forward, module)
    return fused
