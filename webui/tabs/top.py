"""Top bar: title, language, model, preset. The preset fills the train tab (wired there)."""
from __future__ import annotations

import gradio as gr

from core.presets import DEFAULT_PRESET, list_presets, preset_values
from webui import i18n
from webui.context import AppContext


def build(ctx: AppContext) -> None:
    presets = list_presets()
    with gr.Row(equal_height=True, elem_id="lt-top"):
        with gr.Column(scale=5):
            ctx.text(gr.Markdown(i18n.t("app.title")), "app.title")
            ctx.text(gr.Markdown(i18n.t("app.subtitle"), elem_id="lt-subtitle"), "app.subtitle")
        with gr.Column(scale=1, min_width=160):
            ctx.c["lang"] = gr.Dropdown(choices=i18n.LANGUAGES, value=i18n.DEFAULT_LANGUAGE,
                                        label=i18n.t("top.language"), elem_id="lt-lang")
    with gr.Row(equal_height=True):
        ctx.c["model"] = ctx.text(gr.Textbox(
            value=str(preset_values(DEFAULT_PRESET).get("model_name_or_path", "default")),
            label=i18n.t("top.model"), info=i18n.t("top.model.info"), scale=3, elem_id="lt-model"), "top.model")
        ctx.c["preset"] = ctx.text(gr.Dropdown(
            choices=list(presets), value=DEFAULT_PRESET, label=i18n.t("top.preset"),
            info=i18n.t("top.preset.info"), scale=2, elem_id="lt-preset"), "top.preset")
    ctx.c["preset_desc"] = gr.Markdown(presets.get(DEFAULT_PRESET, ""), elem_id="lt-preset-desc")


def preset_description(name: str) -> str:
    return list_presets().get(name, "")
