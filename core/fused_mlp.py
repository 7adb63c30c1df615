"""The SwiGLU MLP's product silu(gate) * up as one autograd step that keeps only its two inputs.

LlamaMLP computes down(silu(gate(x)) * up(x)); autograd keeps gate(x) for silu's backward and both
silu(gate(x)) and up(x) for the product's: three [tokens, intermediate] tensors a layer, the largest
share of what a long row keeps (bench/README.md). SwiGLU keeps gate(x) and up(x) and recomputes
silu(gate(x)) in backward (an elementwise pass), with the same value and gradients.
"""

from __future__ import annotations

import types

import torch

from core.lora_dropout import mark_recomputable

# MLP classes whose forward is exactly down_proj(act_fn(gate_proj(x)) * up_proj(x)).
SWIGLU_MLP_CLASSES = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP", "Olmo2MLP", "SmolLM3MLP"})


def swiglu_value(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.silu(gate).mul_(up)


class SwiGLU(torch.autograd.Function):
    """silu(gate) * up for gate, up of one shape; saves gate and up only."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return swiglu_value(gate, up)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gate, up = ctx.saved_tensors
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate) if ctx.needs_input_grad[0] else None
        grad_up = torch.nn.functional.silu(gate).mul_(grad) if ctx.needs_input_grad[1] else None
        return grad_gate, grad_up


def _swiglu_forward(self, x: torch.Tensor) -> torch.Tensor:
    gate, up = self.gate_proj(x), self.up_proj(x)
    # down_proj's fused LoRA dropout keeps gate and up (kept here anyway) instead of the product
    return self.down_proj(mark_recomputable(SwiGLU.apply(gate, up), swiglu_value, gate, up))


def fuse_swiglu(model) -> int:
    """Give every SwiGLU MLP (SWIGLU_MLP_CLASSES whose config's hidden_act is silu) the fused product;
    returns how many were changed."""
    fused = 0
    for module in model.modules():
        if type(module).__name__ in SWIGLU_MLP_CLASSES and getattr(module.config, "hidden_act", None) == "silu":
            module.forward = types.MethodType(_swiglu_forward, module)
            fused += 1
    return fused
