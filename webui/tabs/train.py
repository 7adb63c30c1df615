"""Train tab: the hyperparameter form with live read-outs, Start / Stop / Resume, and the monitor.

The monitor is polled by a gr.Timer every second. What it shows comes from the runner (the server's
one job) and the run folder, never from the browser session, so a reloaded page or a second browser
sees the same job. A tick that finds nothing new sends nothing (gr.skip).
"""
from __future__ import annotations

import time
from typing import Any

import gradio as gr

from core import advisor
from core.config import SPECS, TYPES, TrainConfig, config_from_dict, config_to_yaml, fields_in_group
from core.data import eval_count
from core.errors import UserInputError
from core.paths import display_path, resolve_dataset
from core.events import TERMINAL_EVENTS, RunFolder, last_event
from core.presets import DEFAULT_PRESET, load_preset, preset_values
from core.runs import RunStatus, list_runs, progress_of, run_path, run_state
from webui import i18n
from webui.context import AppContext, error_html
from webui.plots import loss_frame, name_every_series
from webui.runner import JobRunning
from webui.tabs import data as data_tab
from webui.tabs.top import preset_description

# The form's groups and their order come from the field registry (core.config).
OPTIMISATION, DATA, LORA, ADVANCED = (fields_in_group(g) for g in ("optim", "data", "lora", "advanced"))
FORM_FIELDS = OPTIMISATION + DATA + LORA + ADVANCED
# What every config-building handler receives, in this order (after the language).
CONFIG_INPUTS = ["model_name_or_path", "dataset", "dataset_format", "run_name", *FORM_FIELDS]
LOG_LINES = 12


# ------------------------------------------------------------------------------------ the config
def default_run_name(ctx: AppContext) -> str:
    base = time.strftime("run-%Y%m%d-%H%M%S")
    name, n = base, 1
    while (ctx.runs_dir / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def form_config(ctx: AppContext, values: dict[str, Any], run_name: str | None = None) -> TrainConfig:
    """The TrainConfig the form describes; raises UserInputError with every problem."""
    values = dict(values)
    name = (values.pop("run_name", "") or "").strip() or run_name or default_run_name(ctx)
    values["output_dir"] = str(run_path(ctx.runs_dir, name))
    values["dataset"] = str(resolve_dataset(values.get("dataset", "")))
    values["model_name_or_path"] = (values.get("model_name_or_path") or "").strip()
    return config_from_dict(values, source="the form")


def as_values(args: tuple) -> dict[str, Any]:
    return dict(zip(CONFIG_INPUTS, args))


def plan_view(ctx: AppContext, lang: str, *args) -> str:
    """Effective batch, steps per epoch, total steps and the advisor's notes, as the user types."""
    values = as_values(args)
    try:
        config = form_config(ctx, values, run_name="preview")
    except UserInputError as err:
        return f"**{i18n.t('train.invalid', lang)}**\n\n" + "\n".join(f"- {p}" for p in err.problems or [str(err)])
    count = data_tab.count_examples(values.get("dataset", ""), values.get("dataset_format", "auto"))
    lines = []
    if count:
        train_count = count - eval_count(count, config.val_size)
        plan = advisor.training_plan(config, train_count)
        lines.append(i18n.t("train.plan", lang, batch=plan["effective_batch_size"], total=plan["total_steps"],
                            steps_per_epoch=plan["steps_per_epoch"], examples=train_count))
    else:
        lines.append(i18n.t("train.plan_no_data", lang, batch=config.effective_batch_size))
    for note in advisor.advise(config, count or None):
        if note.rule in ("effective_batch", "steps"):
            continue  # already in the read-out line
        lines.append(f"- {'⚠️' if note.level == 'warn' else 'ℹ️'} {note.message}")
    return "\n".join(lines)


def preview_config(ctx: AppContext, lang: str, *args) -> tuple[Any, str]:
    try:
        config = form_config(ctx, as_values(args))
    except UserInputError as err:
        return gr.update(visible=False), error_html(i18n.t("train.invalid", lang), str(err))
    return gr.update(value=config_to_yaml(config), visible=True), ""


def fill_preset(name: str) -> list[Any]:
    """Updates for [model, dataset, dataset_format, *FORM_FIELDS, description] from a preset.

    Every form field gets the preset's value or the TrainConfig default (switching presets must
    not keep a value the new preset leaves at its default). The model and dataset change only when
    the preset names them.
    """
    config = load_preset(name).to_dict()
    explicit = preset_values(name)
    model = explicit["model_name_or_path"] if "model_name_or_path" in explicit else gr.skip()
    dataset = display_path(explicit["dataset"]) if "dataset" in explicit else gr.skip()
    return [model, dataset, config["dataset_format"], *[config[f] for f in FORM_FIELDS],
            preset_description(name)]


# ------------------------------------------------------------------------------- start and stop
def start_run(ctx: AppContext, lang: str, *args) -> tuple[str, str]:
    """(message, error box)."""
    try:
        run = ctx.runner.start(form_config(ctx, as_values(args)))
    except JobRunning as err:
        return "", error_html(i18n.t("msg.job_running", lang, run=err.run.path.name).replace("**", ""))
    except UserInputError as err:
        return "", error_html(i18n.t("train.invalid", lang), str(err))
    return i18n.t("msg.started", lang, run=run.path.name), ""


def stop_run(ctx: AppContext, lang: str) -> tuple[str, str]:
    run = ctx.runner.stop()
    if run is None:
        return i18n.t("msg.nothing_running", lang), ""
    return i18n.t("msg.stop_requested", lang, run=run.path.name), ""


def resumable(ctx: AppContext) -> RunFolder | None:
    """The run Resume continues: the current one, else the newest stopped/failed run with a checkpoint."""
    current = ctx.runner.current()
    states = [run_state(current.path)] if current is not None else list_runs(ctx.runs_dir)
    return next((state.run for state in states if state.can_resume), None)


def resume_run(ctx: AppContext, lang: str) -> tuple[str, str]:
    run = resumable(ctx)
    if run is None:
        return i18n.t("msg.nothing_to_resume", lang), ""
    try:
        ctx.runner.resume(run.path)
    except JobRunning as err:
        return "", error_html(i18n.t("msg.job_running", lang, run=err.run.path.name).replace("**", ""))
    except UserInputError as err:
        return "", error_html(i18n.t("train.invalid", lang), str(err))
    return i18n.t("msg.resumed", lang, run=run.path.name), ""


# ------------------------------------------------------------------------------------ monitoring
def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def progress_markdown(run: RunFolder, events: list[dict[str, Any]], status: str, stopping: bool, lang: str) -> str:
    final = last_event(events, *TERMINAL_EVENTS)
    status_text = i18n.t(f"status.{status}", lang)
    if final is not None and status in TERMINAL_EVENTS:
        def fmt(v):
            return "—" if v is None else f"{v:.4f}"
        return i18n.t("mon.final", lang, run=run.path.name, status=status_text, step=final.get("step", "—"),
                      total=final.get("total_steps", "—"), loss=fmt(final.get("final_loss")),
                      eval_loss=fmt(final.get("final_eval_loss")))
    progress = progress_of(events)
    if progress is None:
        return i18n.t("mon.starting", lang, run=run.path.name)
    text = i18n.t("mon.progress", lang, run=run.path.name, status=status_text, step=progress.step,
                  total=progress.total_steps, epoch=progress.epoch, tps=progress.tokens_per_s,
                  elapsed=_duration(progress.elapsed_s), eta=_duration(progress.eta_s))
    return text + (f" · *{i18n.t('mon.stopping', lang)}*" if stopping else "")


def notes_markdown(events: list[dict[str, Any]], status: str) -> str:
    if status in (RunStatus.DONE, RunStatus.STOPPED):
        return advisor.summary_card(events)
    warnings = [f"- ⚠️ {e['message']}" for e in events if e["type"] == "warning"]
    notes = [f"- {'⚠️' if n.level == 'warn' else 'ℹ️'} {n.message}" for n in advisor.loss_notes(events)]
    return "\n".join(warnings + notes)


def poll(ctx: AppContext, lang: str, seen: Any) -> list[Any]:
    """One timer tick: [plot, progress, notes, failure box, log, start, stop, resume, seen]."""
    run = ctx.runner.current()
    running = ctx.runner.running() is not None
    stopping = ctx.runner.stop_requested()
    if run is None:
        signature = (None, lang)
        if signature == seen:
            return [gr.skip()] * 8 + [seen]
        can_resume = resumable(ctx) is not None
        return [None, i18n.t("mon.no_run", lang), "", "", "", gr.update(interactive=True),
                gr.update(interactive=False), gr.update(interactive=can_resume), signature]
    events = ctx.runner.events(run)
    state = run_state(run.path, events)
    status = state.status
    log_size = run.log.stat().st_size if run.log.is_file() else 0
    signature = (str(run.path), len(events), log_size, status, stopping, running, lang)
    if signature == seen:
        return [gr.skip()] * 8 + [seen]
    failure = ""
    if status == RunStatus.ERROR:
        failure = error_html(i18n.t("mon.failed", lang, run=run.path.name).replace("**", ""), state.message)
    can_resume = not running and state.can_resume
    return [chart_value(events), progress_markdown(run, events, status, stopping, lang), notes_markdown(events, status),
            failure, run.log_tail(LOG_LINES), gr.update(interactive=not running),
            gr.update(interactive=running and not stopping), gr.update(interactive=can_resume), signature]


def chart_value(events: list[dict[str, Any]]):
    """The loss frame, or None while it is empty.

    gradio 6's LinePlot fixes its colour scale from the first data it draws: once it has drawn an
    empty frame, later points get no colour and the line stays invisible. None avoids that, and
    name_every_series does the same for the eval line, whose first point comes later.
    """
    frame = loss_frame(events)
    return name_every_series(frame) if len(frame) else None


# ---------------------------------------------------------------------------------------- layout
def _field_component(name: str, value: Any):
    kind = TYPES[name]
    common = {"label": i18n.field_label(name), "info": i18n.field_info(name), "value": value,
              "elem_id": f"lt-{name}"}
    if SPECS[name].choices:
        return gr.Dropdown(choices=list(SPECS[name].choices), **common)
    if kind is bool:
        return gr.Checkbox(**common)
    if kind is int:
        return gr.Number(precision=0, **common)
    if kind is float:
        return gr.Number(**common)
    return gr.Textbox(lines=2 if name == "system_prompt" else 1, **common)


def build(ctx: AppContext) -> None:
    c = ctx.c
    values = load_preset(DEFAULT_PRESET).to_dict()

    def fields(names: list[str], per_row: int) -> None:
        for i in range(0, len(names), per_row):
            with gr.Row(equal_height=True):
                for name in names[i:i + per_row]:
                    c[name] = ctx.field(_field_component(name, values[name]), name)

    with gr.Row():
        with gr.Column(scale=5):
            c["run_name"] = ctx.text(gr.Textbox(label=i18n.t("train.run_name"), info=i18n.t("train.run_name.info"),
                                                placeholder=time.strftime("run-%Y%m%d-%H%M%S"),
                                                elem_id="lt-run-name"), "train.run_name")
            ctx.text(gr.Markdown(i18n.t("train.group.optim")), "train.group.optim")
            fields(OPTIMISATION, 3)
            ctx.text(gr.Markdown(i18n.t("train.group.data")), "train.group.data")
            fields(DATA[:2], 2)
            fields(DATA[2:], 1)
            ctx.text(gr.Markdown(i18n.t("train.group.lora")), "train.group.lora")
            fields(LORA, 3)
            with ctx.text(gr.Accordion(i18n.t("train.advanced"), open=False), "train.advanced"):
                fields(ADVANCED, 3)
            c["config_yaml"] = ctx.text(gr.Code(language="yaml", label=i18n.t("train.preview_code"),
                                                visible=False, elem_id="lt-config-yaml"), "train.preview_code")
        with gr.Column(scale=6):
            with gr.Row():
                c["start"] = ctx.text(gr.Button(i18n.t("train.start"), variant="primary", elem_id="lt-start"),
                                      "train.start")
                c["stop"] = ctx.text(gr.Button(i18n.t("train.stop"), variant="stop", interactive=False,
                                               elem_id="lt-stop"), "train.stop")
                c["resume"] = ctx.text(gr.Button(i18n.t("train.resume"), interactive=False, elem_id="lt-resume"),
                                       "train.resume")
                c["preview"] = ctx.text(gr.Button(i18n.t("train.preview"), variant="secondary",
                                                  elem_id="lt-preview"), "train.preview")
            c["train_msg"] = gr.Markdown(elem_id="lt-train-msg")
            c["train_error"] = gr.HTML(elem_id="lt-train-error")
            c["plan"] = gr.Markdown(elem_id="lt-plan")
            c["progress"] = gr.Markdown(i18n.t("mon.no_run"), elem_id="lt-progress")
            c["failure"] = gr.HTML(elem_id="lt-failure")
            c["loss_plot"] = ctx.text(gr.LinePlot(None, x="step", y="loss", color="series",
                                                  label=i18n.t("train.chart"), height=300,
                                                  color_map={"train": "#3b6fd6", "eval": "#e07b28"},
                                                  elem_id="lt-loss-plot"), "train.chart")
            c["loss_notes"] = gr.Markdown(elem_id="lt-loss-notes")
            c["log"] = ctx.text(gr.Textbox(label=i18n.t("train.log"), lines=LOG_LINES, max_lines=LOG_LINES,
                                           autoscroll=True, interactive=False, elem_id="lt-log"), "train.log")
            c["seen"] = gr.State(None)


def config_components(ctx: AppContext) -> list[Any]:
    c = ctx.c
    named = {"model_name_or_path": c["model"], "dataset": c["dataset"], "dataset_format": c["dataset_format"],
             "run_name": c["run_name"]}
    return [named.get(key) or c[key] for key in CONFIG_INPUTS]


def wire(ctx: AppContext) -> None:
    c = ctx.c
    inputs = [c["lang"], *config_components(ctx)]
    gr.on([comp.change for comp in inputs], lambda lang, *a: plan_view(ctx, lang, *a), inputs=inputs,
          outputs=c["plan"], trigger_mode="always_last", api_name="plan")
    c["preview"].click(lambda lang, *a: preview_config(ctx, lang, *a), inputs=inputs,
                       outputs=[c["config_yaml"], c["train_error"]], api_name="preview_config")
    c["start"].click(lambda lang, *a: start_run(ctx, lang, *a), inputs=inputs,
                     outputs=[c["train_msg"], c["train_error"]], api_name="start")
    c["stop"].click(lambda lang: stop_run(ctx, lang), inputs=c["lang"],
                    outputs=[c["train_msg"], c["train_error"]], api_name="stop")
    c["resume"].click(lambda lang: resume_run(ctx, lang), inputs=c["lang"],
                      outputs=[c["train_msg"], c["train_error"]], api_name="resume")
    c["preset"].change(fill_preset, inputs=c["preset"],
                       outputs=[c["model"], c["dataset"], c["dataset_format"], *[c[f] for f in FORM_FIELDS],
                                c["preset_desc"]], api_name="fill_preset")


def poll_outputs(ctx: AppContext) -> list[Any]:
    c = ctx.c
    return [c["loss_plot"], c["progress"], c["loss_notes"], c["failure"], c["log"], c["start"], c["stop"],
            c["resume"], c["seen"]]
