from pathlib import Path

import pytest

from core.errors import UserInputError
from core.presets import DEFAULT_PRESET, list_presets, load_preset

REQUIRED = {"cpu-quick-demo", "persona-bot", "qlora-7b-8gb", "small-data", "lora-plus"}


def test_every_preset_loads_validates_and_explains_itself():
    presets = list_presets()
    assert REQUIRED <= set(presets)
    assert DEFAULT_PRESET in presets
    for name, description in presets.items():
        config = load_preset(name)  # validates: raises on any bad value or unknown key
        assert len(description) > 80, f"{name}: description should say why its numbers are what they are"
        assert Path(config.dataset).is_file(), f"{name}: dataset {config.dataset} missing"


def test_preset_specifics():
    assert load_preset("qlora-7b-8gb").quantization_bit == "4"
    assert load_preset("qlora-7b-8gb").per_device_train_batch_size == 1
    assert load_preset("qlora-7b-8gb").gradient_checkpointing is True
    lora_plus = load_preset("lora-plus")
    assert lora_plus.loraplus_lr_ratio == 16 and lora_plus.learning_rate == pytest.approx(1e-4)
    assert load_preset("cpu-quick-demo").model_name_or_path == "default"


def test_a_preset_file_is_a_cli_config(tmp_path):
    """README: `python -m core.train presets/cpu-quick-demo.yaml output_dir=...` must just work."""
    from core.config import load_config
    from core.presets import PRESETS_DIR

    config = load_config(PRESETS_DIR / "cpu-quick-demo.yaml", {"output_dir": str(tmp_path)})
    assert config.model_name_or_path == "default" and config.output_dir == str(tmp_path)


def test_overrides_and_unknown_preset():
    assert load_preset("small-data", {"learning_rate": 3e-4}).learning_rate == 3e-4
    with pytest.raises(UserInputError, match="Unknown preset 'nope'; available: .*cpu-quick-demo"):
        load_preset("nope")
