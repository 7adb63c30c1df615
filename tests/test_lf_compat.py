"""LLaMA-Factory SFT YAMLs run unchanged: shared keys keep their meaning, LF machinery is ignored
(and said so once), what cannot be honoured is refused with why, and ours -> theirs -> ours holds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core import lf_compat
from core.config import FIELDS, TrainConfig, config_from_dict, load_config
from core.errors import UserInputError
from core.lf_compat import BY_NAME, CHECKED, IGNORED, KEYS, check_template, is_lf_config, to_lf_yaml
from core.paths import PROJECT_ROOT
from core.train import main as train_main
from tests.lf_fixtures import CHAT, IDENTITY, lf_yaml, write_lf_data
from tests.run_helpers import events_by_type

IGNORED_IN_EXAMPLE = [
    "trust_remote_code",
    "do_train",
    "overwrite_cache",
    "preprocessing_num_workers",
    "plot_loss",
    "overwrite_output_dir",
    "report_to",
    "bf16",
    "ddp_timeout",
]


@pytest.fixture
def data(tmp_path):
    return write_lf_data(tmp_path / "data")


def _write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


def _problems(values: dict) -> str:
    with pytest.raises(UserInputError) as err:
        config_from_dict(values)
    return str(err.value)


def test_lf_file_trains_through_the_cli_with_two_registered_datasets(tmp_path, data, tiny_model_dir):
    """The real entry point, as a user runs it: alpaca + sharegpt registry entries, template checked."""
    config = _write(
        tmp_path / "lf_sft.yaml", lf_yaml(tiny_model_dir, data, tmp_path / "run", dataset="identity,chat_demo")
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "core.train", str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("ignored") == 1
    assert f"ignored (they steer only LLaMA-Factory's own machinery): {', '.join(IGNORED_IN_EXAMPLE)}" in result.stderr
    assert "template 'qwen': the tokenizer's own chat template writes a user turn the same way" in result.stderr
    events = events_by_type(tmp_path / "run")
    assert (
        events["start"][0]["examples"] == len(IDENTITY) + len(CHAT)
        and events["start"][0]["format"] == "alpaca+sharegpt"
    )
    assert events["done"][0]["step"] == 2 and (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
    # Keys the file leaves out take LLaMA-Factory's defaults, not ours: the run trains as it would there.
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text(encoding="utf-8"))
    assert written["lora_alpha"] == 8 and written["lora_dropout"] == 0.0 and written["gradient_checkpointing"] is True


def test_qlora_file_maps_quantization_bit_and_trains_4bit_on_the_cpu(
    tmp_path, data, tiny_model_dir, one_torch_thread, capsys
):
    """quantization_bit: 4 (an int in LF files) is our '4': bitsandbytes 4-bit runs on the CPU here."""
    values = lf_yaml(tiny_model_dir, data, tmp_path / "run", quantization_bit=4, quantization_method="bnb")
    assert train_main([str(_write(tmp_path / "qlora.yaml", values))]) == 0
    events = events_by_type(tmp_path / "run")
    assert events["start"][0]["quantization_bit"] == "4" and events["done"][0]["step"] == 2
    assert load_config(tmp_path / "run" / "config.yaml").quantization_bit == "4"


def test_ignored_keys_are_listed_once_even_when_the_run_is_refused(tmp_path, data, capsys):
    values = lf_yaml(tmp_path / "no-such-model", data, tmp_path / "run")
    assert train_main([str(_write(tmp_path / "lf.yaml", values))]) == 2
    err = capsys.readouterr().err
    assert err.count("ignored (") == 1 and all(key in err for key in IGNORED_IN_EXAMPLE)
    assert "Model folder not found" in err


@pytest.mark.parametrize("key", [k.name for k in KEYS if k.kind == CHECKED or k.accepts])
def test_every_refused_value_says_why(key, tmp_path):
    spec = BY_NAME[key]
    bad = "something-else" if spec.accepts and isinstance(spec.accepts[0], str) else 123
    message = _problems({"stage": "sft", "model_name_or_path": "default", "dataset": "x.jsonl", key: bad})
    assert f"{key}: {bad!r} cannot be honoured" in message and spec.note in message


def test_stage_and_finetuning_type_messages():
    message = _problems({"stage": "dpo", "finetuning_type": "full", "model_name_or_path": "m", "dataset": "x.jsonl"})
    assert "stage: 'dpo' cannot be honoured (honoured: 'sft'): only supervised fine-tuning (sft)" in message
    assert "finetuning_type: 'full' cannot be honoured (honoured: 'lora')" in message


def test_unknown_and_missing_keys_in_an_lf_file_are_refused():
    message = _problems({"do_train": True, "neftune_alpha": 5, "learning_rat": 1e-4})
    assert "unknown key 'learning_rat' (did you mean 'learning_rate'?)" in message and "docs/llamafactory.md" in message
    assert "unknown key 'neftune_alpha' (did you mean 'neftune_noise_alpha'?)" in message
    assert "model_name_or_path is required" in message and "dataset is required" in message


def test_lf_defaults_and_notes():
    notes: list[str] = []
    config = config_from_dict(
        {"do_train": True, "model_name_or_path": "m", "dataset": "a", "lora_rank": 16}, notes=notes
    )
    assert (config.lora_alpha, config.learning_rate, config.per_device_train_batch_size) == (32, 5e-5, 8)
    assert (config.lr_scheduler_type, config.warmup_ratio, config.cutoff_len, config.dataset_dir) == (
        "linear",
        0.0,
        2048,
        "data",
    )
    assert notes == [
        "ignored (they steer only LLaMA-Factory's own machinery): do_train",
        "LLaMA-Factory's defaults for keys the file leaves out: lora_alpha=32, lora_dropout=0.0, "
        "gradient_checkpointing=True, dataset_dir=data, cutoff_len=2048, per_device_train_batch_size=8, "
        "gradient_accumulation_steps=1, learning_rate=5e-05, lr_scheduler_type=linear, warmup_ratio=0.0",
    ]


def test_our_own_yaml_reads_exactly_as_before():
    ours = {"dataset": "d.jsonl", "packing": True, "gradient_checkpointing": False, "quantization_bit": 4}
    assert not is_lf_config(ours)
    assert lf_compat.from_lf(ours, [], []) is ours
    config = config_from_dict(ours)
    assert (
        config.packing and not config.gradient_checkpointing and config.learning_rate == FIELDS["learning_rate"].default
    )


def _round_trip(config: TrainConfig) -> TrainConfig:
    text = to_lf_yaml(config)
    values = yaml.safe_load(text)
    assert is_lf_config(values) and values["stage"] == "sft" and values["finetuning_type"] == "lora"
    return config_from_dict(values)


def test_round_trip_ours_theirs_ours():
    assert _round_trip(TrainConfig()) == TrainConfig()
    changed = TrainConfig(
        dataset="identity,chat_demo",
        dataset_dir="data",
        template="qwen",
        quantization_bit="4",
        loraplus_lr_ratio=16.0,
        gradient_checkpointing=False,
        packing=False,
        system_prompt="You are Tailor.",
        max_samples=500,
        num_train_epochs="auto",
        probes="auto",
        layerwise_lr="cosine",
        lora_target="q_proj,v_proj",
        val_size=0.1,
        resume=True,
    )
    assert _round_trip(changed) == changed
    text = to_lf_yaml(changed)
    for line in (
        "quantization_bit: 4",
        "disable_gradient_checkpointing: true",
        "default_system: You are Tailor.",
        "packing: false",
        "loraplus_lr_ratio: 16.0",
        "max_samples: 500",
        "template: qwen",
    ):
        assert line in text.splitlines(), line
    assert "### LoRA Tailor only" in text and "probes: auto" in text


def test_template_check_against_the_tokenizer(tiny_tokenizer):
    assert "writes a user turn the same way" in check_template("qwen", tiny_tokenizer)
    assert check_template("", tiny_tokenizer) == ""
    with pytest.raises(UserInputError) as err:
        check_template("llama3", tiny_tokenizer)
    assert "template 'llama3' does not match the tokenizer's own chat template" in str(err.value)
    assert "<|im_start|>user" in str(err.value) and "remove `template`" in str(err.value)
    with pytest.raises(UserInputError) as err:
        check_template("qwen25", tiny_tokenizer)
    assert "not a LLaMA-Factory template this tool can check" in str(err.value) and "qwen" in str(err.value)


def test_every_ignored_key_changes_nothing():
    base = {"do_train": True, "model_name_or_path": "m", "dataset": "a.jsonl"}
    ignored = {k.name: "anything" for k in KEYS if k.kind == IGNORED}
    assert config_from_dict({**base, **ignored}) == config_from_dict(base)


def test_committed_doc_is_the_generated_table():
    assert (PROJECT_ROOT / lf_compat.DOC_PATH).read_text(encoding="utf-8") == lf_compat.table_markdown()


LF_PYTHON = PROJECT_ROOT / "bench" / ".lf-venv" / "bin" / "python"
LF_PARSE = """
import json, sys, yaml
from llamafactory.hparams import get_train_args
for path in sys.argv[1:]:
  model, data, train, tuning, _ = get_train_args(yaml.safe_load(open(path)))
  print(json.dumps({
    "lora_alpha": tuning.lora_alpha, "lora_dropout": tuning.lora_dropout, "cutoff_len": data.cutoff_len,
    "dataset": ",".join(data.dataset), "dataset_dir": data.dataset_dir, "learning_rate": train.learning_rate,
    "lr_scheduler_type": str(train.lr_scheduler_type.value), "warmup_ratio": train.warmup_ratio,
    "per_device_train_batch_size": train.per_device_train_batch_size,
    "gradient_accumulation_steps": train.gradient_accumulation_steps,
    "gradient_checkpointing": not model.disable_gradient_checkpointing, "quantization_bit": model.quantization_bit,
}))
"""


@pytest.mark.skipif(not (PROJECT_ROOT / "bench" / ".lf-venv" / ".ready").is_file(), reason="python -m bench.lf_venv")
def test_llamafactory_itself_reads_our_yaml_and_its_defaults_as_we_do(tmp_path):
    """LLaMA-Factory 0.9.5's own parser (the benchmarks' peer venv): the LF YAML we write, and a file
    that leaves keys out, give the values our reading gives."""
    minimal = {
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "model_name_or_path": str(tmp_path),
        "dataset": "identity",
        "output_dir": str(tmp_path / "out"),
        "lora_rank": 16,
        "quantization_bit": 4,
    }
    written = config_from_dict(minimal)
    written.template, written.dataset_dir = "qwen", str(tmp_path / "data")
    files = [minimal, yaml.safe_load(to_lf_yaml(written))]
    paths = [str(_write(tmp_path / f"lf{i}.yaml", values)) for i, values in enumerate(files)]
    result = subprocess.run(
        [str(LF_PYTHON), "-c", LF_PARSE, *paths], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(parsed) == len(files)
    for values, theirs in zip(files, parsed):
        ours = config_from_dict(values)
        theirs["quantization_bit"] = str(theirs["quantization_bit"])
        theirs["warmup_ratio"] = theirs["warmup_ratio"] or 0.0  # transformers 5: None is no warmup
        assert theirs == {key: getattr(ours, key) for key in theirs}
