"""What the tabs share: the server's runner and chat models, named components, and the labels.

Each tab module has `build(ctx)` (lays out components, registers their labels and the components
other tabs need in ctx.c) and `wire(ctx)` (attaches events once every tab exists, so the data tab
can set the train tab's cutoff_len). Its handlers are plain functions taking ctx and values, so the
tests call them without a browser.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from core.chat import ChatModels
from webui import i18n
from webui.runner import Runner


@dataclass
class AppContext:
    runs_dir: Path
    runner: Runner
    chat: ChatModels
    c: dict[str, Any] = field(default_factory=dict)  # components other tabs use, by name
    labels: list[tuple[Any, str, str]] = field(default_factory=list)  # (component, kind, key)

    @classmethod
    def create(cls, runs_dir: str | Path) -> AppContext:
        runner = Runner(runs_dir)
        return cls(runs_dir=runner.runs_dir, runner=runner, chat=ChatModels())

    def text(self, component, key: str):
        """Register a component whose label (value, for buttons and markdown) is TEXT[key]."""
        kind = "value" if isinstance(component, (gr.Button, gr.Markdown)) else "label"
        self.labels.append((component, kind, key))
        return component

    def field(self, component, name: str):
        """Register a TrainConfig field's component: label and help text from i18n."""
        self.labels.append((component, "field", name))
        return component


def relabel(ctx: AppContext, lang: str) -> list[Any]:
    """One update per registered component, in ctx.labels order: the page in `lang`."""
    updates = []
    for _, kind, key in ctx.labels:
        if kind == "value":
            updates.append(gr.update(value=i18n.t(key, lang)))
        elif kind == "field":
            updates.append(gr.update(label=i18n.field_label(key, lang), info=i18n.field_info(key, lang)))
        else:
            extra = {}
            if i18n.has(key + ".info"):
                extra["info"] = i18n.t(key + ".info", lang)
            if i18n.has(key + ".placeholder"):
                extra["placeholder"] = i18n.t(key + ".placeholder", lang)
            updates.append(gr.update(label=i18n.t(key, lang), **extra))
    return updates


def error_html(title: str, detail: str = "") -> str:
    """A red box with a title and the engine's message as preformatted text (never a traceback)."""
    body = f"<pre>{html.escape(detail)}</pre>" if detail else ""
    return f'<div class="lt-error"><b>{html.escape(title)}</b>{body}</div>'


def note_html(text: str) -> str:
    return f'<div class="lt-note">{html.escape(text)}</div>'
