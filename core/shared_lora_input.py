"""One lora_A product for the LoRA layers that read the same input: q/k/v, and the MLP's gate/up.

A decoder layer's q_proj, k_proj and v_proj read the same hidden states, and so do its gate_proj
and up_proj. peft gives each its own dropout draw and its own [tokens, hidden] x [hidden, r] product,
in forward and again in backward: 5 of a layer's 7 LoRA products, and most of its dropout draws, on
inputs the members share. Here each group computes one product with its members' A matrices stacked
([tokens, hidden] x [hidden, sum of ranks]) and one dropout draw, and each member takes its own
columns. Each input is still kept with probability 1 - p in every member; what changes is that the
members of a group see the same draw instead of independent ones. The weights, their names in the
state dict and every gradient's formula are unchanged.

A member called with another input than the one its group's first member read (a model whose k/v
read something else, or peft casting the input to each layer anew) makes its group fall back, for
good, to one product per member.
"""

from __future__ import annotations

import torch

from core.lora_dropout import DroppedInputLinear, dropped_linear

# Sibling projections that read the same input in Llama-style decoder layers and MLPs.
SHARED_INPUT_PROJECTIONS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class _SharedProduct:
    """A group's stacked product of its last input, held until every member has taken its columns."""

    def __init__(self, p: float, fused: bool):
        self.p, self.fused = p, fused
        self.members: list[SharedInputLoraA] = []
        self.shared = True
        self._forget()

    def _forget(self) -> None:
        self.input: torch.Tensor | None = None
        self.pieces: tuple[torch.Tensor, ...] = ()
        self.unread: set[int] = set()

    def columns(self, index: int, x: torch.Tensor, training: bool) -> torch.Tensor:
        """Member `index`'s lora_A(dropout(x)), from the group's product of x."""
        if self.input is x and index in self.unread:
            self.unread.discard(index)
            piece = self.pieces[index]
            if not self.unread:
                self._forget()
            return piece
        if index in self.unread:  # this member reads another input than its group's: no sharing
            self.shared = False
            self._forget()
        if not self.shared:
            return dropped_linear(x, self.members[index].weight, self.p, training, self.fused)
        weights = [member.weight for member in self.members]
        product = dropped_linear(x, torch.cat(weights), self.p, training, self.fused)
        self.input, self.pieces = x, product.split([w.shape[0] for w in weights], dim=-1)
        self.unread = set(range(len(weights))) - {index}
        return self.pieces[index]


class SharedInputLoraA(torch.nn.Linear):
    """A member's lora_A (no bias): its columns of the group's product (see the module docstring)."""

    def __init__(self, weight: torch.nn.Parameter, group: _SharedProduct):
        super().__init__(weight.shape[1], weight.shape[0], bias=False, device="meta")
        self.weight = weight  # the same Parameter: state-dict keys, optimizer and checkpoints unchanged
        self.group, self.index = group, len(group.members)
        group.members.append(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.group.columns(self.index, x, self.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shares its input with {len(self.group.members) - 1} other(s)"


def _dropout_of(layer, name: str) -> tuple[float, bool] | None:
    """(p, fused) of a plain LoRA branch: its dropout probability, and whether it is applied inside
    lora_A as a bool mask (core.lora_dropout); None where the branch is anything else."""
    a, dropout = layer.lora_A[name], layer.lora_dropout[name]
    if a.bias is not None or name in getattr(layer, "lora_variant", {}):
        return None
    if type(a) is DroppedInputLinear and type(dropout) is torch.nn.Identity:
        return a.p, True
    if type(a) is torch.nn.Linear and type(dropout) is torch.nn.Dropout:
        return dropout.p, False
    if type(a) is torch.nn.Linear and type(dropout) is torch.nn.Identity:
        return 0.0, False
    return None


def share_lora_input(model) -> int:
    """Give every group of SHARED_INPUT_PROJECTIONS siblings whose LoRA branches agree (the same
    dropout, dtype and device, plain LoRA) one lora_A product; returns how many layers now share one."""
    shared = 0
    for parent in model.modules():
        for names in SHARED_INPUT_PROJECTIONS:
            layers = [getattr(parent, name, None) for name in names]
            if not all(isinstance(getattr(layer, "lora_A", None), torch.nn.ModuleDict) for layer in layers):
                continue
            for adapter in set.intersection(*(set(layer.lora_A.keys()) for layer in layers)):
                dropouts = {_dropout_of(layer, adapter) for layer in layers}
                weights = [layer.lora_A[adapter].weight for layer in layers]
                if None in dropouts or len(dropouts) > 1 or len({(w.dtype, w.device) for w in weights}) > 1:
                    continue
                group = _SharedProduct(*dropouts.pop())
                for layer, weight in zip(layers, weights):
                    layer.lora_A[adapter] = SharedInputLoraA(weight, group)
                    layer.lora_dropout[adapter] = torch.nn.Identity()
                shared += len(layers)
    return shared
