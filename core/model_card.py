"""The model card (README.md) every export carries: what the model is, what it was trained on and
how, and how well it did, read from the run folder (config.yaml and events.jsonl)."""

from __future__ import annotations

from typing import Any

from core.config import read_yaml_mapping
from core.events import TERMINAL_EVENTS, RunFolder, last_event
from core.models import DEFAULT_MODEL

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct (HuggingFaceTB), the workbench's embedded default model"
DATA_STATS = (  # start-event key, label
    ("dataset", "dataset"),
    ("format", "format"),
    ("examples", "conversations"),
    ("train_examples", "training examples"),
    ("eval_examples", "evaluation examples"),
    ("train_tokens", "training tokens"),
    ("trained_tokens", "trained (assistant) tokens"),
    ("mean_length", "mean length (tokens)"),
    ("max_length", "longest example (tokens)"),
    ("truncated", "truncated at cutoff_len"),
    ("dropped", "dropped (nothing left to train)"),
)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def _results(events: list[dict[str, Any]]) -> list[str]:
    final = last_event(events, *TERMINAL_EVENTS)
    if final is None:
        return ["- the run has no final event yet (still training, or killed)"]
    lines = [
        f"- status: {final['type']} at step {_value(final.get('step'))} of {_value(final.get('total_steps'))}",
        f"- final training loss: {_value(final.get('final_loss'))}",
        f"- final evaluation loss: {_value(final.get('final_eval_loss'))}",
    ]
    tuned = next((e for e in reversed(events) if e.get("type") == "probe" and e.get("model") == "tuned"), None)
    if tuned is not None:
        base = next((e for e in events if e.get("type") == "probe" and e.get("model") == "base"), None)
        line = f"- fact-probe recall: {tuned['hits']}/{tuned['n']} ({tuned['recall']:.0%}) at step {tuned.get('step')}"
        if base is not None:
            line += f"; the base model: {base['hits']}/{base['n']} ({base['recall']:.0%})"
        if final.get("adapter_step") is not None:
            line += f"; the exported adapter is the one from step {final['adapter_step']}"
        lines.append(line)
    return lines


def model_card(run: RunFolder, what: str, usage: list[str]) -> str:
    """Markdown for README.md: `what` names the export, `usage` are lines on how to use it."""
    config = read_yaml_mapping(run.config) if run.config.is_file() else {}
    events = run.all_events()
    base = str(config.get("model_name_or_path", DEFAULT_MODEL))
    start = last_event(events, "start") or {}
    lines = [
        f"# {run.path.name}: {what}",
        "",
        f"A LoRA fine-tune made with LoRA Tailor. Base model: `{base}`"
        + (f" — {DEFAULT_MODEL_NAME}." if base == DEFAULT_MODEL else "."),
        "",
        "## Use",
        "",
        *usage,
        "",
        "## Data",
        "",
        *(f"- {label}: {_value(start[key])}" for key, label in DATA_STATS if key in start),
        *([] if start else ["- the run has no start event: no data statistics"]),
        "",
        "## Results",
        "",
        *_results(events),
        "",
        "## Training configuration (config.yaml)",
        "",
        "```yaml",
        (run.config.read_text(encoding="utf-8").rstrip() if run.config.is_file() else "# no config.yaml"),
        "```",
        "",
    ]
    return "\n".join(lines)
