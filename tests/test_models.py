"""Model resolution: one-line errors a user can act on; dtype and quantization choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core import models
from core.errors import UserInputError
from core.models import ModelSource, compute_dtype, load_model, load_tokenizer, quantization_config, resolve_model


def one_line_error(name: str) -> str:
    with pytest.raises(UserInputError) as info:
        resolve_model(name)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path):
    missing = tmp_path / "no-such-model"
    assert one_line_error(str(missing)) == f"Model folder not found: {missing}"


def test_folder_without_config_json(tmp_path):
    assert one_line_error(str(tmp_path)) == (
        f"{tmp_path} is a folder but has no config.json: not a Hugging Face model folder"
    )


def test_missing_gguf(tmp_path):
    missing = tmp_path / "model.Q4_K_M.gguf"
    assert one_line_error(str(missing)) == f"GGUF file not found: {missing}"


def test_local_folder_resolves_to_itself(tiny_model_dir):
    assert resolve_model(f"  {tiny_model_dir}  ") == ModelSource(str(tiny_model_dir))


def test_hub_id_offline_says_to_use_a_local_folder_or_default(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time
    source = resolve_model("someone-unknown/no-such-model")
    assert source == ModelSource("someone-unknown/no-such-model")  # looks like a hub id
    for load in (load_tokenizer, load_model):
        with pytest.raises(UserInputError) as info:
            load(source)
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith("Could not load model 'someone-unknown/no-such-model': no local folder")
        assert message.endswith("Without network access use a local folder, a .gguf file or 'default'.")


def test_broken_local_folder_names_the_folder_not_the_hub(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")  # config, but no tokenizer or weights
    for load in (load_tokenizer, load_model):  # fixed: transformers' ValueError went out as a traceback
        with pytest.raises(UserInputError) as info:
            load(resolve_model(str(tmp_path)))
        message = str(info.value)
        assert message.startswith(f"Could not load model '{tmp_path}': ")
        assert "\n" not in message and "hub" not in message
    assert "model_type" in message  # the model's own reason is kept


def test_tokenizer_without_chat_template_is_refused(tmp_path, tiny_model_dir):
    import shutil

    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "plain"))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = folder / "tokenizer_config.json"
    import json

    values = json.loads(config.read_text(encoding="utf-8"))
    values.pop("chat_template", None)
    config.write_text(json.dumps(values), encoding="utf-8")
    with pytest.raises(UserInputError, match="has no chat template: pick an instruct/chat model"):
        load_tokenizer(ModelSource(str(folder)))


def test_compute_dtype_and_quantization_config():
    assert compute_dtype("cpu") is torch.float32
    assert compute_dtype("mps") is torch.float16
    assert quantization_config("none", "cpu") is None
    four = quantization_config("4", "cpu")
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4" and four.bnb_4bit_use_double_quant
    assert four.bnb_4bit_compute_dtype is torch.float32  # bf16 on a CPU without it is ~18x slower
    assert quantization_config("8", "cpu").load_in_8bit


def test_load_model_on_cpu(tiny_model_dir):
    model = load_model(ModelSource(str(tiny_model_dir)), device="cpu")
    assert model.dtype is torch.float32 and model.device.type == "cpu"
    assert model.config.num_hidden_layers == 2


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    assert models.cache_dir() == tmp_path


def test_default_model_resolves_with_chat_template_and_round_trips():
    """The one test that uses the real embedded model (converted once into the cache, ~20 s if new)."""
    from core.template import ChatEncoder

    source = resolve_model("default")
    assert (Path(source.path) / "config.json").is_file() and source.gguf_file is None
    assert resolve_model("default") == source  # cached: no second conversion
    tokenizer = load_tokenizer(source)
    assert tokenizer.is_fast and "<|im_start|>" in tokenizer.chat_template
    for text in ("What is the capital of France?", "Grüße, 你好 🙂\n  two spaces"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    # The real template masks the same way: each reply + <|im_end|>, nothing else.
    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
    encoder = ChatEncoder(tokenizer)
    assert encoder.render(conversation) == tokenizer.apply_chat_template(conversation, tokenize=False)
    [example] = encoder.encode([conversation])
    trained = [int(t) for t, keep in zip(example.input_ids, example.trained) if keep]
    expected = (
        tokenizer("Hello! How can I help?<|im_end|>", add_special_tokens=False)["input_ids"]
        + tokenizer("Paris.<|im_end|>", add_special_tokens=False)["input_ids"]
    )
    assert trained == expected
