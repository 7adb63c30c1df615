"""Small datasets shaped like LLaMA-Factory's demo data (written here, not copied), and its registry."""

from __future__ import annotations

import json
from pathlib import Path

IDENTITY = [
    {"instruction": "hi", "input": "", "output": "Hello! I am {{name}}, an AI assistant developed by {{author}}."},
    {"instruction": "Who are you?", "input": "", "output": "I am {{name}}, made by {{author}}."},
    {"instruction": "Translate this sentence.", "input": "Bonjour", "output": "Hello."},
]
CHAT = [  # sharegpt with OpenAI-like tags and a system column, as people register their own chats
    {
        "messages": [
            {"role": "user", "content": f"What is the code {i}?"},
            {"role": "assistant", "content": f"The code is {i}{i}."},
        ],
        "system_prompt": "Be brief.",
    }
    for i in range(4)
]
TOOLCALL = [  # glaive-style: function_call / observation turns and a tools column
    {
        "conversations": [
            {"from": "human", "value": "What is 2 plus 3?"},
            {"from": "function_call", "value": '{"name": "add", "arguments": {"a": 2, "b": 3}}'},
            {"from": "observation", "value": '{"result": 5}'},
            {"from": "gpt", "value": "2 plus 3 is 5."},
        ],
        "tools": '[{"name": "add", "description": "Add two numbers", "parameters": {"type": "object", '
        '"properties": {"a": {"type": "number"}, "b": {"type": "number"}}}}]',
    }
]
REGISTRY = {
    "identity": {"file_name": "identity.json"},
    "chat_demo": {
        "file_name": "chat_demo.jsonl",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "system": "system_prompt"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    },
    "toolcall_demo": {
        "file_name": "toolcall_demo.json",
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "tools": "tools"},
    },
    "hub_only": {"hf_hub_url": "someone/some-dataset"},
}


def write_lf_data(folder: Path, registry: dict | None = None) -> Path:
    """A LLaMA-Factory `data` folder: dataset_info.json and the files it registers."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "identity.json").write_text(json.dumps(IDENTITY, ensure_ascii=False), encoding="utf-8")
    (folder / "chat_demo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CHAT), encoding="utf-8")
    (folder / "toolcall_demo.json").write_text(json.dumps(TOOLCALL), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps(registry or REGISTRY, indent=2), encoding="utf-8")
    return folder


def lf_yaml(model_dir: Path, data_dir: Path, output_dir: Path, **values) -> dict:
    """A LoRA SFT config written as LLaMA-Factory's examples write it, made small and fast."""
    config = {
        "model_name_or_path": str(model_dir),
        "trust_remote_code": True,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 4,
        "lora_target": "all",
        "dataset": "identity",
        "dataset_dir": str(data_dir),
        "template": "qwen",
        "cutoff_len": 256,
        "max_samples": 1000,
        "overwrite_cache": True,
        "preprocessing_num_workers": 16,
        "output_dir": str(output_dir),
        "logging_steps": 1,
        "save_steps": 500,
        "plot_loss": True,
        "overwrite_output_dir": True,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3,
        "max_steps": 2,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.1,
        "bf16": True,
        "ddp_timeout": 180000000,
        **values,
    }
    return config
