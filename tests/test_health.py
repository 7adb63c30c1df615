"""Training that fails loudly and recovers: bad steps skipped, divergence rolled back with a lower
learning rate (or reported), out-of-memory retried with the effective batch kept.

Real CLI runs on the tiny model. Validation refuses learning rates above 1, and within the bounds
the tiny model cannot be thrown off (its loss saturates at ln(vocab)), so the faults are injected:
a non-finite loss from a given step on, a loss spike, a MemoryError."""

from __future__ import annotations

import json

import pytest
import torch

from core import engine
from core.health import MAX_ROLLBACKS, HealthGuard
from core.train import main
from tests.run_helpers import events_by_type, load_adapter, write_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def strict_events(run_dir) -> list[dict]:
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return [json.loads(line, parse_constant=refuse) for line in (run_dir / "events.jsonl").open(encoding="utf-8")]


def inject_nan_loss(monkeypatch, from_step: int, attempts: int):
    """The loss is NaN from optimizer step `from_step` on, in the first `attempts` training attempts."""
    real = engine.EngineTrainer.compute_loss
    seen_starts = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if id(self) not in seen_starts:
            seen_starts.append(id(self))
        result = real(self, model, inputs, return_outputs, num_items_in_batch)
        if len(seen_starts) <= attempts and self.state.global_step + 1 >= from_step:
            return result * float("nan")
        return result

    monkeypatch.setattr(engine.EngineTrainer, "compute_loss", compute_loss)


def test_a_nan_loss_is_skipped_then_rolled_back_with_a_lower_lr(tmp_path, tiny_model_dir, dataset, monkeypatch):
    inject_nan_loss(monkeypatch, from_step=5, attempts=1)
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=10, save_steps=2, save_total_limit=10)
    assert main([str(config)]) == 0
    run = tmp_path / "run"
    events = strict_events(run)  # no NaN in the file, though the loss was NaN
    warnings = [e["message"] for e in events if e["type"] == "warning"]
    assert warnings[:3] == [f"step {n} skipped: loss is nan" for n in (5, 6, 7)]
    # the weights after 4 steps gave the first bad loss, so the newest healthy checkpoint is step 2's
    assert warnings[3] == "diverged at step 7: back to checkpoint-2 with learning_rate 0.0005 (rollback 1 of 2)"
    starts = [e for e in events if e["type"] == "start"]
    assert [s["resumed_from_step"] for s in starts] == [0, 2]
    done = next(e for e in events if e["type"] == "done")
    assert done["step"] == 10
    after = [e for e in events if e["type"] == "step" and e["time"] > starts[1]["time"]]
    assert after and all(e["lr"] == pytest.approx(5e-4) for e in after)
    model = load_adapter(tiny_model_dir, run / "adapter")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_run_that_keeps_diverging_ends_in_an_error_and_saves_no_adapter(
    tmp_path, tiny_model_dir, dataset, monkeypatch, capsys
):
    inject_nan_loss(monkeypatch, from_step=1, attempts=MAX_ROLLBACKS + 1)
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=10)
    assert main([str(config)]) == 2
    assert "error: diverged at step 3: lower learning_rate" in capsys.readouterr().err
    run = tmp_path / "run"
    final = strict_events(run)[-1]
    assert final["type"] == "error" and final["message"].startswith("diverged at step 3")
    assert not (run / "adapter").exists()
    assert "done" not in events_by_type(run)


def test_a_loss_spike_is_skipped_but_small_losses_may_wobble():
    from core.events import RunFolder

    class Control:
        should_training_stop = False

    class State:
        global_step = 0

    guard = HealthGuard(RunFolder("/nonexistent-run"))
    guard.run.append_event = lambda *a, **k: None  # keep this unit test off the disk
    model = torch.nn.Linear(2, 1)
    model.weight.grad = torch.ones_like(model.weight)

    def step(loss: float) -> bool:
        guard.record(torch.tensor(loss))
        model.weight.grad = torch.ones_like(model.weight)
        guard.on_pre_optimizer_step(None, State, Control, model=model)
        State.global_step += 1
        return model.weight.grad is None  # skipped: the gradient was dropped

    assert [step(x) for x in (0.002, 0.001, 0.0006, 0.0009, 0.004)] == [False] * 5  # 6x the median, +0.003
    assert step(2.0) is True  # far above: a spike
    assert step(0.001) is False and guard.bad_in_row == 0


def test_out_of_memory_halves_the_batch_and_keeps_the_effective_batch(tmp_path, tiny_model_dir, dataset, monkeypatch):
    real = engine.EngineTrainer.training_step
    raised = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.state.global_step == 3 and not raised:
            raised.append(True)
            raise MemoryError("injected")
        return real(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(engine.EngineTrainer, "training_step", training_step)
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=6, save_steps=2)
    assert main([str(config)]) == 0
    events = events_by_type(tmp_path / "run")
    [warning] = events["warning"]
    assert warning["message"] == (
        "out of memory at step 4: per_device_train_batch_size 2, gradient_accumulation_steps "
        "2 (the same effective batch), continuing from checkpoint-2"
    )
    assert [s["resumed_from_step"] for s in events["start"]] == [0, 2]
    assert events["done"][0]["step"] == 6
