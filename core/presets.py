"""Presets: YAML files in presets/ holding a TrainConfig subset and a `description`."""

from __future__ import annotations

from typing import Any

from core.config import TrainConfig, config_from_dict, read_yaml_mapping
from core.errors import UserInputError
from core.paths import PRESETS_DIR, resolve_dataset

DEFAULT_PRESET = "cpu-quick-demo"


def list_presets() -> dict[str, str]:
    """name -> description, in name order."""
    return {
        path.stem: str(read_yaml_mapping(path).get("description", "")).strip()
        for path in sorted(PRESETS_DIR.glob("*.yaml"))
    }


def preset_values(name: str) -> dict[str, Any]:
    """The preset's TrainConfig keys; its dataset path resolved (core.paths), so a preset works
    whatever the current directory."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserInputError(f"Unknown preset '{name}'; available: {', '.join(list_presets())}")
    values = {k: v for k, v in read_yaml_mapping(path).items() if k != "description"}
    if values.get("dataset"):
        values["dataset"] = str(resolve_dataset(values["dataset"]))
    return values


def load_preset(name: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    return config_from_dict({**preset_values(name), **(overrides or {})}, source=f"preset {name}")
