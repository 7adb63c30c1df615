"""The fused LoRA dropout is the same function and gradients as dropout-then-linear, and keeps less."""

from __future__ import annotations

import pytest
import torch

import core.lora_dropout
from core.config import TrainConfig
from core.engine import build_model, run_training
from core.lora_dropout import DroppedInputLinear, fuse_lora_dropout, keep_mask
from tests.conftest import qa_records, write_jsonl
from tests.run_helpers import assert_same_loss_and_grads, lora_model_pair, saved_bytes, saved_storages


def _reference(x: torch.Tensor, weight: torch.Tensor, p: float, seed: int) -> torch.Tensor:
    """What peft computes: dropout with the mask drawn the way the fused layer draws it, then linear."""
    torch.manual_seed(seed)
    keep = keep_mask(x, p)
    return torch.nn.functional.linear(x * keep / (1 - p), weight)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.5, 1.0])
def test_keep_mask_drops_p_of_the_inputs_as_torchs_seed_decides(p):
    x = torch.empty(1000, 1000)
    torch.manual_seed(3)
    mask = keep_mask(x, p)
    assert mask.dtype == torch.bool and mask.shape == x.shape
    dropped = 1 - mask.float().mean().item()
    assert abs(dropped - p) <= 4 * (p * (1 - p) / x.numel()) ** 0.5 + 2**-16  # 4 sigma, and p's rounding
    torch.manual_seed(3)
    assert torch.equal(keep_mask(x, p), mask)  # the seed decides it...
    if 0 < p < 1:
        assert not torch.equal(keep_mask(x, p), mask)  # ...and each draw is a new one
        assert not torch.equal(mask[0], mask[1])  # rows are not copies of each other


@pytest.mark.parametrize("p", [0.05, 0.5])
def test_fused_layer_equals_dropout_then_linear_with_gradients(p):
    torch.manual_seed(0)
    x = torch.randn(3, 17, 24, requires_grad=True)
    weight = torch.nn.Parameter(torch.randn(8, 24))
    layer = DroppedInputLinear(weight, p).train()
    grad_out = torch.randn(3, 17, 8)

    torch.manual_seed(7)
    fused = layer(x)
    fused_grads = torch.autograd.grad(fused, (x, weight), grad_out)
    reference = _reference(x, weight, p, seed=7)
    reference_grads = torch.autograd.grad(reference, (x, weight), grad_out)

    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)
    for got, expected in zip(fused_grads, reference_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert 0 < (fused_grads[0] == 0).float().mean() < 1  # dropped inputs get no gradient


def test_fused_layer_drops_a_share_p_and_rescales():
    p = 0.2
    layer = DroppedInputLinear(torch.nn.Parameter(torch.eye(64)), p).train()
    torch.manual_seed(3)
    out = layer(torch.ones(2048, 64, requires_grad=True))  # identity weight: out = the dropped input
    dropped_share = (out == 0).float().mean().item()
    assert abs(dropped_share - p) < 0.01  # 131,072 draws: the binomial spread is ~0.001
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - p)))


def test_eval_mode_is_plain_linear_and_no_grad_training_still_drops():
    weight = torch.nn.Parameter(torch.eye(64))
    layer = DroppedInputLinear(weight, 0.5)
    x = torch.ones(32, 64)
    torch.testing.assert_close(layer.eval()(x), x)
    with torch.no_grad():  # training mode without autograd: torch's dropout, like peft's
        out = layer.train()(x)
    assert 0.4 < (out == 0).float().mean().item() < 0.6
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 2.0))


def test_engine_model_fuses_every_lora_layer_keeps_keys_and_keeps_less(
    tiny_model_dir, tmp_path, rebuilt_dropout_inputs
):
    config = TrainConfig(
        model_name_or_path=str(tiny_model_dir), lora_dropout=0.1, output_dir=str(tmp_path), cpu_bf16=False
    )  # float32 without autocast: the float copies the fused layer saves (bf16: tests/test_cpu_bf16.py)
    model, _ = build_model(config, "cpu")
    keys_before = set(model.state_dict())
    batch = {"input_ids": torch.randint(4, 200, (2, 40))}
    model.train()
    unfused_bytes = saved_bytes(model, batch)

    lora_layers = sum(1 for m in model.modules() if isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict))
    assert fuse_lora_dropout(model) == lora_layers > 0
    assert set(model.state_dict()) == keys_before  # adapters save and load under the same names
    assert fuse_lora_dropout(model) == 0  # nothing left to fuse
    assert saved_bytes(model, batch) < 0.75 * unfused_bytes

    model.eval()  # no dropout: fused or not, the same function
    with torch.no_grad():
        fused_logits = model(**batch).logits
    plain, _ = build_model(config, "cpu")
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fused_logits, plain.eval()(**batch).logits)


def test_training_with_dropout_changes_the_adapter_and_saves_it_loadable(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "qa.jsonl", qa_records(8))
    config = TrainConfig(
        model_name_or_path=str(tiny_model_dir),
        dataset=str(data),
        lora_dropout=0.1,
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        output_dir=str(tmp_path / "run"),
        save_steps=1000,
        logging_steps=1,
    )
    final = run_training(config)
    assert final["type"] == "done" and final["step"] == 3

    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), final["adapter"])
    lora_b = [p for n, p in tuned.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # lora_B starts at zero: it was trained


def test_norm_outputs_are_recomputed_not_kept_with_the_same_gradients(tiny_model_dir, tmp_path, rebuilt_dropout_inputs):
    reference, model = lora_model_pair(tiny_model_dir, tmp_path, lora_dropout=0.1)
    fuse_lora_dropout(model)
    for module in reference.modules():  # the fused layers, without the norms marked
        for name, a in list(getattr(module, "lora_A", {}).items()):
            module.lora_A[name] = DroppedInputLinear(a.weight, module.lora_dropout[name].p)
            module.lora_dropout[name] = torch.nn.Identity()
    batch = {"input_ids": torch.randint(4, 200, (2, 40))}
    norm_outputs = []
    for layer in model.get_base_model().model.layers:
        layer.input_layernorm.register_forward_hook(lambda _m, _args, out: norm_outputs.append(out))
    saved = saved_storages(model, batch)
    assert norm_outputs and not {x.untyped_storage().data_ptr() for x in norm_outputs} & saved
    assert saved_bytes(model, batch) < saved_bytes(reference.train(), batch)
    assert_same_loss_and_grads(reference, model, batch)


def test_small_inputs_keep_their_dropped_copy_and_backward_rebuilds_nothing(tiny_model_dir, tmp_path, monkeypatch):
    kept, rebuilt = lora_model_pair(tiny_model_dir, tmp_path, lora_dropout=0.1)
    fuse_lora_dropout(kept), fuse_lora_dropout(rebuilt)
    norm_class = type(kept.get_base_model().model.layers[0].input_layernorm)
    norm_forward, rebuilds = norm_class.forward, []

    def counted_forward(self, hidden):  # a norm run without autograd is a rebuild in backward
        rebuilds.append(not torch.is_grad_enabled())
        return norm_forward(self, hidden)

    monkeypatch.setattr(norm_class, "forward", counted_forward)
    batch = {"input_ids": torch.randint(4, 200, (2, 40))}

    def loss_grads_rebuilds(model, copy_max_elements):
        monkeypatch.setattr(core.lora_dropout, "DROPPED_COPY_MAX_ELEMENTS", copy_max_elements)
        rebuilds.clear()
        torch.manual_seed(3)
        loss = model.train()(**batch, labels=batch["input_ids"]).loss
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
        return loss, grads, sum(rebuilds)

    largest_input = batch["input_ids"].numel() * kept.get_base_model().config.intermediate_size  # down_proj's
    copy_loss, copy_grads, copy_rebuilds = loss_grads_rebuilds(kept, largest_input)
    loss, grads, rebuilds_made = loss_grads_rebuilds(rebuilt, 0)
    assert copy_rebuilds == 0 < rebuilds_made
    torch.testing.assert_close(copy_loss, loss)
    for got, expected in zip(copy_grads, grads, strict=True):
        assert expected.abs().sum() > 0
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
