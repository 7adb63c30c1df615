"""Top bar: title, language, model, preset. A preset fills every field of the form, on all tabs."""

from __future__ import annotations

from functools import partial
from typing import Any

import gradio as gr

from core.config import FIELDS, HEADLESS_ONLY
from core.paths import display_path
from core.presets import DEFAULT_PRESET, list_presets, load_preset, preset_values
from webui import i18n
from webui.context import AppContext, Updates, relabel

# Every TrainConfig field the page edits (on the top bar, the data tab or the train form), by config key.
PAGE_FIELDS = [name for name in FIELDS if name not in HEADLESS_ONLY]


def preset_form(name: str) -> dict[str, Any]:
    """What a preset puts in every field the page edits: its value or the TrainConfig default (a
    new preset must not keep a value the previous one set), the dataset as the page shows it."""
    values = load_preset(name).to_dict()
    values["dataset"] = display_path(values["dataset"])
    return {key: values[key] for key in PAGE_FIELDS}


def fill_preset(preset: str) -> Updates:
    """The form from a preset, and its description. The model and the dataset change only when the
    preset names them: switching recipes keeps the user's own model and data."""
    explicit = preset_values(preset)
    form = {
        key: value
        for key, value in preset_form(preset).items()
        if key not in ("model_name_or_path", "dataset") or key in explicit
    }
    return {**form, "preset_desc": list_presets().get(preset, "")}


def build(ctx: AppContext) -> None:
    presets = list_presets()
    with gr.Row(equal_height=True, elem_id="lt-top"):
        with gr.Column(scale=5):
            ctx.text(gr.Markdown(i18n.t("app.title")), "app.title")
            ctx.text(gr.Markdown(i18n.t("app.subtitle"), elem_id="lt-subtitle"), "app.subtitle")
        with gr.Column(scale=1, min_width=160):
            ctx.add(
                "lang",
                gr.Dropdown(
                    choices=i18n.LANGUAGES, value=i18n.DEFAULT_LANGUAGE, label=i18n.t("top.language"), elem_id="lt-lang"
                ),
            )
    with gr.Row(equal_height=True):
        ctx.field("model_name_or_path", preset_form(DEFAULT_PRESET)["model_name_or_path"], scale=3, elem_id="lt-model")
        ctx.add(
            "preset",
            gr.Dropdown(
                choices=list(presets),
                value=DEFAULT_PRESET,
                label=i18n.t("top.preset"),
                info=i18n.t("top.preset.info"),
                scale=2,
                elem_id="lt-preset",
            ),
            text="top.preset",
        )
    ctx.add("preset_desc", gr.Markdown(presets.get(DEFAULT_PRESET, ""), elem_id="lt-preset-desc"))


def wire(ctx: AppContext) -> None:
    """After every tab is built: the preset fills their fields, the language relabels them."""
    ctx.listen(
        ctx.c["preset"].change,
        fill_preset,
        inputs=["preset"],
        outputs=[*PAGE_FIELDS, "preset_desc"],
        api_name="fill_preset",
    )
    ctx.listen(
        ctx.c["lang"].change, partial(relabel, ctx), inputs=["lang"], outputs=list(ctx.labels), api_visibility="private"
    )
