"""TrainConfig: the one description of a run, from the page or a YAML file to the trainer.

Field names follow LLaMA-Factory's YAML keys so its users feel at home. Every field carries a help
text (shown by the web UI and `--help`), and `validate()` reports every problem at once.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import UserInputError

SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
DATASET_FORMATS = ("auto", "alpaca", "sharegpt", "openai")
QUANTIZATION_BITS = ("none", "4", "8")
LAYERWISE_LR = ("none", "cosine")


def _show(value: Any) -> str:
    """A number as the user wrote it: -1 rather than the coerced -1.0."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _f(default: Any, help_text: str) -> Any:
    """A dataclass field with a help text; mutable defaults are not used in this config."""
    return field(default=default, metadata={"help": help_text})


@dataclass
class TrainConfig:
    # --- model ---
    model_name_or_path: str = _f(
        "default",
        "'default' (embedded SmolLM2-135M-Instruct), a local HF folder, a .gguf file, or a hub id.",
    )
    quantization_bit: str = _f(
        "none", "Load the base model quantized: 'none', '4' (QLoRA nf4, double quant) or '8' (LLM.int8)."
    )
    # --- data ---
    dataset: str = _f("datasets_demo/persona_en.jsonl", "A .json or .jsonl file of chat examples.")
    dataset_format: str = _f("auto", "'auto' (detect), 'alpaca', 'sharegpt' or 'openai' (messages).")
    system_prompt: str = _f(
        "",
        "System prompt put in front of every conversation that has none, in training AND chat. "
        "Empty: the chat template's own default (SmolLM2 and Qwen inject one).",
    )
    train_on_prompt: bool = _f(False, "Train on every token, not only the assistant replies.")
    cutoff_len: int = _f(1024, "Maximum tokens per example; longer examples are truncated.")
    val_size: float = _f(0.0, "Share of examples held out for eval loss (0 = none, e.g. 0.1).")
    # --- optimisation ---
    learning_rate: float = _f(2e-4, "Peak learning rate of the LoRA weights (lora_A).")
    num_train_epochs: float = _f(3.0, "Passes over the training data.")
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1 = use num_train_epochs).")
    per_device_train_batch_size: int = _f(2, "Examples per forward pass on one device.")
    gradient_accumulation_steps: int = _f(4, "Forward passes summed into one optimizer step.")
    lr_scheduler_type: str = _f("cosine", "cosine, linear, constant or constant_with_warmup.")
    warmup_ratio: float = _f(0.1, "Share of total steps spent warming the lr up linearly from 0.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Clip the gradient norm to this value (0 = no clipping).")
    loraplus_lr_ratio: float = _f(
        0.0, "LoRA+: lora_B learns at learning_rate x this ratio (0 = off; people use 8-16)."
    )
    layerwise_lr: str = _f(
        "none", "'cosine': scale each LoRA layer's lr by a cosine of its depth (bottom smallest)."
    )
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward: less memory, slower.")
    packing: bool = _f(
        True, "Concatenate each batch's examples into one row without padding: faster, same loss (each "
              "example attends only to itself). Turn off for a model whose own code ignores position_ids."
    )
    seed: int = _f(42, "Random seed for data order, split and LoRA init.")
    # --- LoRA ---
    lora_rank: int = _f(8, "Rank r of the LoRA update matrices.")
    lora_alpha: int = _f(16, "LoRA scaling numerator: the update is scaled by alpha / r.")
    lora_dropout: float = _f(0.05, "Dropout on the LoRA input.")
    lora_target: str = _f(
        "all", "'all' (every linear layer but the head) or comma-separated module names (q_proj,v_proj)."
    )
    # --- run folder and logging ---
    output_dir: str = _f("runs/run", "The run folder: config, events, log, checkpoints, adapter.")
    logging_steps: int = _f(1, "Write a step event every this many optimizer steps.")
    eval_steps: int = _f(20, "Evaluate on the held-out split every this many steps.")
    save_steps: int = _f(50, "Save a resumable checkpoint every this many steps.")
    save_total_limit: int = _f(2, "Keep at most this many checkpoints.")
    resume: bool = _f(False, "Continue from the newest complete checkpoint in output_dir.")

    def validate(self) -> None:
        """Raise UserInputError listing every problem, or return."""
        problems: list[str] = []

        def positive(name: str) -> None:
            value = getattr(self, name)
            if not value > 0:
                problems.append(f"{name} must be > 0, got {_show(value)}")

        def non_negative(name: str) -> None:
            value = getattr(self, name)
            if value < 0:
                problems.append(f"{name} must be >= 0, got {_show(value)}")

        def one_of(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

        for name in ("learning_rate", "cutoff_len", "per_device_train_batch_size",
                     "gradient_accumulation_steps", "lora_rank", "lora_alpha", "logging_steps",
                     "eval_steps", "save_steps", "save_total_limit"):
            positive(name)
        for name in ("weight_decay", "max_grad_norm", "loraplus_lr_ratio"):
            non_negative(name)
        if self.max_steps <= 0 and not self.num_train_epochs > 0:
            problems.append(f"num_train_epochs must be > 0 when max_steps is not set, got {_show(self.num_train_epochs)}")
        if self.max_steps == 0 or self.max_steps < -1:
            problems.append(f"max_steps must be -1 (use epochs) or >= 1, got {self.max_steps}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup_ratio must be in [0, 1), got {_show(self.warmup_ratio)}")
        if not 0 <= self.lora_dropout < 1:
            problems.append(f"lora_dropout must be in [0, 1), got {_show(self.lora_dropout)}")
        if not 0 <= self.val_size < 1:
            problems.append(f"val_size must be in [0, 1), got {_show(self.val_size)}")
        one_of("lr_scheduler_type", SCHEDULERS)
        one_of("dataset_format", DATASET_FORMATS)
        one_of("quantization_bit", QUANTIZATION_BITS)
        one_of("layerwise_lr", LAYERWISE_LR)
        for name in ("model_name_or_path", "dataset", "output_dir", "lora_target"):
            if not str(getattr(self, name)).strip():
                problems.append(f"{name} must not be empty")
        if problems:
            raise UserInputError("Invalid training config:", problems)

    # --- derived numbers the advisor, the UI and the trainer agree on ---
    @property
    def effective_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(TrainConfig)}


def field_help(name: str) -> str:
    return FIELDS[name].metadata["help"]


def _coerce(name: str, raw: Any, problems: list[str]) -> Any:
    """Turn a YAML or command-line value into the field's type, or record why not."""
    kind = FIELDS[name].type
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if kind == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        # str fields: YAML may read `quantization_bit: 4` as an int, `none` as a string, `null` as None.
        if raw is None:
            return "none" if name == "quantization_bit" else ""
        if name == "lora_target" and isinstance(raw, list) and all(isinstance(t, str) for t in raw):
            return ",".join(raw)  # `lora_target: [q_proj, v_proj]` means the same as "q_proj,v_proj"
        if isinstance(raw, (list, dict)):  # str() would turn a list into "['a', 'b']" silently
            raise ValueError
        return str(raw)
    except (TypeError, ValueError):
        article = "an" if kind == "int" else "a"
        problems.append(f"{name} must be {article} {kind}, got {raw!r}")
        return FIELDS[name].default


def config_from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build and validate a TrainConfig; unknown keys are errors that name the nearest valid key."""
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), list(FIELDS), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown key '{key}'{hint}")
            continue
        kwargs[key] = _coerce(key, raw, problems)
    # Validate even when keys or types were wrong (those fields hold their defaults), so one
    # message lists every problem in the file, not only the first kind found.
    config = TrainConfig(**kwargs)
    try:
        config.validate()
    except UserInputError as err:
        problems += err.problems
    if problems:
        raise UserInputError(f"Invalid training config in {source}:", problems)
    return config


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` command-line overrides; values are parsed as YAML scalars (3e-4, true, 8)."""
    values: dict[str, Any] = {}
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise UserInputError("Overrides must look like key=value:", [f"got {p!r}" for p in bad])
    for pair in pairs:
        key, _, text = pair.partition("=")
        values[key.strip()] = _scalar(text)
    return values


def _scalar(text: str) -> Any:
    """A YAML scalar (3e-4, true, 8, null, 'quoted'); any other text is kept as typed, since a
    free-text value like `system_prompt=Note: be brief` (a YAML mapping), `#1 rule` (a YAML
    comment) or `[x` (a YAML error) means the text itself."""
    if not text.strip():
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if value is None:
        return None if text.strip() in ("null", "Null", "NULL", "~") else text
    return value if isinstance(value, (bool, int, float, str)) else text


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"Config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserInputError(f"{path} is not valid YAML:", [str(err).splitlines()[0]]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserInputError(f"{path} must hold a mapping of key: value, got a {type(data).__name__}")
    return data


def load_config(path: str | Path, overrides: dict[str, Any] | None = None,
                ignore_keys: tuple[str, ...] = ("description",)) -> TrainConfig:
    """Load a YAML config. A preset file is a valid config too: its `description` is for people."""
    values = {k: v for k, v in read_yaml_mapping(path).items() if k not in ignore_keys}
    values.update(overrides or {})
    return config_from_dict(values, source=str(path))


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


def save_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(config_to_yaml(config), encoding="utf-8")
