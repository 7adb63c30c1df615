"""Runs tab: every run with its status, date, final losses and config; overlaid curves; delete;
open a LLaMA-Factory output folder as a run (core.lf_runs)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

import gradio as gr
import pandas as pd

from core.errors import UserInputError
from core.events import RunFolder
from core.lf_runs import open_lf_output
from core.paths import display_path
from core.runs import delete_run, list_runs, run_path
from webui import i18n
from webui.context import AppContext, Updates, error_html
from webui.plots import overlay_frame
from webui.tabs.train import launch

COLUMNS = ["name", "status", "date", "steps", "loss", "eval", "model", "dataset"]


def _loss(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def runs_table(ctx: AppContext, lang: str) -> pd.DataFrame:
    rows = []
    for r in list_runs(ctx.runs_dir):
        steps = f"{r.step}/{r.total_steps}" if r.step is not None else ""
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else ""
        dataset = r.config.get("dataset")
        rows.append(
            [
                r.name,
                i18n.t(f"status.{r.status}", lang),
                date,
                steps,
                _loss(r.final_loss),
                _loss(r.final_eval_loss),
                str(r.config.get("model_name_or_path", "")),
                display_path(dataset) if dataset else "",
            ]
        )
    return pd.DataFrame(rows, columns=[i18n.t(f"runs.col.{column}", lang) for column in COLUMNS])


def refresh(ctx: AppContext, lang: str, runs_select: str | None, runs_overlay: list[str] | None) -> Updates:
    """The table, overlay choices and run selector, keeping the selections that still exist."""
    names = [r.name for r in list_runs(ctx.runs_dir)]
    value = runs_select if runs_select in names else (names[0] if names else None)
    return {
        "runs_table": runs_table(ctx, lang),
        "runs_overlay": gr.update(choices=names, value=[n for n in runs_overlay or [] if n in names]),
        "runs_select": gr.update(choices=names, value=value),
    }


def overlay_plot(ctx: AppContext, names: list[str] | None) -> pd.DataFrame | None:
    """Curves of the chosen runs; None when there is nothing to draw (see train.chart_value)."""
    curves = {}
    for name in names or []:
        try:
            curves[name] = RunFolder(run_path(ctx.runs_dir, name)).all_events()
        except UserInputError:
            continue
    frame = overlay_frame(curves)
    return frame if len(frame) else None


def overlay_update(ctx: AppContext, runs_overlay: list[str] | None) -> Iterator[Updates]:
    """overlay_plot, drawn afresh.

    gradio 6's LinePlot takes its colour scale from the curves in the first data it draws and later
    only swaps the data: a run ticked after the first would be drawn without a colour (invisible).
    Clearing the chart first (None) makes it draw the new curves from scratch.
    """
    yield {"runs_plot": None}
    yield {"runs_plot": overlay_plot(ctx, runs_overlay)}


def show_config(ctx: AppContext, runs_select: str | None) -> Updates:
    try:
        path = run_path(ctx.runs_dir, runs_select) / "config.yaml" if runs_select else None
        text = path.read_text(encoding="utf-8") if path is not None and path.is_file() else ""
    except (UserInputError, OSError):
        text = ""
    return {"runs_config": text}


def ask_delete(runs_select: str | None, lang: str) -> Updates:
    """First click: show the confirmation row with the run's name."""
    if not runs_select:
        return cancel_delete()
    return {
        "runs_confirm_row": gr.update(visible=True),
        "runs_confirm_text": i18n.t("runs.confirm_question", lang, run=runs_select),
    }


def cancel_delete() -> Updates:
    return {"runs_confirm_row": gr.update(visible=False), "runs_confirm_text": ""}


def confirm_delete(ctx: AppContext, runs_select: str | None, lang: str) -> Updates:
    """Delete the run; refuses the running one (core.runs checks the worker)."""
    running = ctx.runner.running()
    hidden = gr.update(visible=False)
    try:
        if running is not None and runs_select == running.path.name:
            raise UserInputError(f"Run {runs_select!r} is training right now: stop it before deleting it.")
        delete_run(ctx.runs_dir, runs_select or "")
    except UserInputError as err:
        return {"runs_confirm_row": hidden, "runs_msg": "", "runs_error": error_html(str(err))}
    return {"runs_confirm_row": hidden, "runs_msg": i18n.t("runs.deleted", lang, run=runs_select), "runs_error": ""}


def open_folder(ctx: AppContext, runs_open_path: str, runs_overlay: list[str] | None, lang: str) -> Updates:
    """Open a LLaMA-Factory output folder as a run: listed, selected, and its loss curve overlaid."""
    try:
        run = open_lf_output(ctx.runs_dir, runs_open_path or "")
    except UserInputError as err:
        return {"runs_msg": "", "runs_error": error_html(i18n.t("runs.open_failed", lang), str(err))}
    overlay = [*(n for n in runs_overlay or [] if n != run.path.name), run.path.name]
    listing = refresh(ctx, lang, run.path.name, overlay)
    return {
        **listing,
        "runs_plot": overlay_plot(ctx, overlay),
        **show_config(ctx, run.path.name),
        "runs_msg": i18n.t("runs.opened", lang, run=run.path.name),
        "runs_error": "",
    }


def resume_selected(ctx: AppContext, runs_select: str | None, lang: str) -> Updates:
    message, error = launch(lang, lambda: ctx.runner.resume(run_path(ctx.runs_dir, runs_select or "")), "msg.resumed")
    return {"runs_msg": message, "runs_error": error}


def build(ctx: AppContext) -> None:
    names = [r.name for r in list_runs(ctx.runs_dir)]
    with gr.Row():
        ctx.add(
            "runs_refresh",
            gr.Button(i18n.t("runs.refresh"), scale=0, min_width=120, size="sm", elem_id="lt-runs-refresh"),
            text="runs.refresh",
        )
    ctx.add(
        "runs_table",
        gr.Dataframe(runs_table(ctx, "en"), label=i18n.t("runs.table"), interactive=False, elem_id="lt-runs-table"),
        text="runs.table",
    )
    with gr.Row():
        with gr.Column(scale=1):
            ctx.add(
                "runs_overlay",
                gr.CheckboxGroup(choices=names, label=i18n.t("runs.overlay"), elem_id="lt-runs-overlay"),
                text="runs.overlay",
            )
            # No height: a fixed one clips the legend, which gradio draws below the chart.
            ctx.add(
                "runs_plot",
                gr.LinePlot(None, x="step", y="loss", color="run", color_title="", label=i18n.t("runs.chart")),
                text="runs.chart",
            )
        with gr.Column(scale=1):
            ctx.add(
                "runs_select",
                gr.Dropdown(
                    choices=names,
                    value=names[0] if names else None,
                    label=i18n.t("runs.select"),
                    elem_id="lt-runs-select",
                ),
                text="runs.select",
            )
            ctx.add(
                "runs_config",
                gr.Code(
                    show_config(ctx, names[0] if names else None)["runs_config"],
                    language="yaml",
                    label=i18n.t("runs.config"),
                    max_lines=18,
                ),
                text="runs.config",
            )
            with gr.Row():
                ctx.add("runs_resume", gr.Button(i18n.t("runs.resume")), text="runs.resume")
                ctx.add(
                    "runs_delete",
                    gr.Button(i18n.t("runs.delete"), variant="stop", elem_id="lt-runs-delete"),
                    text="runs.delete",
                )
            with ctx.add("runs_confirm_row", gr.Row(visible=False)):
                ctx.add("runs_confirm_text", gr.Markdown())
                ctx.add(
                    "runs_confirm",
                    gr.Button(i18n.t("runs.confirm"), variant="stop", elem_id="lt-runs-confirm"),
                    text="runs.confirm",
                )
                ctx.add("runs_cancel", gr.Button(i18n.t("runs.cancel")), text="runs.cancel")
            ctx.add("runs_msg", gr.Markdown())
            ctx.add("runs_error", gr.HTML())
            with gr.Row(equal_height=True):
                ctx.add(
                    "runs_open_path",
                    gr.Textbox(
                        label=i18n.t("runs.open_path"),
                        info=i18n.t("runs.open_path.info"),
                        scale=4,
                        elem_id="lt-runs-open-path",
                    ),
                    text="runs.open_path",
                )
                ctx.add(
                    "runs_open",
                    gr.Button(i18n.t("runs.open"), scale=1, min_width=110, elem_id="lt-runs-open"),
                    text="runs.open",
                )


def wire(ctx: AppContext) -> None:
    c = ctx.c
    listing = {
        "handler": partial(refresh, ctx),
        "inputs": ["lang", "runs_select", "runs_overlay"],
        "outputs": ["runs_table", "runs_overlay", "runs_select"],
    }
    ctx.listen(c["runs_refresh"].click, **listing, api_name="list_runs")
    ctx.listen(c["tab.runs"].select, **listing, api_visibility="private")
    ctx.listen(
        c["runs_overlay"].change,
        partial(overlay_update, ctx),
        inputs=["runs_overlay"],
        outputs=["runs_plot"],
        api_name="overlay_runs",
    )
    ctx.listen(
        c["runs_select"].change,
        partial(show_config, ctx),
        inputs=["runs_select"],
        outputs=["runs_config"],
        api_visibility="private",
    )
    confirm = ["runs_confirm_row", "runs_confirm_text"]
    ctx.listen(
        c["runs_delete"].click, ask_delete, inputs=["runs_select", "lang"], outputs=confirm, api_visibility="private"
    )
    ctx.listen(c["runs_cancel"].click, cancel_delete, outputs=confirm, api_visibility="private")
    deleted = ctx.listen(
        c["runs_confirm"].click,
        partial(confirm_delete, ctx),
        inputs=["runs_select", "lang"],
        outputs=["runs_confirm_row", "runs_msg", "runs_error"],
        api_name="delete_run",
    )
    ctx.listen(deleted.then, **listing, api_visibility="private")
    ctx.listen(
        [c["runs_open"].click, c["runs_open_path"].submit],
        partial(open_folder, ctx),
        inputs=["runs_open_path", "runs_overlay", "lang"],
        outputs=["runs_table", "runs_overlay", "runs_select", "runs_plot", "runs_config", "runs_msg", "runs_error"],
        api_name="open_run_folder",
    )
    ctx.listen(
        c["runs_resume"].click,
        partial(resume_selected, ctx),
        inputs=["runs_select", "lang"],
        outputs=["runs_msg", "runs_error"],
        api_name="resume_run",
    )
