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
    return [{"messages": [{"role": "user", "content": f"What is the code {i % 4}?"},
                          {"role": "assistant", "content": f"The code is {i % 4}{i % 4}."}]}
            for i in range(count)]
