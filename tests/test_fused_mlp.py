"""The fused SwiGLU product is the MLP's own function and gradients, and keeps less for backward."""

from __future__ import annotations

import torch

from core.config import TrainConfig
from core.engine import build_model
from core.fused_mlp import SwiGLU, fuse_swiglu
from core.lora_dropout import fuse_lora_dropout
from tests.run_helpers import assert_same_loss_and_grads, lora_model_pair, saved_bytes, saved_storages


def test_swiglu_matches_silu_times_up_in_value_and_gradients():
    gate = torch.randn(3, 11, 40, dtype=torch.float64, requires_grad=True)
    up = torch.randn(3, 11, 40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(SwiGLU.apply, (gate, up))
    grad_out = torch.randn(3, 11, 40, dtype=torch.float64)
    fused = SwiGLU.apply(gate, up)
    plain = torch.nn.functional.silu(gate) * up
    torch.testing.assert_close(fused, plain)
    for got, expected in zip(
        torch.autograd.grad(fused, (gate, up), grad_out), torch.autograd.grad(plain, (gate, up), grad_out)
    ):
        torch.testing.assert_close(got, expected)


def test_engine_model_fuses_every_mlp_same_loss_and_grads_and_keeps_less(tiny_model_dir, tmp_path):
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), lora_dropout=0.0, output_dir=str(tmp_path))
    plain, _ = build_model(config, "cpu")
    fused, _ = build_model(config, "cpu")
    fused.load_state_dict(plain.state_dict())
    layers = plain.get_base_model().config.num_hidden_layers
    assert fuse_swiglu(fused) == layers
    batch = {"input_ids": torch.randint(4, 200, (2, 40))}
    plain.train(), fused.train()
    assert saved_bytes(fused, batch) < 0.95 * saved_bytes(plain, batch)

    def loss_and_grads(model):
        loss = model(**batch, labels=batch["input_ids"]).loss
        trained = [p for p in model.parameters() if p.requires_grad]
        return loss, torch.autograd.grad(loss, trained)

    (plain_loss, plain_grads), (fused_loss, fused_grads) = loss_and_grads(plain), loss_and_grads(fused)
    torch.testing.assert_close(fused_loss, plain_loss)
    assert any(g.abs().sum() > 0 for g in plain_grads)
    for got, expected in zip(fused_grads, plain_grads):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_down_proj_dropout_keeps_gate_and_up_instead_of_their_product(tiny_model_dir, tmp_path, rebuilt_dropout_inputs):
    plain, fused = lora_model_pair(tiny_model_dir, tmp_path, lora_dropout=0.1)
    fuse_lora_dropout(plain), fuse_lora_dropout(fused)
    fuse_swiglu(fused)
    batch = {"input_ids": torch.randint(4, 200, (2, 40))}
    down_inputs = []
    for layer in fused.get_base_model().model.layers:
        layer.mlp.down_proj.register_forward_pre_hook(lambda _m, args: down_inputs.append(args[0]))
    saved = saved_storages(fused, batch)
    assert down_inputs and not {x.untyped_storage().data_ptr() for x in down_inputs} & saved
    assert_same_loss_and_grads(plain, fused, batch)  # masks drawn in the same order: gate, up, down
