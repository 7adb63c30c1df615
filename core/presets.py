"""Presets: YAML files in presets/ holding a TrainConfig subset and a `description`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from core.config import TrainConfig, config_from_dict, read_yaml_mapping
from core.errors import UserInputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PRESETS_DIR = PROJECT_ROOT / "presets"
DEFAULT_PRESET = "cpu-quick-demo"


def list_presets() -> dict[str, str]:
    """name -> description, in name order."""
    return {path.stem: str(read_yaml_mapping(path).get("description", "")).strip()
            for path in sorted(PRESETS_DIR.glob("*.yaml"))}


def preset_values(name: str) -> dict[str, Any]:
    """The preset's TrainConfig keys; a relative dataset path is taken from the project root, so a
    preset works whatever the current directory."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserInputError(f"Unknown preset '{name}'; available: {', '.join(list_presets())}")
    values = {k: v for k, v in read_yaml_mapping(path).items() if k != "description"}
    dataset = values.get("dataset")
    if dataset and not Path(dataset).is_absolute() and (PROJECT_ROOT / dataset).is_file():
        values["dataset"] = str(PROJECT_ROOT / dataset)
    return values


def load_preset(name: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    return config_from_dict({**preset_values(name), **(overrides or {})}, source=f"preset {name}")
