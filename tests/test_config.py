"""TrainConfig: validation that lists every problem, helpful unknown-key errors, overrides, YAML."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from core.config import (
    FIELDS,
    TrainConfig,
    config_from_dict,
    config_to_yaml,
    field_help,
    load_config,
    parse_overrides,
    save_config,
)
from core.errors import UserInputError


def problems_of(values: dict) -> list[str]:
    with pytest.raises(UserInputError) as info:
        config_from_dict(values)
    return info.value.problems


def test_defaults_are_valid_and_every_field_has_help():
    TrainConfig().validate()
    for name in FIELDS:
        assert len(field_help(name)) > 10, name
    assert TrainConfig(per_device_train_batch_size=3, gradient_accumulation_steps=5).effective_batch_size == 15


def test_unknown_key_names_the_nearest_valid_key():
    problems = problems_of({"learning_rat": 1e-4})
    assert problems == ["unknown key 'learning_rat' (did you mean 'learning_rate'?)"]
    assert problems_of({"lora_rnak": 8}) == ["unknown key 'lora_rnak' (did you mean 'lora_rank'?)"]
    # Nothing close: no hint rather than a wrong one.
    assert problems_of({"zzzzqqq": 1}) == ["unknown key 'zzzzqqq'"]


def test_all_problems_are_reported_at_once():
    with pytest.raises(UserInputError) as info:
        config_from_dict(
            {
                "learning_rate": -1,
                "lora_dropout": 1.5,
                "lr_scheduler_type": "wavy",
                "warmup_ratio": 1.0,
                "output_dir": " ",
            },
            source="my.yaml",
        )
    message = str(info.value)
    assert message.startswith("Invalid training config in my.yaml:")
    for expected in (
        "learning_rate must be > 0, got -1",
        "lora_dropout must be in [0, 1), got 1.5",
        "lr_scheduler_type must be one of cosine, linear, constant, constant_with_warmup; got 'wavy'",
        "warmup_ratio must be in [0, 1), got 1",
        "output_dir must not be empty",
    ):
        assert f"  - {expected}" in message.splitlines(), expected
    assert len(info.value.problems) == 5


def test_unknown_keys_type_errors_and_range_errors_come_together():
    """A typo must not hide the range errors in the same file (fixed: they used to stop at the typo)."""
    problems = problems_of({"learning_rat": 1, "cutoff_len": "abc", "lora_rank": 0})
    assert problems == [
        "unknown key 'learning_rat' (did you mean 'learning_rate'?)",
        "cutoff_len must be an int, got 'abc'",
        "lora_rank must be > 0, got 0",
    ]


@pytest.mark.parametrize(
    "key, raw, expected",
    [
        ("cutoff_len", "abc", "cutoff_len must be an int, got 'abc'"),
        ("cutoff_len", 512.5, "cutoff_len must be an int, got 512.5"),
        ("cutoff_len", True, "cutoff_len must be an int, got True"),
        ("learning_rate", "fast", "learning_rate must be a float, got 'fast'"),
        ("learning_rate", None, "learning_rate must be a float, got None"),
        ("learning_rate", True, "learning_rate must be a float, got True"),
        ("train_on_prompt", "maybe", "train_on_prompt must be a bool, got 'maybe'"),
        ("system_prompt", ["a", "b"], "system_prompt must be a str, got ['a', 'b']"),
    ],
)
def test_type_errors_name_field_type_and_value(key, raw, expected):
    assert problems_of({key: raw}) == [expected]


def test_values_are_coerced_from_yaml_and_text():
    config = config_from_dict(
        {
            "learning_rate": "2e-4",
            "cutoff_len": "512",
            "num_train_epochs": 2,
            "train_on_prompt": "yes",
            "quantization_bit": 4,
            "seed": 7.0,
            "lora_target": ["q_proj", "v_proj"],
        }
    )
    assert config.learning_rate == 2e-4 and isinstance(config.learning_rate, float)
    assert config.cutoff_len == 512 and config.seed == 7
    assert config.num_train_epochs == 2.0 and isinstance(config.num_train_epochs, float)
    assert config.train_on_prompt is True
    assert config.quantization_bit == "4"
    assert config.lora_target == "q_proj,v_proj"
    assert config_from_dict({"quantization_bit": None}).quantization_bit == "none"


def test_parse_overrides_reads_yaml_scalars():
    values = parse_overrides(
        [
            "quantization_bit=4",
            "learning_rate=3e-4",
            "train_on_prompt=true",
            "max_steps=10",
            "lora_target=q_proj,v_proj",
            "output_dir=runs/x y",
            "system_prompt=",
        ]
    )
    assert values == {
        "quantization_bit": 4,
        "learning_rate": "3e-4",
        "train_on_prompt": True,
        "max_steps": 10,
        "lora_target": "q_proj,v_proj",
        "output_dir": "runs/x y",
        "system_prompt": "",
    }
    config = config_from_dict(values)
    assert (config.quantization_bit, config.learning_rate, config.max_steps) == ("4", 3e-4, 10)


def test_parse_overrides_keeps_free_text_as_typed():
    """Fixed: `system_prompt=Note: be brief` was parsed as a YAML mapping, `[x` crashed with a YAMLError."""
    values = parse_overrides(["system_prompt=Note: be brief", "dataset=[x", "seed=~", "system_prompt_2=#1 rule"])
    assert values == {"system_prompt": "Note: be brief", "dataset": "[x", "seed": None, "system_prompt_2": "#1 rule"}
    assert config_from_dict({"system_prompt": values["system_prompt"]}).system_prompt == "Note: be brief"


def test_parse_overrides_rejects_pairs_without_equals():
    with pytest.raises(UserInputError) as info:
        parse_overrides(["max_steps=3", "learning_rate", "quantization_bit 4"])
    assert info.value.problems == ["got 'learning_rate'", "got 'quantization_bit 4'"]
    assert "key=value" in str(info.value)


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(
        learning_rate=1.5e-5,
        quantization_bit="4",
        system_prompt="Du bist: 小助手 🙂\nline 2",
        lora_target="q_proj,v_proj",
        train_on_prompt=True,
        max_steps=12,
        val_size=0.1,
        dataset="yes",
        output_dir="runs/null",
    )
    path = tmp_path / "config.yaml"
    save_config(config, path)
    loaded = load_config(path)
    assert loaded == config
    # every field is written, so the file documents the whole run
    assert set(yaml.safe_load(path.read_text(encoding="utf-8"))) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert config_from_dict(yaml.safe_load(config_to_yaml(TrainConfig()))) == TrainConfig()


def test_load_config_overrides_and_ignored_keys(tmp_path):
    path = tmp_path / "preset.yaml"
    path.write_text("description: a preset\nlearning_rate: 1e-4\nlora_rank: 16\n", encoding="utf-8")
    config = load_config(path, {"lora_rank": 4})  # a preset's description is ignored by default
    assert (config.learning_rate, config.lora_rank) == (1e-4, 4)
    with pytest.raises(UserInputError, match="unknown key 'description'"):
        load_config(path, ignore_keys=())


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, "Config file not found"),
        ("learning_rate: [1, 2\n", "is not valid YAML"),
        ("- a\n- b\n", "must hold a mapping of key: value, got a list"),
    ],
)
def test_bad_config_files(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(UserInputError) as info:
        load_config(path)
    assert expected in str(info.value) and "bad.yaml" in str(info.value)


def test_empty_config_file_gives_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_config(path) == TrainConfig()


def test_more_validation_rules():
    problems = problems_of(
        {
            "max_steps": 0,
            "val_size": 1,
            "quantization_bit": "16",
            "layerwise_lr": "linear",
            "dataset_format": "csv",
            "loraplus_lr_ratio": -2,
        }
    )
    assert "max_steps must be -1 (use epochs) or >= 1, got 0" in problems
    assert "val_size must be in [0, 1), got 1" in problems
    assert "quantization_bit must be one of none, 4, 8; got '16'" in problems
    assert "layerwise_lr must be one of none, cosine; got 'linear'" in problems
    assert "dataset_format must be one of auto, alpaca, sharegpt, openai; got 'csv'" in problems
    assert "loraplus_lr_ratio must be >= 0, got -2" in problems
    assert problems_of({"num_train_epochs": 0}) == ["num_train_epochs must be > 0 when max_steps is not set, got 0"]
    assert config_from_dict({"num_train_epochs": 0, "max_steps": 5}).max_steps == 5  # epochs unused then


@pytest.mark.parametrize(
    "key",
    [
        "learning_rate",
        "weight_decay",
        "max_grad_norm",
        "loraplus_lr_ratio",
        "num_train_epochs",
        "warmup_ratio",
        "lora_dropout",
        "val_size",
    ],
)
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(key, value):
    problems = problems_of(parse_overrides([f"{key}={value}"]))
    assert any(p.startswith(f"{key} must be a finite number") for p in problems), problems


def test_values_that_can_only_be_typos_are_refused_and_quoted_short():
    problems = problems_of(
        {"lora_rank": 1e308, "learning_rate": 1e6, "system_prompt": "ok", "lr_scheduler_type": "x" * 5000}
    )
    assert any(p.startswith("lora_rank must be <= 65536") and "can only be a typo" in p for p in problems)
    assert any(p.startswith("learning_rate must be <= 1, got 1000000") for p in problems)
    long = next(p for p in problems if p.startswith("lr_scheduler_type"))
    assert len(long) < 300 and "(5002 characters)" in long


def test_the_registry_describes_every_field():
    """Help in both languages, a label, a page group; choices are what validation accepts."""
    from core.config import GROUPS, SPECS, TYPES

    for name, spec in SPECS.items():
        assert spec.help and spec.help_zh and spec.label and spec.label_zh and spec.group in GROUPS, name
        assert TYPES[name] in (bool, int, float, str), name
        for choice in spec.choices:  # (the endpoint keys an augment generator needs are given)
            config_from_dict({name: choice, "augment_base_url": "http://127.0.0.1:1/v1", "augment_model": "m"})
    assert problems_of({"quantization_bit": "16"}) == ["quantization_bit must be one of none, 4, 8; got '16'"]


def test_optimisation_switches_are_config_fields():
    config = config_from_dict(parse_overrides(["packing=false", "trained_tokens_loss=off", "fused_lora_dropout=no"]))
    assert (config.packing, config.trained_tokens_loss, config.fused_lora_dropout) == (False, False, False)


def test_an_augment_generator_names_the_keys_it_needs():
    assert problems_of({"augment": "openai"}) == [
        "augment_base_url must be set when augment is openai",
        "augment_model must be set when augment is openai",
    ]
    assert problems_of({"augment": "local"}) == ["augment_model must be set when augment is local"]
