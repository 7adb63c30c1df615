"""What the tabs share: the server's runner and chat models, every component by name, the labels.

Each tab module has `build(ctx)` (lays out components and registers each under a name in ctx.c: a
TrainConfig field under its config key, so `learning_rate` is the same word in the YAML, the form
and the handlers) and `wire(ctx)` (attaches events once every tab exists, so the data tab can set
the train tab's cutoff_len). Events are wired by name with `ctx.listen`: a handler is a plain
function that takes the input values as keyword arguments and returns (or, to stream, yields) a
dict {component name: value or gr.update(...)}; a name it leaves out keeps its value. The tests
call the handlers without a browser and read their results by name.
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from core.chat import ChatModels
from core.config import SPECS, TYPES
from webui import i18n
from webui.runner import Runner

Updates = dict[str, Any]  # what a handler returns: component name -> value or gr.update(...)
PROGRESS_BAR = gr.Progress()  # the default by which gradio knows a parameter wants each event's progress bar


@dataclass
class AppContext:
    runs_dir: Path
    runner: Runner
    chat: ChatModels
    page: gr.Blocks  # the page itself, for its load event
    c: dict[str, Any] = field(default_factory=dict)  # every component the tabs name, by name
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (kind, i18n key)

    @classmethod
    def create(cls, runs_dir: str | Path, page: gr.Blocks) -> AppContext:
        runner = Runner(runs_dir)
        return cls(runs_dir=runner.runs_dir, runner=runner, chat=ChatModels(), page=page)

    # -------------------------------------------------------------------------------- registering
    def add(self, name: str, component, text: str | None = None):
        """Register `component` as ctx.c[name]; `text` is the i18n key of its label (of its value
        for buttons and markdown), which a language switch changes."""
        if name in self.c:
            raise ValueError(f"two components named {name!r}")
        self.c[name] = component
        if text is not None:
            kind = "value" if isinstance(component, (gr.Button, gr.Markdown)) else "label"
            self.labels[name] = (kind, text)
        return component

    def text(self, component, key: str):
        """A component that only carries a text (a heading, a tab): registered under its i18n key."""
        return self.add(key, component, text=key)

    def field(self, name: str, value: Any, component: type | None = None, register_as: str | None = None, **props):
        """A TrainConfig field's component, from its registry entry: label, a help line that starts
        with the config key, choices, and elem_id lt-<name>. `component` and `props` override the
        kind the field's type picks (a dropdown for choices, a checkbox for bools, a number, a text).
        `register_as` registers it under another name (elem_id lt-<register_as>): a second component
        for a key the Train tab's form already holds, e.g. the data tab's augmentation options."""
        spec, kind = SPECS[name], TYPES[name]
        register_as = register_as or name
        if component is None:
            component = (
                gr.Dropdown
                if spec.choices
                else gr.Checkbox
                if kind is bool
                else gr.Number
                if kind in (int, float)
                else gr.Textbox
            )
        defaults: dict[str, Any] = {
            "label": i18n.field_label(name),
            "info": i18n.field_info(name),
            "value": value,
            "elem_id": f"lt-{register_as}",
        }
        if spec.choices:
            defaults["choices"] = list(spec.choices)
        if kind is int and component is gr.Number:
            defaults["precision"] = 0
        self.add(register_as, component(**{**defaults, **props}))
        self.labels[register_as] = ("field", name)
        return self.c[register_as]

    # ------------------------------------------------------------------------------------- wiring
    def listen(
        self,
        event: Callable | Sequence[Callable],
        handler: Callable,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        **event_kwargs,
    ):
        """Attach `handler` to `event` (e.g. ctx.c["start"].click, or a list of events), by name.

        The handler is called with the values of `inputs` as keyword arguments and returns, or
        yields one after another to stream, a dict keyed by names in `outputs`; a name it leaves out
        keeps its value. A handler (not a generator) with a `progress` parameter gets the event's
        progress bar there, a gr.Progress (call it with (done, total) and a desc). `event_kwargs` go
        to gradio (api_name, trigger_mode, ...). The API takes the inputs by name too:
        gradio_client's predict(lang="en", ..., api_name=...). Returns the event, for .then().
        """
        unknown = [name for name in (*inputs, *outputs) if name not in self.c]
        if unknown:
            raise KeyError(f"no component named {', '.join(map(repr, unknown))}")
        allowed = set(outputs)

        def by_component(updates: Updates) -> dict[Any, Any]:
            stray = set(updates) - allowed
            if stray:
                raise KeyError(
                    f"{getattr(handler, '__name__', handler)} returned {sorted(stray)}, "
                    f"which are not among its outputs {list(outputs)}"
                )
            if not updates and outputs:  # gradio reads an empty dict as one value: say "unchanged" for one
                return {self.c[outputs[0]]: gr.skip()}
            return {self.c[name]: value for name, value in updates.items()}

        if inspect.isgeneratorfunction(handler):

            def fn(**values):
                for updates in handler(**values):
                    yield by_component(updates)
        elif "progress" in inspect.signature(handler).parameters:

            def fn(progress=PROGRESS_BAR, **values):
                return by_component(handler(progress=progress, **values))
        else:

            def fn(**values):
                return by_component(handler(**values))

        wiring = {
            "fn": fn,
            "inputs_kwargs": {name: self.c[name] for name in inputs},
            "outputs": [self.c[name] for name in outputs],
            **event_kwargs,
        }
        return gr.on(list(event), **wiring) if isinstance(event, Sequence) else event(**wiring)


def relabel(ctx: AppContext, lang: str) -> Updates:
    """The page in `lang`: an update for every component registered with a text or as a field."""
    updates: Updates = {}
    for name, (kind, key) in ctx.labels.items():
        if kind == "value":
            updates[name] = gr.update(value=i18n.t(key, lang))
        elif kind == "field":
            updates[name] = gr.update(label=i18n.field_label(key, lang), info=i18n.field_info(key, lang))
        else:
            extra = {}
            if i18n.has(key + ".info"):
                extra["info"] = i18n.t(key + ".info", lang)
            if i18n.has(key + ".placeholder"):
                extra["placeholder"] = i18n.t(key + ".placeholder", lang)
            updates[name] = gr.update(label=i18n.t(key, lang), **extra)
    return updates


def error_html(title: str, detail: str = "") -> str:
    """A red box with a title and the engine's message as preformatted text (never a traceback)."""
    body = f"<pre>{html.escape(detail)}</pre>" if detail else ""
    return f'<div class="lt-error"><b>{html.escape(title)}</b>{body}</div>'


def note_html(text: str) -> str:
    return f'<div class="lt-note">{html.escape(text)}</div>'
