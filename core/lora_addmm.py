"""A LoRA layer's update added to the base output in one addmm.

peft computes `result + lora_B(lora_A(dropout(x))) * scaling`: the [tokens, out] product, a pass
that scales it and a pass that adds it, and in backward a pass that scales the gradient again.
`addmm(result, lora_A(...), B.T, alpha=scaling)` is the same sum in one pass; its backward scales
only the rank-sized gradients. Layers where peft does anything else (adapters disabled or merged,
DoRA and other variants, a LoRA bias, dtypes that peft would cast, extra arguments) keep peft's
own forward.

Under CPU autocast (cpu_bf16: bf16 base weights) only the base product runs in bf16: its output is
upcast, and the LoRA branch and the sum are computed in the float32 of x and the LoRA weights.
peft instead computes the branch in bf16 and returns the sum in bf16, which rounds a small update
away against a large base output and slows the loss's fall (bench/README.md). With the residual
stream in float32 (float32_residual_stream), x is the same float32 tensor for every layer that
reads it, so the q/k/v and gate/up groups of core.shared_lora_input still share their product.
"""

from __future__ import annotations

import types

import torch
from peft.tuners.lora.layer import Linear as LoraLinear


def _addmm_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    adapters = [name for name in self.active_adapters if name in self.lora_A]
    lora_dtypes = {self.lora_A[name].weight.dtype for name in adapters}
    cpu_autocast = x.is_cpu and torch.is_autocast_enabled("cpu")
    plain = (
        not (args or kwargs or self.disable_adapters or self.merged)
        and (cpu_autocast or (not torch.is_autocast_enabled(x.device.type) and self.weight.dtype == x.dtype))
        and (lora_dtypes <= {x.dtype} or (cpu_autocast and len(lora_dtypes) == 1))
        and all(
            name not in self.lora_variant
            and self.lora_B[name].bias is None
            and self.lora_B[name].weight.dtype == self.lora_A[name].weight.dtype
            for name in adapters
        )
    )
    if not plain:
        return LoraLinear.forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    shape = result.shape
    if lora_dtypes:  # under CPU autocast: x (a bf16 attention output, say) in the LoRA weights' dtype
        x = x.to(*lora_dtypes)
    with torch.autocast("cpu", enabled=False):  # a no-op without CPU autocast
        result = result.to(x.dtype)
        for name in adapters:
            update = self.lora_A[name](self.lora_dropout[name](x))
            result = torch.addmm(
                result.reshape(-1, shape[-1]),
                update.reshape(-1, update.shape[-1]),
                self.lora_B[name].weight.T,
                alpha=self.scaling[name],
            ).view(shape)
    return result


def _float32_embeddings(module, inputs, output: torch.Tensor) -> torch.Tensor:
    return output.float() if torch.is_autocast_enabled("cpu") else output


def float32_residual_stream(model) -> bool:
    """Under cpu_bf16 the embeddings are bf16, and so would be the residual stream they start: cast
    the embedding output to float32 while CPU autocast is on (training; each layer then adds its
    float32 output to it). Outside autocast (the probes' generation) the model runs in bf16 as
    loaded. True if hooked."""
    embeddings = model.get_input_embeddings()
    if embeddings.weight.dtype == torch.float32:
        return False
    embeddings.register_forward_hook(_float32_embeddings)
    return True


def add_lora_with_addmm(model) -> int:
    """Give every plain peft LoRA Linear layer the one-addmm forward; returns how many were changed."""
    changed = 0
    for module in model.modules():
        if type(module) is LoraLinear and module.forward.__func__ is not _addmm_forward:
            module.forward = types.MethodType(_addmm_forward, module)
            changed += 1
    return changed
