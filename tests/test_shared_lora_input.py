"""The shared lora_A product computes what separate products compute, with one dropout draw a group."""

from __future__ import annotations

import pytest
import torch

from core.config import TrainConfig
from core.engine import build_model
from core.lora_dropout import fuse_lora_dropout, keep_mask
from core.shared_lora_input import SharedInputLoraA, _SharedProduct, share_lora_input
from tests.run_helpers import assert_same_loss_and_grads, lora_model_pair


def _lora_layers(model) -> list:
    return [m for m in model.modules() if isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict)]


def _group(weights: list[torch.nn.Parameter], p: float, fused: bool) -> list[SharedInputLoraA]:
    group = _SharedProduct(p, fused)
    return [SharedInputLoraA(weight, group).train() for weight in weights]


@pytest.mark.parametrize("fused", [True, False])
def test_members_get_their_columns_of_one_draw_with_gradients(fused):
    p = 0.3
    torch.manual_seed(0)
    x = torch.randn(2, 13, 24, requires_grad=True)
    weights = [torch.nn.Parameter(torch.randn(rank, 24)) for rank in (8, 4, 8)]
    grads_out = [torch.randn(2, 13, w.shape[0]) for w in weights]
    members = _group(weights, p, fused)

    torch.manual_seed(5)
    outs = [member(x) for member in members]
    got = torch.autograd.grad(sum((o * g).sum() for o, g in zip(outs, grads_out)), (x, *weights))

    # The reference: one mask (drawn as each path draws it), applied to x once, then each member's own product.
    torch.manual_seed(5)
    if fused:
        dropped = x * keep_mask(x, p) / (1 - p)
    else:
        dropped = torch.nn.functional.dropout(x, p, training=True)
    refs = [torch.nn.functional.linear(dropped, w) for w in weights]
    expected = torch.autograd.grad(sum((r * g).sum() for r, g in zip(refs, grads_out)), (x, *weights))

    for out, ref in zip(outs, refs):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert (dropped == 0).any()
    assert torch.equal(got[0] == 0, dropped == 0)  # an input dropped once is dropped for every member
    assert members[0].group.input is None  # nothing held once every member has read its columns


def test_a_member_reading_another_input_makes_its_group_fall_back():
    weights = [torch.nn.Parameter(torch.randn(4, 6)) for _ in range(3)]
    members = _group(weights, 0.0, False)
    x, other = torch.randn(5, 6), torch.randn(5, 6)
    first = members[0](x)
    second = members[1](other)  # not the input the group's product was made from
    assert not members[0].group.shared
    torch.testing.assert_close(first, x @ weights[0].T)
    torch.testing.assert_close(second, other @ weights[1].T)
    torch.testing.assert_close(members[2](x), x @ weights[2].T)
    torch.testing.assert_close(members[0](other), other @ weights[0].T)


def test_engine_model_shares_qkv_and_gate_up_with_the_same_function(tiny_model_dir, tmp_path):
    plain, shared = lora_model_pair(tiny_model_dir, tmp_path, lora_dropout=0.0)
    keys = set(shared.state_dict())

    layers = len(plain.base_model.model.model.layers)
    assert share_lora_input(shared) == 5 * layers  # q, k, v, gate, up in every layer; o and down read others
    assert share_lora_input(shared) == 0  # nothing left to group
    assert set(shared.state_dict()) == keys  # adapters save and load under the same names
    assert_same_loss_and_grads(plain, shared, {"input_ids": torch.randint(4, 200, (2, 30))})


def test_fused_dropout_groups_keep_one_mask_a_group(tiny_model_dir, tmp_path):
    config = TrainConfig(
        model_name_or_path=str(tiny_model_dir), lora_dropout=0.1, output_dir=str(tmp_path), cpu_bf16=False
    )  # float32 without autocast (under autocast: tests/test_cpu_bf16.py)
    model, _ = build_model(config, "cpu")
    fuse_lora_dropout(model)
    assert share_lora_input(model) == 5 * len(model.base_model.model.model.layers)
    members = [m.lora_A["default"] for m in _lora_layers(model) if isinstance(m.lora_A["default"], SharedInputLoraA)]
    assert all(type(m.lora_dropout["default"]) is torch.nn.Identity for m in _lora_layers(model))
    assert {member.group.p for member in members} == {0.1} and all(member.group.fused for member in members)

    model.train()
    captured = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: captured.append(t) or t, lambda t: t):
        model(input_ids=torch.randint(4, 200, (1, 20))).logits.sum().backward()
    masks = [t for t in captured if t.dtype == torch.bool]
    assert len(masks) == 4 * len(model.base_model.model.model.layers)  # qkv, o, gate/up, down: one mask each


def test_mixed_dropouts_are_left_alone(tiny_model_dir, tmp_path):
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), lora_dropout=0.1, output_dir=str(tmp_path))
    model, _ = build_model(config, "cpu")
    attention = model.base_model.model.model.layers[0].self_attn
    attention.k_proj.lora_dropout["default"].p = 0.2  # k no longer drops like q and v
    assert share_lora_input(model) == 5 * len(model.base_model.model.model.layers) - 3
    assert type(attention.q_proj.lora_A["default"]) is torch.nn.Linear
