"""The one-addmm LoRA forward computes peft's sum, with its gradients, and leaves peft's other paths alone."""

from __future__ import annotations

import torch

from core.config import TrainConfig
from core.engine import build_model
from core.lora_addmm import add_lora_with_addmm


def _pair(tiny_model_dir, tmp_path):
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), lora_dropout=0.0, output_dir=str(tmp_path))
    plain, _ = build_model(config, "cpu")
    for param in plain.parameters():  # lora_B starts at zero: make the update matter
        if param.requires_grad:
            torch.nn.init.normal_(param, std=0.05)
    fused, _ = build_model(config, "cpu")
    fused.load_state_dict(plain.state_dict())
    return plain, fused


def _loss(model, batch):
    logits = model(**batch).logits
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["input_ids"][:, 1:].flatten())


def test_addmm_forward_equals_peft_with_gradients(tiny_model_dir, tmp_path):
    plain, fused = _pair(tiny_model_dir, tmp_path)
    keys = set(fused.state_dict())
    assert add_lora_with_addmm(fused) == 7 * len(fused.base_model.model.model.layers)
    assert add_lora_with_addmm(fused) == 0  # already changed
    assert set(fused.state_dict()) == keys

    batch = {"input_ids": torch.randint(4, 200, (2, 30))}
    losses = [_loss(model.train(), batch) for model in (plain, fused)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[0], losses[1])
    plain_grads = {n: p.grad for n, p in plain.named_parameters() if p.requires_grad}
    for name, param in fused.named_parameters():
        if param.requires_grad:
            assert param.grad.abs().sum() > 0, name
            torch.testing.assert_close(param.grad, plain_grads[name], rtol=1e-4, atol=1e-6)


def test_disabled_and_merged_adapters_take_peft_paths(tiny_model_dir, tmp_path):
    plain, fused = _pair(tiny_model_dir, tmp_path)
    add_lora_with_addmm(fused)
    batch = {"input_ids": torch.randint(4, 200, (1, 20))}
    with torch.no_grad():
        tuned = fused.eval()(**batch).logits
        torch.testing.assert_close(tuned, plain.eval()(**batch).logits)
        with fused.disable_adapter():
            base = fused(**batch).logits
        assert not torch.allclose(base, tuned)  # the update was left out
        fused.merge_adapter()
        torch.testing.assert_close(fused(**batch).logits, tuned, rtol=1e-4, atol=1e-5)  # not added twice
