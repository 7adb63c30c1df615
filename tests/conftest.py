import json
from pathlib import Path

import pytest

from tests.tiny import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama with a ChatML tokenizer, saved as an HF folder."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from core.models import ModelSource, load_tokenizer

    return load_tokenizer(ModelSource(str(tiny_model_dir)))


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def qa_records(count: int = 12) -> list[dict]:
    """Short OpenAI-messages conversations a tiny model can fit in a few steps."""
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is the code {i % 4}?"},
                {"role": "assistant", "content": f"The code is {i % 4}{i % 4}."},
            ]
        }
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Twelve short Q&A chats a tiny model fits in a few steps."""
    return write_jsonl(tmp_path_factory.mktemp("data") / "qa.jsonl", qa_records(12))


@pytest.fixture(scope="module")
def one_torch_thread():
    """The tiny model's matmuls are too small to split between threads; on a shared 2-core machine
    two spinning OpenMP threads made a step ~30x slower. One thread here and in the subprocesses."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rebuilt_dropout_inputs(monkeypatch):
    """Every fused LoRA dropout keeps its mask only and rebuilds its input in backward, as on inputs
    above core.lora_dropout.DROPPED_COPY_MAX_ELEMENTS (the tiny model's are all below it)."""
    import core.lora_dropout

    monkeypatch.setattr(core.lora_dropout, "DROPPED_COPY_MAX_ELEMENTS", 0)
