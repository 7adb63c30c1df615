"""A LoRA layer's update added to the base output in one addmm.

peft computes `result + lora_B(lora_A(dropout(x))) * scaling`: the [tokens, out] product, a pass
that scales it and a pass that adds it, and in backward a pass that scales the gradient again.
`addmm(result, lora_A(...), B.T, alpha=scaling)` is the same sum in one pass; its backward scales
only the rank-sized gradients. Layers where peft does anything else (adapters disabled or merged,
DoRA and other variants, a LoRA bias, dtypes that peft would cast, extra arguments) keep peft's
own forward.
"""

from __future__ import annotations

import types

import torch
from peft.tuners.lora.layer import Linear as LoraLinear


def _addmm_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapters = [name for name in self.active_adapters if name in self.lora_A]
    plain = (
        not (args or kwargs or self.disable_adapters or self.merged)
        and not torch.is_autocast_enabled(x.device.type)
        and all(
            name not in self.lora_variant
            and self.lora_B[name].bias is None
            and self.lora_A[name].weight.dtype == x.dtype == self.lora_B[name].weight.dtype == self.weight.dtype
            for name in adapters
        )
    )
    if not plain:
        return LoraLinear.forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    shape = result.shape
    for name in adapters:
        update = self.lora_A[name](self.lora_dropout[name](x))
        result = torch.addmm(
            result.reshape(-1, shape[-1]),
            update.reshape(-1, update.shape[-1]),
            self.lora_B[name].weight.T,
            alpha=self.scaling[name],
        ).view(shape)
    return result


def add_lora_with_addmm(model) -> int:
    """Give every plain peft LoRA Linear layer the one-addmm forward; returns how many were changed."""
    changed = 0
    for module in model.modules():
        if type(module) is LoraLinear and module.forward.__func__ is not _addmm_forward:
            module.forward = types.MethodType(_addmm_forward, module)
            changed += 1
    return changed
