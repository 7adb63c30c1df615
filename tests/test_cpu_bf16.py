"""cpu_bf16: bf16 base weights and autocast on a CPU with native bf16; the same training within bf16
rounding, float32 LoRA weights, an adapter plain peft loads, and float32 wherever it does not apply."""

from __future__ import annotations

import pytest
import torch

from core import models
from core.config import TrainConfig
from core.engine import build_model, run_training
from core.lora_addmm import add_lora_with_addmm, float32_residual_stream
from core.lora_dropout import DroppedInputLinear, fuse_lora_dropout, keep_mask
from core.packing import use_packed_attention
from core.shared_lora_input import share_lora_input
from tests.conftest import qa_records, write_jsonl
from tests.run_helpers import events_by_type, load_adapter


@pytest.fixture
def native_bf16(monkeypatch):
    """This machine's CPU flags aside: behave as on a CPU with AMX (emulated bf16 gives the same numbers)."""
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)


def test_applies_only_on_a_cpu_with_native_bf16_unquantized_and_switched_on(monkeypatch):
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert models.cpu_bf16_applies("cpu", True, "none")
    assert not models.cpu_bf16_applies("cpu", False, "none")
    assert not models.cpu_bf16_applies("cpu", True, "4")  # QLoRA keeps its float32 compute
    assert not models.cpu_bf16_applies("cuda", True, "none")  # GPUs choose their dtype themselves
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    assert not models.cpu_bf16_applies("cpu", True, "none")  # emulated bf16 is slower than float32


def test_base_weights_bf16_lora_weights_float32(tiny_model_dir, tmp_path, native_bf16):
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), output_dir=str(tmp_path), cpu_bf16=True)
    model, _ = build_model(config, "cpu")
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trained = {p.dtype for p in model.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    off, _ = build_model(TrainConfig(model_name_or_path=str(tiny_model_dir), cpu_bf16=False), "cpu")
    assert {p.dtype for p in off.parameters()} == {torch.float32}


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def test_under_autocast_only_base_products_run_in_bf16(tiny_model_dir, tmp_path, native_bf16):
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), output_dir=str(tmp_path), lora_dropout=0.1)
    model, _ = build_model(config, "cpu")
    layers = model.base_model.model.model.layers
    fuse_lora_dropout(model), share_lora_input(model), add_lora_with_addmm(model)
    assert use_packed_attention(model) and float32_residual_stream(model)  # as the engine does
    outputs: dict[str, torch.dtype] = {}
    for name, module in model.named_modules():
        if name.endswith(("_proj", "self_attn", "mlp")):
            module.register_forward_hook(lambda m, i, out, name=name: outputs.update({name: _first(out).dtype}))
    captured = []
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: captured.append(t) or t, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=torch.randint(4, 200, (1, 20))).logits.float().logsumexp(-1).mean()
        loss.backward()
    # every projection returns float32 (base product upcast, LoRA update added in float32), and so
    # do attention and the MLP: the residual stream stays float32
    assert outputs and set(outputs.values()) == {torch.float32}
    # q/k/v and gate/up still share one mask a group, as in float32 (the same x reaches every member)
    assert len([t for t in captured if t.dtype == torch.bool]) == 4 * len(layers)
    # the only bf16 tensors kept for backward are the frozen weights (or views of them): the bf16
    # copies autocast makes of the inputs are used and dropped, the weights need no input for a gradient
    weights = {p.untyped_storage().data_ptr() for p in model.parameters() if p.dtype == torch.bfloat16}
    kept_bf16 = [t for t in captured if t.dtype == torch.bfloat16]
    assert kept_bf16 and all(t.untyped_storage().data_ptr() in weights for t in kept_bf16)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def test_fused_dropout_under_autocast_matches_dropout_then_linear():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 32, requires_grad=True)
    weight = torch.nn.Parameter(torch.randn(8, 32))
    grad_out = torch.randn(2, 9, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(5)
        fused = DroppedInputLinear(weight, 0.1).train()(x)
        torch.manual_seed(5)
        keep = keep_mask(x, 0.1)
        reference = torch.nn.functional.linear(x * keep / 0.9, weight)
    assert fused.dtype == reference.dtype == torch.bfloat16
    fused_grads = torch.autograd.grad(fused, (x, weight), grad_out.bfloat16())
    reference_grads = torch.autograd.grad(reference, (x, weight), grad_out.bfloat16())
    torch.testing.assert_close(fused, reference)
    for got, expected in zip(fused_grads, reference_grads):
        assert got.dtype == expected.dtype == torch.float32  # each gradient in its input's dtype
        torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-2)


def _train(tiny_model_dir, tmp_path, name: str, **values) -> tuple[dict, dict]:
    data = write_jsonl(tmp_path / "qa.jsonl", qa_records(8))
    config = TrainConfig(
        model_name_or_path=str(tiny_model_dir),
        dataset=str(data),
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        warmup_ratio=0.0,
        lora_dropout=0.1,  # the fused dropout runs under autocast too
        output_dir=str(tmp_path / name),
        save_steps=1000,
        **values,
    )
    final = run_training(config)
    return final, events_by_type(tmp_path / name)


@pytest.mark.parametrize("lora_target", ["all", "q_proj,k_proj"])  # v, o and the MLP: bf16 outputs
def test_training_matches_float32_within_bf16_rounding_and_saves_a_plain_adapter(
    tiny_model_dir, tmp_path, native_bf16, one_torch_thread, lora_target
):
    bf16, bf16_events = _train(tiny_model_dir, tmp_path, "bf16", cpu_bf16=True, lora_target=lora_target)
    fp32, fp32_events = _train(tiny_model_dir, tmp_path, "fp32", cpu_bf16=False, lora_target=lora_target)
    assert bf16_events["start"][0]["optimisations"]["cpu_bf16"] is True
    assert fp32_events["start"][0]["optimisations"]["cpu_bf16"] is False
    bf16_losses = [e["loss"] for e in bf16_events["step"]]
    fp32_losses = [e["loss"] for e in fp32_events["step"]]
    assert len(bf16_losses) == len(fp32_losses) == 4
    assert bf16_losses[-1] < bf16_losses[0]  # it trains
    # bf16 rounding of the base products' inputs only: the LoRA update and the residual stream are float32
    torch.testing.assert_close(torch.tensor(bf16_losses), torch.tensor(fp32_losses), rtol=1e-3, atol=1e-3)

    tuned = load_adapter(tiny_model_dir, bf16["adapter"])  # a float32 base, plain peft
    lora = {n: p for n, p in tuned.named_parameters() if "lora_" in n}
    assert lora and all(p.dtype == torch.float32 for p in lora.values())
    assert all(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)  # lora_B starts at zero
    reference = load_adapter(tiny_model_dir, fp32["adapter"])
    batch = {"input_ids": torch.randint(4, 200, (1, 24))}
    with torch.no_grad():
        got, expected = tuned.eval()(**batch).logits, reference.eval()(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0.1, atol=0.1)
