"""Export tab: the adapter as a zip download, or merged into a full model folder."""
from __future__ import annotations

from typing import Any

import gradio as gr

from core.errors import UserInputError
from core.export import merge_adapter, zip_adapter
from core.runs import list_runs, run_path
from webui import i18n
from webui.context import AppContext, error_html


def export_choices(ctx: AppContext) -> list[str]:
    return [r.name for r in list_runs(ctx.runs_dir) if r.can_export]


def refresh(ctx: AppContext, current: str | None) -> Any:
    names = export_choices(ctx)
    return gr.update(choices=names, value=current if current in names else (names[0] if names else None))


def export_zip(ctx: AppContext, name: str | None, lang: str) -> tuple[Any, str, str]:
    """(file to download, message, error box)."""
    if not name:
        return None, "", error_html(i18n.t("export.no_run", lang))
    try:
        path = zip_adapter(run_path(ctx.runs_dir, name))
    except UserInputError as err:
        return None, "", error_html(i18n.t("export.failed", lang), str(err))
    return str(path), i18n.t("export.zip_done", lang, path=path), ""


def export_merge(ctx: AppContext, name: str | None, lang: str) -> tuple[str, str]:
    """(message, error box). Loads the base model in this process: seconds for small models."""
    if not name:
        return "", error_html(i18n.t("export.no_run", lang))
    try:
        path = merge_adapter(run_path(ctx.runs_dir, name))
    except UserInputError as err:
        return "", error_html(i18n.t("export.failed", lang), str(err))
    except Exception as err:  # noqa: BLE001 - out of memory, a model that cannot load: say so in the page
        return "", error_html(i18n.t("export.failed", lang), f"{type(err).__name__}: {err}")
    return i18n.t("export.merge_done", lang, path=path), ""


def build(ctx: AppContext) -> None:
    c = ctx.c
    names = export_choices(ctx)
    ctx.text(gr.Markdown(i18n.t("export.intro")), "export.intro")
    with gr.Row(equal_height=True):
        c["export_run"] = ctx.text(gr.Dropdown(choices=names, value=names[0] if names else None,
                                               label=i18n.t("export.run"), scale=3, elem_id="lt-export-run"),
                                   "export.run")
        c["export_refresh"] = ctx.text(gr.Button(i18n.t("runs.refresh"), scale=0, min_width=110, size="sm"), "runs.refresh")
    with gr.Row():
        c["export_zip"] = ctx.text(gr.Button(i18n.t("export.zip"), variant="primary", elem_id="lt-export-zip"),
                                   "export.zip")
        c["export_merge"] = ctx.text(gr.Button(i18n.t("export.merge"), elem_id="lt-export-merge"), "export.merge")
    c["export_file"] = ctx.text(gr.File(label=i18n.t("export.file"), interactive=False), "export.file")
    c["export_msg"] = gr.Markdown(elem_id="lt-export-msg")
    c["export_error"] = gr.HTML()


def wire(ctx: AppContext) -> None:
    c = ctx.c
    c["export_refresh"].click(lambda cur: refresh(ctx, cur), inputs=c["export_run"], outputs=c["export_run"],
                              api_name="export_runs")
    c["export_zip"].click(lambda name, lang: export_zip(ctx, name, lang), inputs=[c["export_run"], c["lang"]],
                          outputs=[c["export_file"], c["export_msg"], c["export_error"]], api_name="export_zip")
    c["export_merge"].click(lambda name, lang: export_merge(ctx, name, lang), inputs=[c["export_run"], c["lang"]],
                            outputs=[c["export_msg"], c["export_error"]], api_name="export_merge")
