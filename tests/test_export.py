"""core.export: the adapter zip, and a merged model that computes what base + adapter computes."""

import zipfile

import pytest

from core.errors import UserInputError
from core.export import merge_adapter, zip_adapter
from tests.test_chat import make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    return make_run(tmp_path_factory.mktemp("export") / "demo", tiny_model_dir, seed=3)


def test_zip_holds_the_adapter_folder(run):
    path = zip_adapter(run)
    assert path == run / "export" / "demo-adapter.zip"
    names = zipfile.ZipFile(path).namelist()
    assert "demo-adapter/adapter_config.json" in names
    assert "demo-adapter/adapter_model.safetensors" in names
    assert any(name.startswith("demo-adapter/tokenizer") for name in names)


def test_merged_model_matches_base_plus_adapter(run, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged_dir = merge_adapter(run)
    assert merged_dir == run / "merged" and (merged_dir / "config.json").is_file()
    assert not list(run.glob("merged.*"))  # no temporary folder left behind
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert tokenizer.chat_template
    ids = tokenizer("What is the return policy?", return_tensors="pt").input_ids
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        expected, got, plain = reference(ids).logits, merged(ids).logits, base(ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter did change something
    assert merge_adapter(run) == merged_dir  # exporting again replaces the folder


def test_a_run_without_adapter_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text("model_name_or_path: default\n")
    with pytest.raises(UserInputError, match="no adapter yet"):
        zip_adapter(tmp_path)
    with pytest.raises(UserInputError, match="no adapter yet"):
        merge_adapter(tmp_path)
