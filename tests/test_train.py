"""The headless SFT engine, end to end on a tiny random model, through its real entry point.

`core.train.main([config.yaml, "key=value", ...])` in-process where we only read the run folder, and
`python -m core.train` as a subprocess where the process itself matters (exit code, stderr, STOP,
SIGTERM). Every run uses the 2-layer tiny model from tests/tiny.py, never the real default model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from core.config import TrainConfig, config_from_dict, load_config
from core.engine import LAYERWISE_MIN_SCALE, build_model, build_optimizer, encode_dataset, layer_scale, prepare_data
from core.errors import UserInputError
from core.events import RunFolder
from core.lock import LOCK_FILE, LockHeld, LockOwner, RunLock, lock_holder, read_owner
from core.models import cpu_has_native_bf16
from core.runs import logged_status
from core.template import ChatEncoder
from core.train import main
from tests.conftest import write_jsonl
from tests.run_helpers import events_by_type, load_adapter, write_config
from tests.tiny import build_tiny_model

REPO = Path(__file__).resolve().parent.parent
STEP_FIELDS = {"type", "time", "step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def tiny4_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny4"), num_layers=4)


def cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "core.train", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def wait_for(condition, what: str, timeout_s: float = 240.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"process ended (rc {process.returncode}) before {what}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------- cutoff_len
def long_records() -> list[dict]:
    words = " ".join(["shipping"] * 60)
    return [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
        {"messages": [{"role": "user", "content": "Tell me"}, {"role": "assistant", "content": words}]},
        {"messages": [{"role": "user", "content": words}, {"role": "assistant", "content": "Ok."}]},
    ]


def cutoff_between(tokenizer) -> int:
    """A cutoff_len that keeps long_records()[0] whole (it is the shortest)."""
    full = ChatEncoder(tokenizer).encode([r["messages"] for r in long_records()])
    return len(full[0].input_ids) + 4


def test_cutoff_truncates_and_drops_unreachable_examples(tmp_path, tiny_model_dir, tiny_tokenizer):
    path = write_jsonl(tmp_path / "long.jsonl", long_records())
    full = ChatEncoder(tiny_tokenizer).encode([r["messages"] for r in long_records()])
    cutoff = cutoff_between(tiny_tokenizer)
    # the premise, computed here: #0 fits; #1's reply starts before the cutoff and ends after it;
    # every trained token of #2 lies past the cutoff
    assert len(full[0].input_ids) <= cutoff
    assert full[1].trained.argmax() < cutoff < len(full[1].input_ids)
    assert full[2].trained.argmax() >= cutoff
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), dataset=str(path), cutoff_len=cutoff)
    examples, stats = encode_dataset(config, tiny_tokenizer)
    # `truncated` counts every example longer than cutoff_len (the dropped one too), as core.lengths does
    assert stats == {"dataset": str(path), "format": "openai", "examples": 3, "truncated": 2, "dropped": 1}
    assert [len(e.input_ids) for e in examples] == [len(full[0].input_ids), cutoff]
    assert examples[1].input_ids.tolist() == full[1].input_ids[:cutoff].tolist()
    assert examples[1].trained.tolist() == full[1].trained[:cutoff].tolist()

    data = prepare_data(config, tiny_tokenizer)
    assert data.stats["train_examples"] == 2 and data.stats["max_length"] == cutoff
    assert data.stats["trained_tokens"] == int(full[0].trained.sum() + full[1].trained[:cutoff].sum())

    with pytest.raises(
        UserInputError, match="No example of .* has a trained token within cutoff_len=5: raise cutoff_len"
    ):
        prepare_data(
            TrainConfig(model_name_or_path=str(tiny_model_dir), dataset=str(path), cutoff_len=5), tiny_tokenizer
        )


def test_run_writes_a_warning_for_truncated_and_dropped(tmp_path, tiny_model_dir, tiny_tokenizer):
    data = write_jsonl(tmp_path / "long.jsonl", long_records())
    cutoff = cutoff_between(tiny_tokenizer)
    config = write_config(tmp_path / "c.yaml", tiny_model_dir, data, cutoff_len=cutoff, max_steps=1)
    assert main([str(config)]) == 0
    events = events_by_type(tmp_path / "run")
    assert [e["message"] for e in events["warning"]] == [
        f"2 example(s) truncated at cutoff_len={cutoff}; 1 dropped (no trained token left)"
    ]
    assert (events["start"][0]["truncated"], events["start"][0]["dropped"]) == (2, 1)
    assert events["start"][0]["train_examples"] == 2
    assert f"truncated at cutoff_len={cutoff}" in (tmp_path / "run" / "train.log").read_text(encoding="utf-8")


def test_val_size_holds_out_a_seeded_split(tmp_path, tiny_model_dir, tiny_tokenizer, dataset):
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), dataset=str(dataset), val_size=0.2, seed=3)
    data = prepare_data(config, tiny_tokenizer)
    assert (len(data.train), len(data.eval)) == (9, 3)  # ceil(12 * 0.2)
    again = prepare_data(config, tiny_tokenizer)
    assert [e.input_ids.tolist() for e in again.eval] == [e.input_ids.tolist() for e in data.eval]


# --------------------------------------------------------------------------- optimizer groups
def lr_by_param(model, optimizer) -> dict[str, float]:
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[str, float] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            assert name not in seen, f"{name} is in two groups"
            seen[name] = group["lr"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(seen) == trainable  # every LoRA weight once, no frozen base weight
    assert trainable and all("lora_" in n for n in trainable)
    return seen


def test_loraplus_puts_lora_b_at_ratio_times_lr(tiny_model_dir):
    config = TrainConfig(model_name_or_path=str(tiny_model_dir), loraplus_lr_ratio=16, learning_rate=2e-4)
    model, _ = build_model(config, "cpu")
    lrs = lr_by_param(model, build_optimizer(model, config))
    lora_a = {n: lr for n, lr in lrs.items() if "lora_A" in n}
    lora_b = {n: lr for n, lr in lrs.items() if "lora_B" in n}
    assert len(lora_a) == len(lora_b) == len(lrs) / 2 == 2 * 7  # 2 layers x (q,k,v,o,gate,up,down)
    assert all(lr == pytest.approx(16 * 2e-4) for lr in lora_b.values())
    assert all(lr == pytest.approx(2e-4) for lr in lora_a.values())
    # off: one learning rate for all
    plain = TrainConfig(model_name_or_path=str(tiny_model_dir), learning_rate=2e-4)
    assert set(lr_by_param(model, build_optimizer(model, plain)).values()) == {2e-4}


def test_fused_adamw_makes_the_same_update_as_torchs_default(tiny_model_dir):
    updated = {}
    for fused in (True, False):
        config = TrainConfig(model_name_or_path=str(tiny_model_dir), loraplus_lr_ratio=16, fused_adamw=fused)
        torch.manual_seed(0)
        model, _ = build_model(config, "cpu")
        optimizer = build_optimizer(model, config)
        assert bool(optimizer.defaults["fused"]) is fused
        trainable = [p for p in model.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in trainable]
        generator = torch.Generator().manual_seed(1)
        for _ in range(3):  # gradients drawn the same for both
            for param in trainable:
                param.grad = torch.randn(param.shape, generator=generator)
            optimizer.step()
        updated[fused] = [(p.detach() - b) for p, b in zip(trainable, before)]
    assert all(d.abs().max() > 0 for d in updated[True])  # every LoRA weight moved
    for fused_step, default_step in zip(updated[True], updated[False]):
        torch.testing.assert_close(fused_step, default_step, rtol=1e-4, atol=1e-7)


def test_layerwise_cosine_composes_with_loraplus(tiny4_model_dir):
    config = TrainConfig(
        model_name_or_path=str(tiny4_model_dir), loraplus_lr_ratio=16, learning_rate=1e-4, layerwise_lr="cosine"
    )
    model, _ = build_model(config, "cpu")
    lrs = lr_by_param(model, build_optimizer(model, config))

    def expected_scale(layer: int) -> float:  # independent of layer_scale: a cosine from MIN to 1 over depth
        return LAYERWISE_MIN_SCALE + (1 - LAYERWISE_MIN_SCALE) * 0.5 * (1 - math.cos(math.pi * layer / 3))

    for layer in range(4):
        for name, lr in lrs.items():
            if f".layers.{layer}." not in name:
                continue
            ratio = 16 if "lora_B" in name else 1
            assert lr == pytest.approx(1e-4 * ratio * expected_scale(layer)), name
    bottom = sorted({lr for n, lr in lrs.items() if ".layers.0." in n})
    top = sorted({lr for n, lr in lrs.items() if ".layers.3." in n})
    assert bottom == pytest.approx([1e-4 * LAYERWISE_MIN_SCALE, 16e-4 * LAYERWISE_MIN_SCALE])
    assert top == pytest.approx([1e-4, 16e-4])
    assert layer_scale("model.layers.0.mlp.up_proj.lora_A.default.weight", 4) == LAYERWISE_MIN_SCALE
    assert layer_scale("model.layers.3.mlp.up_proj.lora_A.default.weight", 4) == pytest.approx(1.0)
    assert layer_scale("lm_head.lora_A.default.weight", 4) == 1.0  # not in a layer: unscaled


# --------------------------------------------------------------------------------- end to end
def test_training_end_to_end_in_process(tmp_path, tiny_model_dir, dataset):
    base_files = {p.name: sha256(p) for p in tiny_model_dir.iterdir() if p.is_file()}
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset)
    run_dir = tmp_path / "my-run"
    rc = main([str(config_path), "max_steps=20", f"output_dir={run_dir}", "lora_rank=4"])
    assert rc == 0

    # config.yaml: the resolved config, overrides included
    saved = load_config(run_dir / "config.yaml")
    assert (saved.max_steps, saved.lora_rank, saved.output_dir) == (20, 4, str(run_dir))

    events = events_by_type(run_dir)
    assert set(events) == {"start", "step", "done"}
    start, steps, done = events["start"][0], events["step"], events["done"][0]
    assert start["total_steps"] == 20 and start["resumed_from_step"] == 0
    assert (start["examples"], start["train_examples"], start["format"], start["device"]) == (12, 12, "openai", "cpu")
    assert start["trainable_params"] > 0 and start["effective_batch_size"] == 4
    assert [e["step"] for e in steps] == list(range(1, 21))
    for event in steps:
        assert STEP_FIELDS <= set(event), event
        assert event["lr"] == pytest.approx(5e-3)  # constant schedule
        assert event["tokens_per_s"] > 0 and event["grad_norm"] > 0 and math.isfinite(event["loss"])
    assert steps[-1]["epoch"] == pytest.approx(20 / 3, abs=1e-3)
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.2, [e["loss"] for e in steps]  # it learned
    assert (done["step"], done["total_steps"]) == (20, 20)
    assert done["final_loss"] == pytest.approx(steps[-1]["loss"], abs=1e-4)
    assert done["adapter"] == str(run_dir / "adapter")
    assert logged_status(RunFolder(run_dir).all_events()) == "done"

    # The adapter is a standard PEFT folder, holding only LoRA weights that moved from their init.
    adapter = run_dir / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    trained = load_file(adapter / "adapter_model.safetensors")
    assert trained and all("lora_A" in k or "lora_B" in k for k in trained)
    initial_model, _ = build_model(config_from_dict({**yaml.safe_load(config_path.read_text()), "lora_rank": 4}), "cpu")
    initial = {k.replace(".default", ""): v for k, v in initial_model.state_dict().items() if "lora_" in k}
    assert set(initial) == set(trained)
    for key, value in trained.items():
        assert not torch.equal(value, initial[key]), f"{key} did not change"
    assert all(not initial[k].any() for k in initial if "lora_B" in k)  # B starts at zero...
    assert all(trained[k].abs().max() > 0 for k in trained if "lora_B" in k)  # ...and moved

    # The base model is untouched: its files, and its weights inside the adapter-wrapped model.
    assert {p.name: sha256(p) for p in tiny_model_dir.iterdir() if p.is_file()} == base_files
    from transformers import AutoModelForCausalLM

    fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    wrapped = load_adapter(tiny_model_dir, adapter)
    base_weights = {
        k.replace("base_model.model.", "", 1).replace(".base_layer", ""): v
        for k, v in wrapped.state_dict().items()
        if "lora_" not in k
    }
    assert set(base_weights) == set(fresh)
    for key, value in fresh.items():
        assert torch.equal(base_weights[key], value), key
    # and the adapter changes what the model predicts
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        adapted = wrapped(input_ids=ids).logits
        with wrapped.disable_adapter():
            plain = wrapped(input_ids=ids).logits
    assert not torch.allclose(adapted, plain)


def test_training_end_to_end_as_a_subprocess(tmp_path, tiny_model_dir, dataset):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset)
    run_dir = tmp_path / "run"
    process = cli(str(config_path), "max_steps=2", "logging_steps=1")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert out.startswith("done: step 2/2, final loss ") and out.rstrip().endswith(f"adapter in {run_dir / 'adapter'}")
    # a quiet terminal: no tracebacks, no library warnings, no bitsandbytes import chatter
    for noise in ("Traceback", "Warning", "warnings.warn", "Failed to load", "it/s"):
        assert noise not in err, err
    # the advisor's notes are printed before training, and kept in the start event
    assert "[info] Effective batch =" in err and "[warn] Only 2 optimizer steps" in err
    events = events_by_type(run_dir)
    assert len(events["step"]) == 2 and events["done"][0]["step"] == 2
    assert (run_dir / "train.log").read_text(encoding="utf-8").count(" step ") >= 2
    load_adapter(tiny_model_dir, run_dir / "adapter")


# ------------------------------------------------------------------------------------- QLoRA
def test_qlora_4bit_on_cpu(tmp_path, tiny_model_dir, dataset):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=2, quantization_bit=4)
    assert main([str(config_path)]) == 0
    events = events_by_type(tmp_path / "run")
    assert events["start"][0]["quantization_bit"] == "4" and events["done"][0]["step"] == 2
    assert all(math.isfinite(e["loss"]) for e in events["step"])
    weights = load_file(tmp_path / "run" / "adapter" / "adapter_model.safetensors")
    assert all(w.dtype == torch.float32 for w in weights.values())
    assert any(w.abs().max() > 0 for k, w in weights.items() if "lora_B" in k)
    load_adapter(tiny_model_dir, tmp_path / "run" / "adapter")  # loads onto a plain float base too


def test_qlora_4bit_model_is_really_quantized(tiny_model_dir):
    import bitsandbytes as bnb

    model, _ = build_model(TrainConfig(model_name_or_path=str(tiny_model_dir), quantization_bit="4"), "cpu")
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 2 * 7
    assert all(m.weight.quant_type == "nf4" for m in quantized)


def test_8bit_on_cpu_with_loraplus_and_layerwise_lr(tmp_path, tiny_model_dir, dataset):
    """bitsandbytes 0.49+ runs LLM.int8 on the CPU too. The step events report the schedule of
    learning_rate even though param group 0 is scaled by the layer-wise ramp."""
    config_path = write_config(
        tmp_path / "c.yaml",
        tiny_model_dir,
        dataset,
        max_steps=2,
        quantization_bit=8,
        loraplus_lr_ratio=16,
        layerwise_lr="cosine",
    )
    assert main([str(config_path)]) == 0
    events = events_by_type(tmp_path / "run")
    assert events["start"][0]["quantization_bit"] == "8" and events["done"][0]["step"] == 2
    assert [e["lr"] for e in events["step"]] == pytest.approx([5e-3, 5e-3])
    load_adapter(tiny_model_dir, tmp_path / "run" / "adapter")


# ----------------------------------------------------------------------------- stop / resume
def test_stop_file_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, dataset):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=60)
    run = RunFolder(tmp_path / "run")
    process = cli(str(config_path))
    wait_for(lambda: "step" in events_by_type(run.path), "the first step event", process=process)
    run.request_stop()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    events = events_by_type(run.path)
    stopped = events["stopped"][0]
    assert stopped["reason"] == "STOP file" and 1 <= stopped["step"] < 60
    assert out.startswith(f"stopped: step {stopped['step']}/60")
    assert logged_status(run.all_events()) == "stopped"
    assert run.latest_checkpoint() == run.checkpoints / f"checkpoint-{stopped['step']}"
    load_adapter(tiny_model_dir, run.adapter)

    # resume: continues from the checkpoint to max_steps
    assert main([str(config_path), "resume=true"]) == 0
    events = events_by_type(run.path)
    assert [e["resumed_from_step"] for e in events["start"]] == [0, stopped["step"]]
    assert events["done"][0]["step"] == 60 and logged_status(run.all_events()) == "done"
    assert not run.stop_file.exists()
    resumed_losses = [e["loss"] for e in events["step"] if e["step"] > stopped["step"]]

    # ... and lands exactly where an uninterrupted run does: same steps, same losses, same adapter
    straight_dir = tmp_path / "straight"
    assert main([str(config_path), f"output_dir={straight_dir}"]) == 0
    straight = events_by_type(straight_dir)
    assert straight["done"][0]["step"] == 60
    assert resumed_losses == pytest.approx([e["loss"] for e in straight["step"] if e["step"] > stopped["step"]])
    a = load_file(run.adapter / "adapter_model.safetensors")
    b = load_file(straight_dir / "adapter" / "adapter_model.safetensors")
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_resume_without_checkpoint_warns_and_starts_fresh(tmp_path, tiny_model_dir, dataset):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=1, resume=True)
    assert main([str(config_path)]) == 0
    events = events_by_type(tmp_path / "run")
    assert "no complete checkpoint" in events["warning"][0]["message"]
    assert events["start"][0]["resumed_from_step"] == 0 and events["done"][0]["step"] == 1


def test_sigterm_stops_cleanly_after_a_step_or_while_the_model_loads(tmp_path, tiny_model_dir, dataset):
    """Two runs side by side. One gets SIGTERM after its first step event; the other as soon as its
    run folder has config.yaml, while the model still loads (before the fix that killed the process
    with no event at all). Both finish the step they are in, save, and write `stopped`."""
    runs, processes = {}, {}
    for when in ("after-step", "while-loading"):
        config_path = write_config(tmp_path / when / "c.yaml", tiny_model_dir, dataset, max_steps=60)
        runs[when] = RunFolder(tmp_path / when / "run")
        processes[when] = cli(str(config_path))
    wait_for(runs["while-loading"].config.is_file, "config.yaml", process=processes["while-loading"])
    processes["while-loading"].send_signal(signal.SIGTERM)
    wait_for(
        lambda: "step" in events_by_type(runs["after-step"].path),
        "the first step event",
        process=processes["after-step"],
    )
    os.kill(processes["after-step"].pid, signal.SIGTERM)
    for when, process in processes.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        events = events_by_type(runs[when].path)
        stopped = events["stopped"][0]
        assert stopped["reason"] == "SIGTERM" and 1 <= stopped["step"] < 60, when
        assert "done" not in events and "error" not in events
        assert out.startswith(f"stopped: step {stopped['step']}/60")
        assert runs[when].latest_checkpoint() == runs[when].checkpoints / f"checkpoint-{stopped['step']}"
        assert not (runs[when].path / LOCK_FILE).exists()  # a stopped trainer releases the folder
        load_adapter(tiny_model_dir, runs[when].adapter)


def test_stop_signals_catch_sigterm_and_a_first_ctrl_c():
    from core.engine import StopSignals

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals() as caught:
        os.kill(os.getpid(), signal.SIGINT)
        assert caught.caught == "SIGINT"  # handled: no KeyboardInterrupt on the first one
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C aborts
    with StopSignals() as caught:
        os.kill(os.getpid(), signal.SIGTERM)
        assert caught.caught == "SIGTERM"
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_in_process_runs_restore_signal_handlers_and_logging(tmp_path, tiny_model_dir, dataset):
    import logging

    handlers = list(logging.getLogger().handlers)
    sigterm, sigint = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=1)
    assert main([str(config_path)]) == 0
    assert logging.getLogger().handlers == handlers
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == (sigterm, sigint)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_bad_config_exits_2_with_the_message(tmp_path, tiny_model_dir, dataset):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, learning_rat=1e-4, cutoff_len=-3)
    process = cli(str(config_path), "lora_rank=abc")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert err.splitlines() == [
        f"error: Invalid training config in {config_path}:",
        "  - unknown key 'learning_rat' (did you mean 'learning_rate'?)",
        "  - lora_rank must be an int, got 'abc'",
        "  - cutoff_len must be > 0, got -3",
    ]
    assert "Traceback" not in out + err
    assert not (tmp_path / "run").exists()  # nothing started


def test_cli_bad_data_exits_2_with_the_message_and_an_error_event(tmp_path, tiny_model_dir):
    data = tmp_path / "bad.jsonl"
    data.write_text(
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}]}\n'
        "{broken\n",
        encoding="utf-8",
    )
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, data)
    process = cli(str(config_path))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert err.startswith("error: bad.jsonl: 1 line(s) are not JSON:\n  - line 3: not valid JSON")
    assert "Traceback" not in out + err
    [event] = events_by_type(tmp_path / "run")["error"]
    assert "line 3: not valid JSON" in event["message"]
    assert logged_status(RunFolder(tmp_path / "run").all_events()) == "error"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model_name_or_path=/no/such/model", "error: Model folder not found: /no/such/model"),
        ("dataset=/no/such/data.jsonl", "error: Dataset file not found: /no/such/data.jsonl"),
    ],
)
def test_missing_files_are_refused_before_the_run_folder_is_made(
    tmp_path, tiny_model_dir, dataset, capsys, override, expected
):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset)
    assert main([str(config_path), override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected) and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_problem_only_the_model_can_tell_ends_the_run_with_an_error_event(tmp_path, tiny_model_dir, dataset, capsys):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset)
    assert main([str(config_path), "lora_target=no_such_proj"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: lora_target='no_such_proj' does not fit this model") and "Traceback" not in err
    assert events_by_type(tmp_path / "run")["error"][0]["message"] == err[len("error: ") :].rstrip("\n")
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released on the error path too


def test_main_usage(capsys):
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "usage: python -m core.train CONFIG.yaml [key=value ...]" in capsys.readouterr().out
    assert main(["/no/such/config.yaml"]) == 2
    assert capsys.readouterr().err == "error: Config file not found: /no/such/config.yaml\n"
    assert main(["/no/such/config.yaml", "max_steps"]) == 2
    assert "Overrides must look like key=value" in capsys.readouterr().err


# ------------------------------------------------------------------------ one trainer per folder
def write_lock(run_dir: Path, owner: dict) -> None:
    """A lock file as another process would have left it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_FILE).write_text(json.dumps(owner), encoding="utf-8")


def this_process(**changes) -> dict:
    return {**asdict(LockOwner.of(os.getpid())), **changes}


def exited_pid() -> int:
    """The pid of a process that has exited and been reaped: no process has it now."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_two_trainers_on_one_folder_the_second_is_refused_with_the_holders_pid(tmp_path, tiny_model_dir, dataset):
    """Started together on one output_dir (max_steps 3 and 4, to tell them apart): one trains, the
    other exits 2 at once naming the folder and the winner's pid, and writes nothing there."""
    run = RunFolder(tmp_path / "run")
    processes = {
        steps: cli(str(write_config(tmp_path / f"c{steps}.yaml", tiny_model_dir, dataset, max_steps=steps)))
        for steps in (3, 4)
    }
    results = {steps: (process, *process.communicate(timeout=300)) for steps, process in processes.items()}
    [(steps, (winner, _, _))] = [(s, r) for s, r in results.items() if r[0].returncode == 0]
    [(loser, _, err)] = [r for r in results.values() if r[0].returncode != 0]
    assert loser.returncode == 2, err
    assert (
        err.startswith(f"error: Run folder {run.path} is being trained by another process (pid {winner.pid}, since ")
        and "Traceback" not in err
    )
    types = [e["type"] for e in run.all_events()]
    assert types.count("start") == 1 and types[-1] == "done" and types.count("done") == 1
    assert [e["step"] for e in events_by_type(run.path)["step"]] == list(range(1, steps + 1))  # one run's steps
    assert load_config(run.config).max_steps == steps  # the loser did not overwrite config.yaml
    assert not (run.path / LOCK_FILE).exists()


def test_a_live_lock_refuses_the_cli_before_anything_is_written(tmp_path, tiny_model_dir, dataset, capsys):
    parent = LockOwner.of(os.getppid())  # a live process that is not this one
    write_lock(tmp_path / "run", asdict(parent))
    lock_before = (tmp_path / "run" / LOCK_FILE).read_bytes()
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=1)
    assert main([str(config_path)]) == 2
    assert f"is being trained by another process (pid {parent.pid}" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "run").iterdir()] == [LOCK_FILE]
    assert (tmp_path / "run" / LOCK_FILE).read_bytes() == lock_before


def test_a_stale_lock_from_a_dead_trainer_is_taken_over(tmp_path, tiny_model_dir, dataset):
    write_lock(tmp_path / "run", {"pid": exited_pid()})
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=1)
    assert main([str(config_path)]) == 0
    assert events_by_type(tmp_path / "run")["done"][0]["step"] == 1
    assert not (tmp_path / "run" / LOCK_FILE).exists()


@pytest.mark.parametrize(
    "why, owner",
    [
        ("dead pid", lambda: {"pid": exited_pid()}),
        (
            "recycled pid: another process start",
            lambda: this_process(start_ticks=LockOwner.of(os.getpid()).start_ticks - 1),
        ),
        ("machine rebooted since", lambda: this_process(boot_id="an-earlier-boot")),
        ("debris of a crash mid-write", lambda: {"no": "pid"}),
    ],
)
def test_stale_locks_are_recognised_and_taken_over(tmp_path, why, owner):
    write_lock(tmp_path, owner())
    assert lock_holder(tmp_path) is None, why
    with RunLock(tmp_path) as lock:
        assert read_owner(tmp_path) == lock.owner and lock.owner.pid == os.getpid()
        assert lock_holder(tmp_path) == lock.owner
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"), RunLock(tmp_path):
            pass  # one trainer per folder, within one process too
    assert not (tmp_path / LOCK_FILE).exists()


def test_kill_9_after_a_checkpoint_then_resume_finishes(tmp_path, tiny_model_dir, dataset):
    """A SIGKILL (the OOM killer) leaves the lock behind with a dead pid: resume takes it over and
    continues from the newest complete checkpoint."""
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=200, save_steps=5)
    run = RunFolder(tmp_path / "run")
    process = cli(str(config_path))
    wait_for(lambda: run.latest_checkpoint() is not None, "the first checkpoint", process=process)
    process.kill()
    process.communicate(timeout=60)
    assert read_owner(run.path).pid == process.pid and lock_holder(run.path) is None  # left behind, stale
    checkpoint_step = int(run.latest_checkpoint().name.split("-")[-1])
    assert main([str(config_path), "resume=true"]) == 0
    events = events_by_type(run.path)
    assert [e["resumed_from_step"] for e in events["start"]] == [0, checkpoint_step]
    assert events["done"][0]["step"] == 200 and "error" not in events
    assert logged_status(run.all_events()) == "done" and not (run.path / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------- run folder
def test_events_are_strict_json_with_nan_and_inf_as_null(tmp_path):
    def no_constants(name: str):
        raise ValueError(f"{name} is not JSON")

    run = RunFolder(tmp_path / "r")
    written = run.append_event(
        "step", step=1, loss=float("nan"), grad_norm=float("inf"), probes={"recall": [float("-inf"), 0.5]}
    )
    [line] = run.events.read_text(encoding="utf-8").splitlines()
    strict = json.loads(line, parse_constant=no_constants)
    assert (
        strict
        == written
        == {
            "type": "step",
            "time": written["time"],
            "step": 1,
            "loss": None,
            "grad_norm": None,
            "probes": {"recall": [None, 0.5]},
        }
    )
    assert run.all_events() == [written]


def test_events_are_read_incrementally_and_partial_lines_wait(tmp_path):
    run = RunFolder(tmp_path / "r")
    assert run.read_events() == ([], 0) and logged_status([]) == "new"
    run.append_event("start", total_steps=2)
    events, offset = run.read_events()
    assert [e["type"] for e in events] == ["start"] and offset > 0
    with open(run.events, "a", encoding="utf-8") as handle:
        handle.write('{"type": "step", "step": 1}\n{"type": "st')  # a writer mid-line
    events, offset2 = run.read_events(offset)
    assert events == [{"type": "step", "step": 1}]
    assert run.read_events(offset2) == ([], offset2)
    assert logged_status(run.all_events()) == "running"
    run.append_event("stopped", step=1)
    run.append_event("start", resumed_from_step=1)
    assert logged_status(run.all_events()) == "running"  # a resumed run is running again


def test_latest_checkpoint_ignores_incomplete_ones(tmp_path):
    run = RunFolder(tmp_path / "r")
    assert run.latest_checkpoint() is None
    # 15: killed before trainer_state.json; 20: killed while writing it (empty); 25: cut short.
    for step, state in ((5, "{}"), (10, "{}"), (15, None), (20, ""), (25, '{"global_step": 2')):
        folder = run.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (run.checkpoints / "checkpoint-last").mkdir()
    assert run.latest_checkpoint() == run.checkpoints / "checkpoint-10"


def test_help_lists_every_key_from_the_registry(capsys):
    from core.config import FIELDS, field_help

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in FIELDS:
        assert f"  {name}" in out and field_help(name) in out, name


def test_a_bad_config_is_reported_before_torch_is_imported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: .inf\nlora_rnak: 8\n", encoding="utf-8")
    probe = "import sys; from core.train import main; code = main([sys.argv[1]]); print('torch' in sys.modules, code)"
    result = subprocess.run(
        [sys.executable, "-c", probe, str(bad)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["False", "2"], result.stderr
    assert "learning_rate must be a finite number, got inf" in result.stderr
    assert "unknown key 'lora_rnak' (did you mean 'lora_rank'?)" in result.stderr


def test_a_folder_holding_a_run_is_refused_without_resume(tmp_path, tiny_model_dir, dataset, capsys):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=1)
    assert main([str(config_path)]) == 0
    events_before = (tmp_path / "run" / "events.jsonl").read_bytes()
    assert main([str(config_path)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "resume=true" in err
    assert (tmp_path / "run" / "events.jsonl").read_bytes() == events_before  # nothing appended


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {
            "packing": False,
            "trained_tokens_loss": False,
            "fused_lora_dropout": False,
            "shared_lora_input": False,
            "lora_addmm": False,
            "fused_swiglu": False,
            "fused_adamw": False,
            "release_freed_memory": False,
            "cpu_bf16": False,
        },
    ],
)
def test_start_event_records_the_optimisations_applied(tmp_path, tiny_model_dir, dataset, switches):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=1, lora_dropout=0.1, **switches)
    assert main([str(config_path)]) == 0
    applied = events_by_type(tmp_path / "run")["start"][0]["optimisations"]
    if switches:
        assert applied == {
            "packed_attention": False,
            "trained_tokens_loss": False,
            "fused_lora_dropout_layers": 0,
            "shared_lora_input_layers": 0,
            "lora_addmm_layers": 0,
            "fused_swiglu_layers": 0,
            "fused_adamw": False,
            "cpu_allocator": "system",  # in-process: the allocator pytest started with
            "release_freed_memory_layers": 0,
            "cpu_bf16": False,
        }
    else:  # the defaults, on the tiny 2-layer Llama: 7 LoRA layers a decoder layer
        assert applied["packed_attention"] and applied["trained_tokens_loss"]
        assert applied["fused_lora_dropout_layers"] == applied["lora_addmm_layers"] == 14
        assert applied["shared_lora_input_layers"] == 10  # q, k, v, gate, up
        assert applied["fused_swiglu_layers"] == 2 and applied["fused_adamw"]
        assert applied["release_freed_memory_layers"] == 2  # glibc (Debian) here
        assert applied["cpu_bf16"] == cpu_has_native_bf16()  # on by default where the CPU has it
