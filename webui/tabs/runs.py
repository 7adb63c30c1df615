"""Runs tab: every run with its status, date, final losses and config; overlaid curves; delete."""
from __future__ import annotations

import time
from typing import Any

import gradio as gr
import pandas as pd

from core.errors import UserInputError
from core.events import RunFolder
from core.runs import delete_run, list_runs, run_path
from webui import i18n
from webui.context import AppContext, error_html
from webui.plots import overlay_frame

COLUMNS = ["name", "status", "date", "steps", "loss", "eval", "model", "dataset"]


def _loss(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def runs_table(ctx: AppContext, lang: str) -> pd.DataFrame:
    rows = []
    for r in list_runs(ctx.runs_dir):
        steps = f"{r.step}/{r.total_steps}" if r.step is not None else ""
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else ""
        rows.append([r.name, i18n.t(f"status.{r.status}", lang), date, steps, _loss(r.final_loss),
                     _loss(r.final_eval_loss), str(r.config.get("model_name_or_path", "")),
                     str(r.config.get("dataset", "")).rsplit("/", 1)[-1]])
    return pd.DataFrame(rows, columns=[i18n.t(f"runs.col.{column}", lang) for column in COLUMNS])


def refresh(ctx: AppContext, lang: str, selected: str | None, overlay: list[str] | None) -> tuple[Any, Any, Any]:
    """(table, overlay choices, run selector), keeping the selections that still exist."""
    names = [r.name for r in list_runs(ctx.runs_dir)]
    keep = [n for n in overlay or [] if n in names]
    value = selected if selected in names else (names[0] if names else None)
    return runs_table(ctx, lang), gr.update(choices=names, value=keep), gr.update(choices=names, value=value)


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


def overlay_update(ctx: AppContext, names: list[str] | None):
    """overlay_plot, drawn afresh.

    gradio 6's LinePlot takes its colour scale from the curves in the first data it draws and later
    only swaps the data: a run ticked after the first would be drawn without a colour (invisible).
    Clearing the chart first (None) makes it draw the new curves from scratch.
    """
    yield None
    yield overlay_plot(ctx, names)


def show_config(ctx: AppContext, name: str | None) -> str:
    if not name:
        return ""
    try:
        path = run_path(ctx.runs_dir, name) / "config.yaml"
        return path.read_text(encoding="utf-8") if path.is_file() else ""
    except (UserInputError, OSError):
        return ""


def ask_delete(name: str | None, lang: str) -> tuple[Any, str]:
    """First click: show the confirmation row with the run's name."""
    if not name:
        return gr.update(visible=False), ""
    return gr.update(visible=True), i18n.t("runs.confirm_question", lang, run=name)


def confirm_delete(ctx: AppContext, name: str | None, lang: str) -> tuple[Any, str, str]:
    """(confirmation row, message, error box). Refuses the running run (core.runs checks the worker)."""
    running = ctx.runner.running()
    try:
        if running is not None and name == running.path.name:
            raise UserInputError(f"Run {name!r} is training right now: stop it before deleting it.")
        delete_run(ctx.runs_dir, name or "")
    except UserInputError as err:
        return gr.update(visible=False), "", error_html(str(err))
    return gr.update(visible=False), i18n.t("runs.deleted", lang, run=name), ""


def resume_selected(ctx: AppContext, name: str | None, lang: str) -> tuple[str, str]:
    from webui.runner import JobRunning

    try:
        run = ctx.runner.resume(run_path(ctx.runs_dir, name or ""))
    except JobRunning as err:
        return "", error_html(i18n.t("msg.job_running", lang, run=err.run.path.name).replace("**", ""))
    except UserInputError as err:
        return "", error_html(str(err))
    return i18n.t("msg.resumed", lang, run=run.path.name), ""


def build(ctx: AppContext) -> None:
    c = ctx.c
    names = [r.name for r in list_runs(ctx.runs_dir)]
    with gr.Row():
        c["runs_refresh"] = ctx.text(gr.Button(i18n.t("runs.refresh"), scale=0, min_width=120, size="sm",
                                               elem_id="lt-runs-refresh"), "runs.refresh")
    c["runs_table"] = ctx.text(gr.Dataframe(runs_table(ctx, "en"), label=i18n.t("runs.table"), interactive=False,
                                            elem_id="lt-runs-table"), "runs.table")
    with gr.Row():
        with gr.Column(scale=1):
            c["runs_overlay"] = ctx.text(gr.CheckboxGroup(choices=names, label=i18n.t("runs.overlay"),
                                                          elem_id="lt-runs-overlay"), "runs.overlay")
            c["runs_plot"] = ctx.text(gr.LinePlot(None, x="step", y="loss", color="run", height=300,
                                                  label=i18n.t("runs.chart")), "runs.chart")
        with gr.Column(scale=1):
            c["runs_select"] = ctx.text(gr.Dropdown(choices=names, value=names[0] if names else None,
                                                    label=i18n.t("runs.select"), elem_id="lt-runs-select"),
                                        "runs.select")
            c["runs_config"] = ctx.text(gr.Code(show_config(ctx, names[0] if names else None), language="yaml",
                                                label=i18n.t("runs.config"), max_lines=18), "runs.config")
            with gr.Row():
                c["runs_resume"] = ctx.text(gr.Button(i18n.t("runs.resume")), "runs.resume")
                c["runs_delete"] = ctx.text(gr.Button(i18n.t("runs.delete"), variant="stop",
                                                      elem_id="lt-runs-delete"), "runs.delete")
            with gr.Row(visible=False) as confirm_row:
                c["runs_confirm_text"] = gr.Markdown()
                c["runs_confirm"] = ctx.text(gr.Button(i18n.t("runs.confirm"), variant="stop",
                                                       elem_id="lt-runs-confirm"), "runs.confirm")
                c["runs_cancel"] = ctx.text(gr.Button(i18n.t("runs.cancel")), "runs.cancel")
            c["runs_confirm_row"] = confirm_row
            c["runs_msg"] = gr.Markdown()
            c["runs_error"] = gr.HTML()


def wire(ctx: AppContext) -> None:
    c = ctx.c
    listing = [c["runs_table"], c["runs_overlay"], c["runs_select"]]
    do_refresh = (lambda lang, sel, ov: refresh(ctx, lang, sel, ov))
    refresh_inputs = [c["lang"], c["runs_select"], c["runs_overlay"]]
    c["runs_refresh"].click(do_refresh, inputs=refresh_inputs, outputs=listing, api_name="list_runs")

    def overlay(names):
        yield from overlay_update(ctx, names)

    c["runs_overlay"].change(overlay, inputs=c["runs_overlay"],
                             outputs=c["runs_plot"], api_name="overlay_runs")
    c["runs_select"].change(lambda name: show_config(ctx, name), inputs=c["runs_select"], outputs=c["runs_config"],
                            api_visibility="private")
    c["runs_delete"].click(ask_delete, inputs=[c["runs_select"], c["lang"]],
                           outputs=[c["runs_confirm_row"], c["runs_confirm_text"]], api_visibility="private")
    c["runs_cancel"].click(lambda: (gr.update(visible=False), ""),
                           outputs=[c["runs_confirm_row"], c["runs_confirm_text"]], api_visibility="private")
    c["runs_confirm"].click(lambda name, lang: confirm_delete(ctx, name, lang), inputs=[c["runs_select"], c["lang"]],
                            outputs=[c["runs_confirm_row"], c["runs_msg"], c["runs_error"]], api_name="delete_run") \
        .then(do_refresh, inputs=refresh_inputs, outputs=listing, api_visibility="private")
    c["runs_resume"].click(lambda name, lang: resume_selected(ctx, name, lang), inputs=[c["runs_select"], c["lang"]],
                           outputs=[c["runs_msg"], c["runs_error"]], api_name="resume_run")

