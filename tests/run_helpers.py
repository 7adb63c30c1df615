"""Helpers for tests that train through the CLI and read the run folder."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from core.events import RunFolder


def write_config(path: Path, model_dir: Path, dataset: Path, **values) -> Path:
    """A small, fast run: batch 4 x 1, constant lr, no warmup, no mid-run checkpoints."""
    config = {
        "model_name_or_path": str(model_dir),
        "dataset": str(dataset),
        "output_dir": str(path.parent / "run"),
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 5e-3,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "lora_dropout": 0.0,
        "save_steps": 1000,
        **values,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def events_by_type(run_dir: Path) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for event in RunFolder(run_dir).all_events():
        grouped.setdefault(event["type"], []).append(event)
    return grouped


def load_adapter(model_dir: Path, adapter_dir: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def saved_bytes(model, batch) -> int:
    """Bytes of the distinct non-parameter tensors autograd keeps for backward in one forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(**batch).logits.sum()
    return sum(seen.values())


def lora_model_pair(model_dir: Path, tmp_path: Path, **fields):
    """Two engine models with the same LoRA weights, drawn at random: lora_B starts at zero, which
    would leave lora_A's gradients zero and every comparison of them empty."""
    from core.config import TrainConfig
    from core.engine import build_model

    fields.setdefault("cpu_bf16", False)  # float32: exact comparisons (bf16: tests/test_cpu_bf16.py)
    config = TrainConfig(model_name_or_path=str(model_dir), output_dir=str(tmp_path), **fields)
    first, _ = build_model(config, "cpu")
    for param in first.parameters():
        if param.requires_grad:
            torch.nn.init.normal_(param, std=0.05)
    second, _ = build_model(config, "cpu")
    second.load_state_dict(first.state_dict())
    return first, second


def assert_same_loss_and_grads(reference, model, batch, seed: int = 3) -> None:
    """The same training loss and LoRA gradients (each non-zero) from both, dropout masks drawn alike."""

    def loss_and_grads(m):
        torch.manual_seed(seed)
        loss = m.train()(**batch, labels=batch["input_ids"]).loss
        return loss, torch.autograd.grad(loss, [p for p in m.parameters() if p.requires_grad])

    (ref_loss, ref_grads), (loss, grads) = loss_and_grads(reference), loss_and_grads(model)
    torch.testing.assert_close(loss, ref_loss)
    for got, expected in zip(grads, ref_grads, strict=True):
        assert expected.abs().sum() > 0
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def saved_storages(model, batch) -> set[int]:
    """The storages (data pointers) autograd keeps for backward in one training forward."""
    saved: set[int] = set()

    def pack(tensor):
        saved.add(tensor.untyped_storage().data_ptr())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.train()(**batch)
    return saved
