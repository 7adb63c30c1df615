"""The chunked output-layer loss has the value and gradients of cross_entropy over full logits."""

from __future__ import annotations

import pytest
import torch

from core.head_loss import head_cross_entropy_sum, plain_frozen_head


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_head_loss_equals_full_logits_cross_entropy(chunk):
    torch.manual_seed(0)
    hidden = torch.randn(23, 16, requires_grad=True)
    weight = torch.randn(101, 16)  # frozen output layer: vocab 101
    targets = torch.randint(0, 101, (23,))

    ours = head_cross_entropy_sum(hidden, weight, targets, chunk)
    (grad_ours,) = torch.autograd.grad(ours * 0.37, hidden)  # a scale downstream, like / num_items
    reference = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    (grad_reference,) = torch.autograd.grad(reference * 0.37, hidden)

    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad_ours, grad_reference, rtol=1e-5, atol=1e-6)


def test_no_gradient_is_computed_without_grad():
    hidden, weight = torch.randn(5, 8), torch.randn(11, 8)
    with torch.no_grad():
        loss = head_cross_entropy_sum(hidden, weight, torch.tensor([0, 3, 10, 2, 2]))
    assert loss.item() > 0 and loss.grad_fn is None


def test_only_plain_frozen_heads_take_the_chunked_path(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.requires_grad_(False)
    decoder, weight = plain_frozen_head(model)
    assert decoder is model.get_decoder() and weight is model.lm_head.weight
    model.lm_head.weight.requires_grad_(True)  # a trained head (e.g. lm_head in modules_to_save)
    assert plain_frozen_head(model) is None
    model.lm_head.weight.requires_grad_(False)
    model.config.model_type = "gemma2"  # soft-caps its logits: the model must project them itself
    assert plain_frozen_head(model) is None
