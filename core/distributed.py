"""Training on several processes: the checks before a launch, the launch, and what each rank asks.

With num_processes > 1, `python -m core.train` stays the run's one launcher: it checks the run,
holds the folder's lock (core.lock) and prepares the folder as for one process, then starts

    python -m accelerate.commands.launch --config_file presets/accelerate/<distributed>.yaml
        --num_processes N --num_machines 1 --main_process_port <free port> -m core.train <run>/config.yaml

and waits for it. accelerate's launcher (torch elastic underneath) starts one process per GPU with
NCCL, or gloo processes on a machine without CUDA (the engine asks Trainer for use_cpu=True, which
makes accelerate choose gloo). accelerate rather than bare torchrun: the strategy's settings (FSDP
wrapping, DeepSpeed ZeRO stage) live in one config file per strategy that Trainer reads through
accelerate, instead of being re-expressed as TrainingArguments here.

Each rank finds LAUNCHER_PID_ENV in its environment: it trains under its launcher's lock instead of
taking one. Rank 0 alone writes events, train.log, probe files and the adapter (the other ranks get
a ReplicaRunFolder, which writes nothing); Trainer itself writes checkpoints from rank 0 (plus each
rank's RNG state). A stop (STOP file, SIGTERM, Ctrl-C) seen by any rank is agreed on by all at the
end of the same step (agreed_stop_code), so every rank saves the same checkpoint and leaves together.

Nothing here imports torch at module level: the CLI checks a config in a moment.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from core.config import TrainConfig
from core.errors import UserInputError
from core.events import TERMINAL_EVENTS, RunFolder, last_event
from core.paths import PRESETS_DIR

ACCELERATE_CONFIGS = PRESETS_DIR / "accelerate"
LAUNCHER_PID_ENV = "LORA_TAILOR_LAUNCHER_PID"  # set by the launching CLI for its ranks
SHARDED_STRATEGIES = ("fsdp", "deepspeed_zero3")  # no rank holds the whole model
POLL_S = 0.5  # how often the launcher looks for a signal to turn into a STOP file

T = TypeVar("T")


# --------------------------------------------------------------------------------- which process
def world_size() -> int:
    """Processes training this run (WORLD_SIZE, set by torch elastic for every rank); 1 when alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """The rank that writes the run folder (every process of a one-process run)."""
    return rank() == 0


def launched_rank() -> bool:
    """This process is a rank started by core.train's launcher (not a launcher, not alone)."""
    return LAUNCHER_PID_ENV in os.environ


def strategy(config: TrainConfig) -> str:
    """What the start event records: the strategy, or 'none' for one process."""
    return config.distributed if config.num_processes > 1 else "none"


# ------------------------------------------------------------------------------- before a launch
def visible_devices() -> tuple[str, int]:
    """('cuda', visible GPUs) when CUDA is there, else ('cpu', cores this process may use); a CPU
    core per gloo process is the most that helps, more would only take turns on the same cores."""
    if importlib.metadata.version("torch").endswith("+cpu"):  # a CPU-only build: no torch import needed
        device = "cpu"
    else:
        from core.models import best_device  # imports torch: only a multi-process run pays for it

        device = best_device()
    if device == "cuda":
        import torch

        return device, torch.cuda.device_count()
    if device == "mps":
        return device, 1  # torch has no multi-process backend for Apple GPUs
    return device, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _strategy_problems(config: TrainConfig, device: str) -> list[str]:
    problems = []
    name = config.distributed
    if importlib.util.find_spec("accelerate") is None:
        problems.append("num_processes > 1 needs the launcher from accelerate: pip install accelerate")
    if not (ACCELERATE_CONFIGS / f"{name}.yaml").is_file():
        problems.append(f"distributed: {name}: its accelerate config {ACCELERATE_CONFIGS / f'{name}.yaml'} is missing")
    if name.startswith("deepspeed"):
        if importlib.util.find_spec("deepspeed") is None:
            problems.append(f"distributed: {name} needs DeepSpeed, which is not installed: pip install deepspeed")
        if device != "cuda":
            problems.append(f"distributed: {name} needs CUDA GPUs; on this machine use distributed: ddp")
        if config.quantization_bit != "none":
            problems.append(
                f"distributed: {name} cannot partition a bitsandbytes {config.quantization_bit}-bit model: "
                f"use distributed: ddp, or fsdp with quantization_bit 4, or quantization_bit none"
            )
    if name == "fsdp" and device != "cuda":  # accelerate's FSDP looks for an accelerator and stops
        problems.append("distributed: fsdp needs CUDA GPUs (accelerate has no FSDP on the CPU): use distributed: ddp")
    if name == "fsdp" and config.quantization_bit == "8":
        problems.append(
            "distributed: fsdp cannot shard LLM.int8 weights (quantization_bit 8): use quantization_bit 4 "
            "(QLoRA + FSDP) or distributed: ddp"
        )
    if name in SHARDED_STRATEGIES and config.probes.strip().lower() != "none":
        problems.append(
            f"probes score the whole model while it trains, which distributed: {name} never holds on one "
            f"process: use distributed: ddp or deepspeed_zero2, or probes: none"
        )
    return problems


def _resume_problem(config: TrainConfig, run: RunFolder) -> str | None:
    """A resumed run keeps its number of processes: its checkpoint holds one RNG state per rank and
    its position in the data counted in that many processes' batches, and its steps are of that
    global batch; with another count the data order and the learning-rate plan would silently change."""
    if not config.resume or run.latest_checkpoint() is None:
        return None
    start = last_event(run.all_events(), "start")
    before = int(start.get("num_processes", 1)) if start else config.num_processes
    if before == config.num_processes:
        return None
    return (
        f"resume: {run.path.name} was trained with num_processes {before}, this config has "
        f"{config.num_processes}: resume with num_processes {before}, or start a new run"
    )


def check_run(config: TrainConfig, run: RunFolder) -> None:
    """Every problem with how many processes train `config` into `run`, raised before anything
    starts or is written. One process needs no launcher and no device count."""
    problem = _resume_problem(config, run)
    problems = [problem] if problem else []
    if config.num_processes > 1:
        device, count = visible_devices()
        problems += _strategy_problems(config, device)
        if config.num_processes > count:
            what = {
                "cuda": "visible GPUs (CUDA_VISIBLE_DEVICES)",
                "mps": "Apple GPU (torch trains on it with one process only)",
            }.get(device, "CPU cores this process may use")
            problems.append(f"num_processes {config.num_processes} is more than the {count} {what}")
    if len(problems) == 1:
        raise UserInputError(f"Cannot start the run: {problems[0]}")
    if problems:
        raise UserInputError("Cannot start the run:", problems)


# ------------------------------------------------------------------------------------ the launch
def _free_port() -> int:
    """A port no one listens on now, for the ranks' rendezvous: two runs on one machine must not
    both take accelerate's default 29500."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(config: TrainConfig, config_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ACCELERATE_CONFIGS / f"{config.distributed}.yaml"),
        "--num_processes",
        str(config.num_processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "core.train",
        str(config_path),
    ]


def launch(config: TrainConfig, run: RunFolder, stop_signals: Any) -> int:
    """Run the ranks and wait for them; returns 0 when they ended the run (done or stopped).

    The ranks run in this process's group: Ctrl-C in a terminal and the web runner's SIGTERM to the
    group reach every rank, and each stops cleanly at the same step. A signal sent to this process
    alone (`kill PID`) becomes a STOP file, which every rank reads. If the ranks end without a final
    event (a rank crashed or was killed before rank 0 could write one), this writes the error."""
    env = {**os.environ, LAUNCHER_PID_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1"}
    device, cores = visible_devices()
    if device == "cpu":  # torch elastic would set 1 thread per rank; the cores are split between them
        env.setdefault("OMP_NUM_THREADS", str(max(cores // config.num_processes, 1)))
    offset = run.events.stat().st_size if run.events.is_file() else 0
    process = subprocess.Popen(launch_command(config, run.config), stdin=subprocess.DEVNULL, env=env)
    try:
        while True:
            try:
                code = process.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                if stop_signals.caught and not run.stop_requested():
                    run.request_stop()
    except KeyboardInterrupt:  # a second Ctrl-C: the ranks got it too and abort; do not outlive them
        process.terminate()
        code = process.wait()
    final = last_event(run.read_events(offset)[0], *TERMINAL_EVENTS)
    if final is None:
        run.append_event(
            "error",
            message=f"a training process ended (exit code {code}) before the run finished; see {run.log}",
            exit_code=code,
        )
        return code or 1
    # The run's own verdict: a stop by SIGTERM ends torch elastic's launcher with an exception (exit
    # 1) even though every rank saved and wrote `stopped`, as one process would (exit 0).
    return 0 if final["type"] in ("done", "stopped") else code or 1


# ------------------------------------------------------------------------------ inside each rank
class ReplicaRunFolder(RunFolder):
    """The run folder as a rank other than 0 sees it: read like any other, never written. The engine
    and its callbacks run the same code on every rank; only rank 0's events reach events.jsonl."""

    def append_event(self, event_type: str, **fields: Any) -> dict[str, Any]:
        return {"type": event_type, **fields}

    def request_stop(self) -> None:
        raise AssertionError("a replica rank never writes the run folder")


def run_folder_for_rank(path: str | Path) -> RunFolder:
    return RunFolder(path) if is_main() else ReplicaRunFolder(path)


def check_rank_folder(run: RunFolder) -> None:
    """A rank trains only under the lock its own launcher holds on the folder."""
    from core.lock import lock_holder

    holder = lock_holder(run.path)
    launcher = int(os.environ[LAUNCHER_PID_ENV])
    if holder is None or holder.pid != launcher:
        raise UserInputError(
            f"Run folder {run.path}: this training process was started by pid {launcher}, which does "
            f"not hold the folder's lock; start runs with `python -m core.train CONFIG.yaml`."
        )


def start_process_group(device: str) -> None:
    """Join the ranks' process group now (accelerate's PartialState: gloo on the CPU, NCCL with each
    rank on its own GPU) so the data preparation can already share rank 0's results. Trainer later
    finds the same state. Nothing to do for one process."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState(cpu=device == "cpu")


def _collective_device():
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def agreed_stop_code(code: int) -> int:
    """The largest of every rank's `code` (0 = go on), so all ranks stop at the same step for the
    same reason, whichever rank saw it first; `code` itself with one process."""
    if world_size() == 1:
        return code
    import torch
    import torch.distributed as dist

    value = torch.tensor([code], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return int(value.item())


def from_main(compute: Callable[[], T]) -> T:
    """`compute()` on rank 0, its result handed to every rank: what must be made once (paraphrases
    from an endpoint or a model differ from call to call, and write files) but used by all."""
    if world_size() == 1:
        return compute()
    import torch.distributed as dist

    box = [compute() if is_main() else None]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]
