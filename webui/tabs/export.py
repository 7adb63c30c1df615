"""Export tab: the adapter as a zip download, merged into a full model folder, or a GGUF with an
Ollama Modelfile (core.export does the work; the long ones report to the progress bar)."""

from __future__ import annotations

from functools import partial

import gradio as gr

from core.errors import UserInputError
from core.export import export_gguf, merge_adapter, zip_adapter
from core.gguf_export import GGUF_TYPES
from core.runs import list_runs, run_path
from webui import i18n
from webui.context import AppContext, Updates, error_html


def export_choices(ctx: AppContext) -> list[str]:
    return [r.name for r in list_runs(ctx.runs_dir) if r.can_export]


def refresh(ctx: AppContext, export_run: str | None) -> Updates:
    names = export_choices(ctx)
    value = export_run if export_run in names else (names[0] if names else None)
    return {"export_run": gr.update(choices=names, value=value)}


def _problem(title: str, detail: str = "") -> Updates:
    return {"export_msg": "", "export_error": error_html(title, detail)}


def export_zip(ctx: AppContext, export_run: str | None, lang: str) -> Updates:
    """The zip to download, or why there is none."""
    if not export_run:
        return {"export_file": None, **_problem(i18n.t("export.no_run", lang))}
    try:
        path = zip_adapter(run_path(ctx.runs_dir, export_run))
    except UserInputError as err:
        return {"export_file": None, **_problem(i18n.t("export.failed", lang), str(err))}
    return {"export_file": str(path), "export_msg": i18n.t("export.zip_done", lang, path=path), "export_error": ""}


def _bar(progress):
    """core.export's (share, message) callback, drawn on the event's progress bar."""
    return lambda share, message: progress(share, desc=message)


def export_merge(ctx: AppContext, export_run: str | None, lang: str, progress) -> Updates:
    """Loads the base model in this process: seconds for small models."""
    if not export_run:
        return _problem(i18n.t("export.no_run", lang))
    try:
        path = merge_adapter(run_path(ctx.runs_dir, export_run), _bar(progress))
    except UserInputError as err:
        return _problem(i18n.t("export.failed", lang), str(err))
    except Exception as err:  # noqa: BLE001 - out of memory, a model that cannot load: say so in the page
        return _problem(i18n.t("export.failed", lang), f"{type(err).__name__}: {err}")
    return {"export_msg": i18n.t("export.merge_done", lang, path=path), "export_error": ""}


def export_gguf_files(ctx: AppContext, export_run: str | None, export_gguf_type: str, lang: str, progress) -> Updates:
    """Merge, convert, load back and compare: a minute or two for the default model on a CPU."""
    if not export_run:
        return _problem(i18n.t("export.no_run", lang))
    try:
        result = export_gguf(run_path(ctx.runs_dir, export_run), export_gguf_type, _bar(progress))
    except UserInputError as err:
        return _problem(i18n.t("export.failed", lang), str(err))
    except Exception as err:  # noqa: BLE001 - out of memory, a model that cannot load: say so in the page
        return _problem(i18n.t("export.failed", lang), f"{type(err).__name__}: {err}")
    note = "" if result.template_translated else i18n.t("export.gguf_no_template", lang)
    message = i18n.t(
        "export.gguf_done",
        lang,
        path=result.gguf,
        folder=result.folder,
        name=export_run.lower(),
        check=result.check.summary(),
        note=note,
    )
    return {"export_msg": message, "export_error": ""}


def build(ctx: AppContext) -> None:
    names = export_choices(ctx)
    ctx.text(gr.Markdown(i18n.t("export.intro")), "export.intro")
    with gr.Row(equal_height=True):
        ctx.add(
            "export_run",
            gr.Dropdown(
                choices=names,
                value=names[0] if names else None,
                label=i18n.t("export.run"),
                scale=3,
                elem_id="lt-export-run",
            ),
            text="export.run",
        )
        ctx.add(
            "export_refresh", gr.Button(i18n.t("runs.refresh"), scale=0, min_width=110, size="sm"), text="runs.refresh"
        )
    with gr.Row():
        ctx.add(
            "export_zip", gr.Button(i18n.t("export.zip"), variant="primary", elem_id="lt-export-zip"), text="export.zip"
        )
        ctx.add("export_merge", gr.Button(i18n.t("export.merge"), elem_id="lt-export-merge"), text="export.merge")
    with gr.Row(equal_height=True):
        ctx.add(
            "export_gguf_type",
            gr.Dropdown(choices=list(GGUF_TYPES), value=GGUF_TYPES[0], label=i18n.t("export.gguf_type"), scale=1),
            text="export.gguf_type",
        )
        ctx.add("export_gguf", gr.Button(i18n.t("export.gguf"), scale=3, elem_id="lt-export-gguf"), text="export.gguf")
    ctx.add("export_file", gr.File(label=i18n.t("export.file"), interactive=False), text="export.file")
    ctx.add("export_msg", gr.Markdown(elem_id="lt-export-msg"))
    ctx.add("export_error", gr.HTML())


def wire(ctx: AppContext) -> None:
    c = ctx.c
    ctx.listen(
        c["export_refresh"].click,
        partial(refresh, ctx),
        inputs=["export_run"],
        outputs=["export_run"],
        api_name="export_runs",
    )
    # Runs finish while the server runs: the list is refreshed when the tab or the page opens.
    ctx.listen(
        [c["tab.export"].select, ctx.page.load],
        partial(refresh, ctx),
        inputs=["export_run"],
        outputs=["export_run"],
        api_visibility="private",
    )
    ctx.listen(
        c["export_zip"].click,
        partial(export_zip, ctx),
        inputs=["export_run", "lang"],
        outputs=["export_file", "export_msg", "export_error"],
        api_name="export_zip",
    )
    ctx.listen(
        c["export_merge"].click,
        partial(export_merge, ctx),
        inputs=["export_run", "lang"],
        outputs=["export_msg", "export_error"],
        api_name="export_merge",
    )
    ctx.listen(
        c["export_gguf"].click,
        partial(export_gguf_files, ctx),
        inputs=["export_run", "export_gguf_type", "lang"],
        outputs=["export_msg", "export_error"],
        api_name="export_gguf",
    )
