"""The one-addmm LoRA forward computes peft's sum, with its gradients, and leaves peft's other paths alone."""

from __future__ import annotations

import torch

from core.lora_addmm import add_lora_with_addmm
from tests.run_helpers import assert_same_loss_and_grads, lora_model_pair


def test_addmm_forward_equals_peft_with_gradients(tiny_model_dir, tmp_path):
    plain, fused = lora_model_pair(tiny_model_dir, tmp_path, lora_dropout=0.0)
    keys = set(fused.state_dict())
    assert add_lora_with_addmm(fused) == 7 * len(fused.base_model.model.model.layers)
    assert add_lora_with_addmm(fused) == 0  # already changed
    assert set(fused.state_dict()) == keys
    assert_same_loss_and_grads(plain, fused, {"input_ids": torch.randint(4, 200, (2, 30))})


def test_disabled_and_merged_adapters_take_peft_paths(tiny_model_dir, tmp_path):
    plain, fused = lora_model_pair(tiny_model_dir, tmp_path, lora_dropout=0.0)
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
