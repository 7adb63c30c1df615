"""Several processes on the CPU (gloo), through the real entry point `python -m core.train`.

Two ranks with gradient accumulation A see, per optimizer step, the same examples as one process
with accumulation 2A: accelerate deals the sampler's micro-batches to the ranks in turn (rank 0 gets
batches 0, 2, 4 ..., rank 1 gets 1, 3, 5 ...), both runs draw the same seeded order, and the loss is
normalised by the trained tokens of the whole window on every rank. So the LoRA weights must agree.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from core.advisor import training_plan
from core.config import TrainConfig, load_config
from core.distributed import check_run
from core.errors import UserInputError
from core.events import RunFolder
from core.lock import LOCK_FILE
from core.paths import PROJECT_ROOT
from core.runs import prepare_run
from core.train import main
from tests.conftest import qa_records, write_jsonl
from tests.run_helpers import events_by_type, load_adapter, write_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES, PER_DEVICE = 16, 2  # 8 micro-batches an epoch: 2 optimizer steps of 4 (or 2 ranks x 2)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core.train", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def adapter_weights(run_dir):
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


def test_two_gloo_ranks_match_one_process_with_twice_the_accumulation_through_stop_and_resume(tmp_path, tiny_model_dir):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_records(EXAMPLES))
    # float32 throughout (cpu_bf16 off): the comparison below is of float32 rounding, see its tolerance
    common = dict(
        per_device_train_batch_size=PER_DEVICE, max_steps=-1, num_train_epochs=2, save_steps=1000, cpu_bf16=False
    )
    one = write_config(tmp_path / "one" / "c.yaml", tiny_model_dir, data, gradient_accumulation_steps=4, **common)
    two = write_config(
        tmp_path / "two" / "c.yaml", tiny_model_dir, data, gradient_accumulation_steps=2, num_processes=2, **common
    )
    assert main([str(one)]) == 0

    # A STOP written before the launch: both ranks must agree to stop after their first step.
    run = prepare_run(load_config(two))
    run.request_stop()
    stopped = cli(str(run.config))
    assert stopped.returncode == 0, stopped.stderr
    events = events_by_type(run.path)
    assert [e["step"] for e in events["stopped"]] == [1] and events["stopped"][0]["reason"] == "STOP file"
    assert run.latest_checkpoint().name == "checkpoint-1"
    load_adapter(tiny_model_dir, run.adapter)  # the stopped run's adapter is a standard PEFT folder

    resumed = cli(str(run.config), "resume=true")
    assert resumed.returncode == 0, resumed.stderr
    events = events_by_type(run.path)
    # one start per launch (not one per rank), the steps once each and in order, one done
    starts = events["start"]
    assert [s["resumed_from_step"] for s in starts] == [0, 1]
    assert all(s["num_processes"] == 2 and s["distributed"] == "ddp" for s in starts)
    assert [e["step"] for e in events["step"]] == [1, 2, 3, 4] and len(events["done"]) == 1
    single = events_by_type(tmp_path / "one" / "run")
    assert single["start"][0]["num_processes"] == 1 and single["start"][0]["distributed"] == "none"
    # the plan counts the global batch: the trainer ran the steps it announced, for both runs
    plan = training_plan(load_config(two), EXAMPLES)
    assert plan["effective_batch_size"] == 8 == single["start"][0]["effective_batch_size"]
    assert starts[0]["total_steps"] == plan["total_steps"] == single["done"][0]["step"] == 4
    assert not (run.path / LOCK_FILE).exists()  # the launcher released the lock

    # Tolerance: the same float32 sums added in another order (two ranks' gradients all-reduced
    # instead of accumulated in one process, a resume in between) differ by ~1e-7 relative; Adam
    # turns each step's gradient into an update of about lr (5e-3), so 4 steps leave the weights
    # ~1e-6 apart (8e-7 measured). 2e-5 is far below one update: another data order moves them by
    # ~1e-3. Adam hides a wrong gradient scale from the weights, so the loss and the gradient norm
    # each step (a missing x2 would halve both) are compared too, to a rounding-sized 1e-4.
    ours, theirs = adapter_weights(run.path), adapter_weights(tmp_path / "one" / "run")
    assert ours.keys() == theirs.keys()
    for name, weight in theirs.items():
        assert (ours[name] - weight).abs().max() < 2e-5, name
    for key in ("loss", "grad_norm"):
        assert [e[key] for e in events["step"]] == pytest.approx([e[key] for e in single["step"]], rel=1e-4), key
    assert (theirs[next(n for n in theirs if "lora_B" in n)] != 0).any()  # it trained at all


# ------------------------------------------------------------------------------- before a launch
def test_bad_multi_process_configs_are_refused_before_anything_starts(tmp_path):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(UserInputError) as err:
        check_run(TrainConfig(num_processes=1000), run)
    assert "num_processes 1000 is more than the" in str(err.value)
    with pytest.raises(UserInputError) as err:
        check_run(TrainConfig(num_processes=2, distributed="deepspeed_zero3", quantization_bit="4"), run)
    message = str(err.value)
    assert "pip install deepspeed" in message and "cannot partition a bitsandbytes 4-bit model" in message
    with pytest.raises(UserInputError, match="cannot shard LLM.int8"):
        check_run(TrainConfig(num_processes=2, distributed="fsdp", quantization_bit="8"), run)
    with pytest.raises(UserInputError, match="probes: none"):
        check_run(TrainConfig(num_processes=2, distributed="fsdp", probes="auto"), run)
    with pytest.raises(UserInputError, match="fsdp needs CUDA GPUs") as err:
        check_run(TrainConfig(num_processes=2, distributed="fsdp", quantization_bit="4"), run)
    assert "LLM.int8" not in str(err.value)  # QLoRA + FSDP itself is allowed, with a GPU
    assert not run.path.exists()  # nothing written


def test_fsdp_launches_with_the_qlora_settings_accelerate_documents():
    """The FSDP path as far as a CPU goes (accelerate runs FSDP only on accelerators): the launch
    names the shipped config, which asks for what QLoRA + FSDP needs, and the 4-bit weights are
    stored in the compute dtype so FSDP can shard them."""
    import torch

    from core.distributed import ACCELERATE_CONFIGS, launch_command
    from core.models import quantization_config

    config = TrainConfig(num_processes=2, distributed="fsdp", quantization_bit="4")
    command = launch_command(config, PROJECT_ROOT / "run" / "config.yaml")
    assert command[command.index("--config_file") + 1] == str(ACCELERATE_CONFIGS / "fsdp.yaml")
    assert command[command.index("--num_processes") + 1] == "2" and command[-3:-1] == ["-m", "core.train"]
    settings = yaml.safe_load((ACCELERATE_CONFIGS / "fsdp.yaml").read_text(encoding="utf-8"))
    assert settings["distributed_type"] == "FSDP"
    fsdp = settings["fsdp_config"]
    assert fsdp["fsdp_use_orig_params"] is False and fsdp["fsdp_cpu_ram_efficient_loading"] is True
    assert quantization_config("4", "cpu", sharded=True).bnb_4bit_quant_storage == torch.float32
    assert quantization_config("4", "cpu").bnb_4bit_quant_storage == torch.uint8  # one device: unchanged


def test_a_resume_keeps_the_number_of_processes(tmp_path, tiny_model_dir, dataset):
    config_path = write_config(tmp_path / "c.yaml", tiny_model_dir, dataset, max_steps=1, save_steps=1)
    assert main([str(config_path)]) == 0
    before = (tmp_path / "run" / "events.jsonl").read_text()
    result = cli(str(config_path), "resume=true", "num_processes=2")
    assert result.returncode == 2
    assert "trained with num_processes 1, this config has 2: resume with num_processes 1" in result.stderr
    assert (tmp_path / "run" / "events.jsonl").read_text() == before


def test_the_step_count_divides_the_micro_batches_between_the_processes():
    config = TrainConfig(per_device_train_batch_size=2, gradient_accumulation_steps=3, num_processes=4)
    assert config.effective_batch_size == 24
    # 50 examples: 25 micro-batches, 7 per process (the last round topped up), 3 steps (3, 3, 1)
    assert training_plan(config, 50)["steps_per_epoch"] == 3


# ----------------------------------------------------------------------------- runner and page
def test_the_runner_refuses_more_processes_than_devices_before_writing(tmp_path, tiny_model_dir, dataset):
    from webui.runner import Runner, process_choices

    config = TrainConfig(
        model_name_or_path=str(tiny_model_dir),
        dataset=str(dataset),
        output_dir=str(tmp_path / "runs" / "big"),
        num_processes=process_choices()[-1] + 1,
    )
    with pytest.raises(UserInputError, match=f"num_processes {config.num_processes} is more than the"):
        Runner(tmp_path / "runs").start(config)
    assert not (tmp_path / "runs" / "big").exists()


def test_the_train_tab_offers_the_device_count_and_the_strategies(tmp_path):
    from webui.app import build_app
    from webui.runner import process_choices

    _, ctx = build_app(tmp_path / "runs")
    count, strategy = ctx.c["num_processes"], ctx.c["distributed"]
    assert [value for _, value in count.choices] == process_choices() and count.value == 1
    assert [value for _, value in strategy.choices] == ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]
