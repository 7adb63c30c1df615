"""What the web UI tests share: the form a tiny run fills in, a free port, waiting, and names for
the outputs an endpoint returns to gradio_client (a tuple in its outputs' order)."""

from __future__ import annotations

import socket
import time
from typing import Any

from core.config import TrainConfig
from webui.tabs import train

DEADLINE_S = 240  # a tiny run's first steps on two busy cores, or the server's start


def form(model, dataset, run_name: str = "", **overrides) -> dict[str, Any]:
    """The train form by field name (what the config handlers and endpoints take besides `lang`):
    TrainConfig defaults plus settings that make a tiny run long enough to watch."""
    values = TrainConfig(
        max_steps=1000,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        cutoff_len=64,
        lora_rank=4,
        lora_alpha=8,
        save_steps=1000,
    ).to_dict()
    values.update(model_name_or_path=str(model), dataset=str(dataset), run_name=run_name, **overrides)
    return {name: values[name] for name in train.FORM}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, interval_s: float = 0.3, timeout_s: float = DEADLINE_S):
    """predicate()'s first true value, polled until timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out waiting for {what}")


def output_names(demo, ctx, api_name: str) -> list[str]:
    """The component names of an endpoint's outputs, in the order gradio_client returns them: those
    with a value in the API (not buttons, not session state)."""
    names = {component._id: name for name, component in ctx.c.items()}
    in_api = {block["id"] for block in demo.config["components"] if not block.get("skip_api")}
    event = next(d for d in demo.config["dependencies"] if d.get("api_name") == api_name)
    return [names[block_id] for block_id in event["outputs"] if block_id in in_api]
